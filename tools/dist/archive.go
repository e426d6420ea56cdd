package main

import (
	"archive/tar"
	"archive/zip"
	"compress/gzip"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// archiveEntry is a file placed at the top of an archive.
type archiveEntry struct {
	path string      // on this machine
	name string      // in the archive
	mode fs.FileMode // permission bits
}

// writeArchive writes t's archive (slipway_<version>_<os>_<arch>.tar.gz,
// .zip for Windows) into opts.out and returns its name. The files sit at
// the top of the archive, owned by root, with opts.mtime as their time, so
// the same inputs make the same archive.
func writeArchive(opts options, t target, binary string, docs []string) (string, error) {
	entries := []archiveEntry{{path: binary, name: t.exe(), mode: 0o755}}
	for _, doc := range docs {
		entries = append(entries, archiveEntry{path: doc, name: filepath.Base(doc), mode: 0o644})
	}
	name := fmt.Sprintf("slipway_%s_%s_%s", fileVersion(opts.version), t.os, t.arch)
	write := func(w io.Writer) error { return writeTarGz(w, entries, opts) }
	if t.os == "windows" {
		write = func(w io.Writer) error { return writeZip(w, entries, opts) }
		name += ".zip"
	} else {
		name += ".tar.gz"
	}
	return name, writeFile(filepath.Join(opts.out, name), write)
}

func writeTarGz(w io.Writer, entries []archiveEntry, opts options) error {
	gz := gzip.NewWriter(w) // its header carries no name and no time
	tw := tar.NewWriter(gz)
	for _, e := range entries {
		err := copyEntry(e, func(size int64) (io.Writer, error) {
			return tw, tw.WriteHeader(&tar.Header{
				Typeflag: tar.TypeReg, Name: e.name, Size: size, Mode: int64(e.mode),
				ModTime: opts.mtime, Uname: "root", Gname: "root",
			})
		})
		if err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

func writeZip(w io.Writer, entries []archiveEntry, opts options) error {
	zw := zip.NewWriter(w)
	for _, e := range entries {
		err := copyEntry(e, func(int64) (io.Writer, error) {
			h := &zip.FileHeader{Name: e.name, Method: zip.Deflate, Modified: opts.mtime}
			h.SetMode(e.mode)
			return zw.CreateHeader(h)
		})
		if err != nil {
			return err
		}
	}
	return zw.Close()
}

// copyEntry copies e's file into the writer that create makes for its size.
func copyEntry(e archiveEntry, create func(size int64) (io.Writer, error)) error {
	f, err := os.Open(e.path)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	w, err := create(info.Size())
	if err != nil {
		return err
	}
	_, err = io.Copy(w, f)
	return err
}
