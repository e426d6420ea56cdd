package source

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// archiveSite is a tree with what an archive must keep exactly: modes
// (executable, setgid directory), a symlink, an empty file, a name longer
// than plain tar holds, one that is not UTF-8, and one shell-hostile.
func archiveSite(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	writeFile(t, root, "index.php", "<?php echo 1;", 0o644)
	writeFile(t, root, "bin/run", "#!/bin/sh\necho run\n", 0o755)
	writeFile(t, root, "empty", "", 0o600)
	writeFile(t, root, strings.Repeat("long/", 30)+"file.txt", "deep", 0o644)
	writeFile(t, root, "odd name $(x) 'q'\n", "odd", 0o644)
	writeFile(t, root, "latin1-\xe9.txt", "not utf-8", 0o644)
	if err := os.MkdirAll(filepath.Join(root, "cache"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(root, "cache"), 0o775|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("index.php", filepath.Join(root, "link.php")); err != nil {
		t.Fatal(err)
	}
	return root
}

func writeArchive(t *testing.T, tree *Tree) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "tree.tar")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := tree.WriteArchive(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return file
}

// shipped is what an upload of the tree sends: the tar stream a host gets.
func shipped(t *testing.T, tree *Tree) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := tree.WriteTarOf(&buf, tree.Files, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestArchiveShipsTheSameTree(t *testing.T) {
	tree, err := Scan(archiveSite(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	a, err := OpenArchive(writeArchive(t, tree))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.Tree.Digest != tree.Digest {
		t.Fatalf("digest %s, want %s", a.Tree.Digest, tree.Digest)
	}
	if a.Tree.Size != tree.Size {
		t.Errorf("size %d, want %d", a.Tree.Size, tree.Size)
	}
	for i := range tree.Files {
		want, got := tree.Files[i], a.Tree.Files[i]
		want.ModTime = want.ModTime.Truncate(time.Second)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("entry %d: %+v, want %+v", i, got, want)
		}
	}
	// What goes to the hosts is byte for byte what the tree itself sends.
	if !bytes.Equal(shipped(t, a.Tree), shipped(t, tree)) {
		t.Error("the archive's upload stream differs from the tree's")
	}
	if !bytes.Equal(a.Tree.Sealed(), tree.Sealed()) {
		t.Error("manifests differ")
	}
	// And it can be copied out, as a build copy is.
	dir := t.TempDir()
	if err := a.Tree.CopyTo(dir); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "bin/run")); string(got) != "#!/bin/sh\necho run\n" {
		t.Errorf("copied out: bin/run = %q", got)
	}
}

func TestDamagedArchiveHasAnotherDigest(t *testing.T) {
	tree, err := Scan(archiveSite(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	file := writeArchive(t, tree)
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(data, []byte("echo run"))
	data[i] = 'E'
	if err := os.WriteFile(file, data, 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := OpenArchive(file)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if a.Tree.Digest == tree.Digest {
		t.Fatal("a damaged archive kept its digest")
	}
	for _, cut := range []int{len(data) / 3, len(data) / 2, len(data) - 2048} {
		if err := os.WriteFile(file, data[:cut], 0o644); err != nil {
			t.Fatal(err)
		}
		if a, err := OpenArchive(file); err == nil {
			if a.Tree.Digest == tree.Digest {
				t.Errorf("cut at %d of %d: the archive kept its digest", cut, len(data))
			}
			a.Close()
		}
	}
}

// release is the tree as a host holds it after an upload, streamed back by
// tar: modes changed by writable, names given to BusyBox tar as ./name in
// two batches, one archive each.
func releaseStream(t *testing.T, tree *Tree, edit func(*tar.Header, []byte) []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	var batch []File
	for _, f := range tree.Files {
		if !f.Mode.IsDir() {
			batch = append(batch, f)
		}
	}
	for _, part := range [][]File{batch[:len(batch)/2], batch[len(batch)/2:]} {
		tw := tar.NewWriter(&out)
		for _, f := range part {
			hdr := &tar.Header{Name: "./" + f.Rel, Mode: 0o775, ModTime: f.ModTime}
			var content []byte
			if f.Link != "" {
				hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, f.Link
			} else {
				file, err := tree.fsys.Open(f.Rel)
				if err != nil {
					t.Fatal(err)
				}
				content, _ = io.ReadAll(file)
				file.Close()
				hdr.Typeflag = tar.TypeReg
			}
			if edit != nil {
				content = edit(hdr, content)
			}
			hdr.Size = int64(len(content))
			if hdr.Typeflag != tar.TypeReg {
				hdr.Size = 0
			}
			if err := tw.WriteHeader(hdr); err != nil {
				t.Fatal(err)
			}
			tw.Write(content)
		}
		tw.Close()
		out.Write(make([]byte, 10240-out.Len()%10240)) // tar's record padding
	}
	return out.Bytes()
}

func TestArchiveReleaseRebuildsTheShippedTree(t *testing.T) {
	tree, err := Scan(archiveSite(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := ParseManifest(tree.Sealed())
	if err != nil {
		t.Fatal(err)
	}
	rebuild := func(stream []byte) (*Archive, error) {
		file := filepath.Join(t.TempDir(), "tree.tar")
		f, err := os.Create(file)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := ArchiveRelease(f, bytes.NewReader(stream), manifest, time.Now()); err != nil {
			return nil, err
		}
		return OpenArchive(file)
	}

	a, err := rebuild(releaseStream(t, tree, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	// The setgid directory's bit is not in the manifest: the rebuilt tree
	// has every file right, and a digest of its own.
	noSetgid, err := Scan(archiveSite(t), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range noSetgid.Files {
		if noSetgid.Files[i].Rel == "cache" {
			noSetgid.Files[i].Mode &^= os.ModeSetgid
		}
	}
	want, _ := noSetgid.digest()
	if a.Tree.Digest != want {
		t.Fatalf("rebuilt digest %s, want %s", a.Tree.Digest, want)
	}

	var mismatch *ReleaseMismatch
	_, err = rebuild(releaseStream(t, tree, func(hdr *tar.Header, content []byte) []byte {
		if hdr.Name == "./index.php" {
			return []byte("<?php echo 2;") // the same size, another content
		}
		if hdr.Name == "./link.php" {
			hdr.Linkname = "elsewhere.php"
		}
		return content
	}))
	if !errors.As(err, &mismatch) || strings.Join(mismatch.Differ, ",") != "index.php,link.php" || len(mismatch.Missing) != 0 {
		t.Fatalf("edited release: %v (%#v)", err, mismatch)
	}

	stream := releaseStream(t, tree, nil)
	_, err = rebuild(stream[:bytes.Index(stream, []byte("./index.php"))-345]) // cut inside the entry before
	if err == nil {
		t.Fatal("a truncated stream was taken")
	}

	var withoutBin bytes.Buffer
	tw := tar.NewWriter(&withoutBin)
	tw.WriteHeader(&tar.Header{Name: "index.php", Typeflag: tar.TypeReg, Size: 13, Mode: 0o644})
	tw.Write([]byte("<?php echo 1;"))
	tw.Close()
	_, err = rebuild(withoutBin.Bytes())
	notDirs := 0
	for _, e := range manifest {
		if e.Type != 'd' {
			notDirs++
		}
	}
	if !errors.As(err, &mismatch) || len(mismatch.Missing) != notDirs-1 {
		t.Fatalf("partial release: %v", err)
	}
	if !strings.Contains(err.Error(), "are missing (bin/run, empty,") || !strings.Contains(err.Error(), "more)") {
		t.Errorf("message: %v", err)
	}
}
