package source

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, root, rel, content string, mode os.FileMode) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func TestScanAndTar(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root, "index.php", "<?php echo 1;", 0o644)
	writeFile(t, root, "bin/run", "#!/bin/sh", 0o755)
	writeFile(t, root, "open", "world-writable", 0o666)
	writeFile(t, root, "tests/a_test.php", "x", 0o644)
	writeFile(t, root, "odd name $(x) 'q'\n", "odd", 0o644)
	if err := os.Symlink("index.php", filepath.Join(root, "link.php")); err != nil {
		t.Fatal(err)
	}
	tree, err := Scan(root, []string{"tests/"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range tree.Files {
		names = append(names, f.Rel)
	}
	want := "bin bin/run index.php link.php odd name $(x) 'q'\n open"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("files = %q, want %q", got, want)
	}
	var buf bytes.Buffer
	if err := tree.WriteTarOf(&buf, tree.Files, nil); err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(&buf)
	seen := map[string]*tar.Header{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		seen[hdr.Name] = hdr
	}
	if seen["bin/run"].Mode != 0o755 {
		t.Errorf("bin/run mode = %o, want 755", seen["bin/run"].Mode)
	}
	if seen["open"].Mode != 0o664 {
		t.Errorf("world-writable file shipped with mode %o, want 664", seen["open"].Mode)
	}
	if seen["link.php"].Linkname != "index.php" {
		t.Errorf("symlink target = %q", seen["link.php"].Linkname)
	}
	if !strings.HasPrefix(tree.Digest, "sha256:") {
		t.Errorf("digest = %q", tree.Digest)
	}
}

func TestDigestFollowsContent(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root, "a", "one", 0o644)
	first, err := Scan(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	again, _ := Scan(root, nil)
	if first.Digest != again.Digest {
		t.Fatal("digest of the same tree changed")
	}
	writeFile(t, root, "a", "two", 0o644)
	changed, _ := Scan(root, nil)
	if changed.Digest == first.Digest {
		t.Fatal("digest did not change with content")
	}
}

func TestScanRefusesEscapingSymlinks(t *testing.T) {
	for _, target := range []string{"/etc/passwd", "../../outside", "../b/../../../etc"} {
		root := t.TempDir()
		writeFile(t, root, "a/file", "x", 0o644)
		if err := os.Symlink(target, filepath.Join(root, "a", "evil")); err != nil {
			t.Fatal(err)
		}
		_, err := Scan(root, nil)
		if err == nil || !strings.Contains(err.Error(), "outside the shipped directory") {
			t.Errorf("symlink to %s: err = %v", target, err)
		}
	}
	root := t.TempDir()
	writeFile(t, root, "a/file", "x", 0o644)
	if err := os.Symlink("../a/file", filepath.Join(root, "a", "ok")); err != nil {
		t.Fatal(err)
	}
	if _, err := Scan(root, nil); err != nil {
		t.Errorf("in-tree symlink refused: %v", err)
	}
}

// A directory its owner cannot write into or enter is refused, by name,
// with the fix; one it can (whatever the others may) ships.
func TestScanRefusesDirectoriesTheOwnerCannotWrite(t *testing.T) {
	for mode, refused := range map[os.FileMode]bool{0o555: true, 0o500: true, 0o655: true, 0o711: false, 0o700: false, 0o2775: false} {
		root := t.TempDir()
		writeFile(t, root, "vendor/pkg/file", "x", 0o644)
		dir := filepath.Join(root, "vendor", "pkg")
		if err := os.Chmod(dir, mode); err != nil {
			t.Fatal(err)
		}
		_, err := Scan(root, nil)
		os.Chmod(dir, 0o755) // so that TempDir can remove it
		switch {
		case refused && (err == nil || !strings.Contains(err.Error(), "vendor/pkg is a directory of mode") || !strings.Contains(err.Error(), "chmod u+wx")):
			t.Errorf("mode %04o: err = %v, want it refused by name, with the fix", mode, err)
		case !refused && err != nil:
			t.Errorf("mode %04o refused: %v", mode, err)
		}
	}
}

func TestScanRefusesEmpty(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root, "tests/x", "x", 0o644)
	if _, err := Scan(root, []string{"tests"}); !errors.Is(err, ErrEmpty) {
		t.Errorf("err = %v, want ErrEmpty", err)
	}
}
