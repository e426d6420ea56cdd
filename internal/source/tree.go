// Package source produces the content of a release: the files to ship, what
// stays behind, and a digest that identifies the shipped tree.
package source

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// File is one entry of the shipped tree.
type File struct {
	Rel  string      // slash-separated path relative to the root
	Mode fs.FileMode // type bits and permissions, world-write already removed
	Size int64
	Link string // symlink target, for symlinks
	// SHA256 is the hex digest of a regular file's content.
	SHA256 string
	// ModTime is kept so tools that compare times (make, asset
	// pipelines) see the same files as on the build machine.
	ModTime time.Time
}

// Tree is a directory ready to ship: the entries in a stable order and the
// digest of their names, modes, link targets and contents.
type Tree struct {
	Root   string
	Files  []File
	Size   int64  // bytes of regular file content
	Digest string // "sha256:<hex>", the same for the same content anywhere

	fsys fs.FS // where the content is read from: Root, or memory

	indexOnce sync.Once
	byRel     map[string]Entry // the entries of Files by path, built on first use

	sealedOnce sync.Once
	sealed     []byte // Sealed, built on first use
}

// Scan walks root, dropping excluded paths, and refuses what cannot ship
// safely: symlinks that point out of the tree (they would break or, worse,
// expose the host once deployed) and special files.
func Scan(root string, exclude []string) (*Tree, error) {
	info, err := os.Stat(root)
	if err != nil {
		return nil, fmt.Errorf("source directory: %w", err)
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("source path %s is not a directory", root)
	}
	return scanFS(dirFS(root), root, exclude)
}

// dirFS is a directory as an fs.FS. Unlike os.DirFS it opens any name a
// walk of the directory found, including names that are not UTF-8.
type dirFS string

func (d dirFS) path(name string) string { return filepath.Join(string(d), filepath.FromSlash(name)) }

func (d dirFS) Open(name string) (fs.File, error)          { return os.Open(d.path(name)) }
func (d dirFS) ReadDir(name string) ([]fs.DirEntry, error) { return os.ReadDir(d.path(name)) }
func (d dirFS) Lstat(name string) (fs.FileInfo, error)     { return os.Lstat(d.path(name)) }
func (d dirFS) ReadLink(name string) (string, error)       { return os.Readlink(d.path(name)) }

// scanFS is Scan of a file system (a directory, or an export in memory);
// root names it in messages.
func scanFS(fsys fs.FS, root string, exclude []string) (*Tree, error) {
	ex, err := NewExcluder(exclude)
	if err != nil {
		return nil, err
	}
	t := &Tree{Root: root, fsys: fsys}
	err = fs.WalkDir(fsys, ".", func(rel string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		for _, r := range Reserved {
			if rel == r {
				return fmt.Errorf("%s: this name is reserved for slipway's own files in a release; rename it or exclude it", rel)
			}
		}
		if ex.Excluded(rel, d.IsDir()) {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		f := File{Rel: rel, Mode: info.Mode() &^ 0o002, ModTime: info.ModTime()}
		switch {
		case info.Mode().IsRegular():
			f.Size = info.Size()
			t.Size += f.Size
		case info.IsDir():
			// A directory its owner cannot write into or enter would
			// stop the copy into the next release, and no old release
			// holding it could be removed (rm -r, as the deploy user).
			if perm := info.Mode().Perm(); perm&0o300 != 0o300 {
				return fmt.Errorf("%s is a directory of mode %04o, which its owner cannot write into or enter: the next release could not be made from it, nor an old release holding it removed; make it writable (chmod u+wx on it) or exclude it", rel, perm)
			}
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := fs.ReadLink(fsys, rel)
			if err != nil {
				return err
			}
			if escapes(rel, target) {
				return fmt.Errorf("%s is a symlink to %s, outside the shipped directory; ship the file itself, or make it a shared path (shared.dirs / shared.files)", rel, target)
			}
			f.Link = target
		default:
			return fmt.Errorf("%s is a %s, which cannot be shipped; exclude it", rel, typeName(info.Mode()))
		}
		t.Files = append(t.Files, f)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(t.Files) == 0 {
		return nil, fmt.Errorf("source directory %s: %w (is everything excluded?)", root, ErrEmpty)
	}
	sort.Slice(t.Files, func(i, j int) bool { return t.Files[i].Rel < t.Files[j].Rel })
	if t.Digest, err = t.digest(); err != nil {
		return nil, err
	}
	return t, nil
}

// escapes reports whether a symlink at rel with the given target resolves
// outside the tree (lexically: the link is shipped, not its target).
func escapes(rel, target string) bool {
	if path.IsAbs(target) {
		return true
	}
	resolved := path.Join(path.Dir(rel), target)
	return resolved == ".." || strings.HasPrefix(resolved, "../")
}

func typeName(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeDevice != 0:
		return "device"
	default:
		return "special file"
	}
}

// digest hashes every regular file (kept per file for the manifest) and
// the whole tree: names, modes, link targets and content hashes.
func (t *Tree) digest() (string, error) {
	h := sha256.New()
	for i := range t.Files {
		f := &t.Files[i]
		if f.Mode.IsRegular() {
			fh := sha256.New()
			if err := t.copyFile(fh, *f); err != nil {
				return "", err
			}
			f.SHA256 = hex.EncodeToString(fh.Sum(nil))
		}
		fmt.Fprintf(h, "%q %o %q %s\n", f.Rel, uint32(f.Mode), f.Link, f.SHA256)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

func (t *Tree) copyFile(w io.Writer, f File) error {
	src, err := t.fsys.Open(f.Rel)
	if err != nil {
		return err
	}
	defer src.Close()
	n, err := io.Copy(w, src)
	if err != nil {
		return err
	}
	if n != f.Size {
		return fmt.Errorf("%s changed size while being shipped (%d bytes, then %d); stop whatever writes to it and deploy again", f.Rel, f.Size, n)
	}
	return nil
}

// Extra is a file written into a tar stream from memory (the manifest).
type Extra struct {
	Name string
	Data []byte
}

// Reserved names at the root of a release: slipway's own files travel in
// the upload stream under these names and are moved out on the host.
// The delta copy's and the recycle's work files (internal/deploy) are here
// too.
var Reserved = []string{".slipway-manifest", ".slipway-manifest-patch", ".slipway-check", ".slipway-pack",
	".slipway-copy-list", ".slipway-copy-list.names", ".slipway-copy-status", ".slipway-copy-dirs", ".slipway-copy-files",
	".slipway-reflink-probe", ".slipway-recycle-listing", ".slipway-recycle-remove", ".slipway-recycle-names", ".slipway-recycle-odd"}

// WriteTarOf writes the given entries of the tree, then extra files, as a
// tar stream. Owners are left out, so files belong to whoever extracts
// them on the host.
func (t *Tree) WriteTarOf(w io.Writer, files []File, extra []Extra) error {
	tw := tar.NewWriter(w)
	for _, e := range extra {
		hdr := &tar.Header{Name: e.Name, Mode: 0o600, Size: int64(len(e.Data)), Typeflag: tar.TypeReg}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(e.Data); err != nil {
			return err
		}
	}
	for _, f := range files {
		if err := t.writeEntry(tw, f, int64(f.Mode.Perm())); err != nil {
			return err
		}
	}
	return tw.Close()
}

// ErrEmpty is returned for a tree with nothing to ship.
var ErrEmpty = errors.New("nothing to ship")

// writeEntry writes f to tw with mode: a header without owners, then a
// regular file's content. Whole seconds keep most headers plain USTAR: a
// PAX header for sub-second times would double the bytes of a small delta.
func (t *Tree) writeEntry(tw *tar.Writer, f File, mode int64) error {
	hdr := &tar.Header{Name: f.Rel, Mode: mode, ModTime: f.ModTime.Truncate(time.Second)}
	switch {
	case f.Mode.IsDir():
		hdr.Typeflag, hdr.Name = tar.TypeDir, f.Rel+"/"
	case f.Mode&fs.ModeSymlink != 0:
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, f.Link
	default:
		hdr.Typeflag, hdr.Size = tar.TypeReg, f.Size
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("%s: %w", f.Rel, err)
	}
	if hdr.Typeflag == tar.TypeReg {
		return t.copyFile(tw, f)
	}
	return nil
}
