package source

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestManifestRoundTripAndDiff(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root, "index.php", "v1", 0o644)
	writeFile(t, root, "bin/run", "#!/bin/sh", 0o755)
	writeFile(t, root, "odd \"name\"\n\xff.txt", "odd", 0o644)
	writeFile(t, root, "storage/logs/.keep", "", 0o644)
	writeFile(t, root, "gone.txt", "bye", 0o644)
	writeFile(t, root, "lib/util.php", "u", 0o644)
	if err := os.Symlink("index.php", filepath.Join(root, "link.php")); err != nil {
		t.Fatal(err)
	}
	old, err := Scan(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	live, err := ParseManifest(old.Sealed())
	if err != nil {
		t.Fatal(err)
	}
	if len(live) != len(old.Files) {
		t.Fatalf("manifest has %d entries, tree %d", len(live), len(old.Files))
	}

	writeFile(t, root, "index.php", "v2", 0o644)
	if err := os.Chmod(filepath.Join(root, "bin/run"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(root, "gone.txt")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, root, "new.txt", "hi", 0o644)
	tree, err := Scan(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := tree.Diff(live, []string{"storage"})
	var sent []string
	for _, f := range d.Send {
		sent = append(sent, f.Rel)
	}
	slices.Sort(sent)
	wantSent := []string{"bin", "bin/run", "index.php", "new.txt", "storage", "storage/logs", "storage/logs/.keep"}
	if !slices.Equal(sent, wantSent) {
		t.Errorf("sent %q, want %q (changed, added, directories, and everything under shared paths)", sent, wantSent)
	}
	slices.Sort(d.Copy)
	if want := []string{"lib/util.php", "link.php", "odd \"name\"\n\xff.txt"}; !slices.Equal(d.Copy, want) {
		t.Errorf("copied %q, want %q", d.Copy, want)
	}
	// Unchanged directories too, each before what it holds (bin is
	// unchanged, only bin/run changed; storage is a keep-out path).
	if want := []string{"bin", "lib", "lib/util.php", "link.php", "odd \"name\"\n\xff.txt"}; !slices.Equal(d.CopyTree, want) {
		t.Errorf("copy tree %q, want %q", d.CopyTree, want)
	}
	if d.Removed != 1 {
		t.Errorf("removed = %d, want 1", d.Removed)
	}
}

func TestParseManifestRefusesDamage(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root, "a.txt", "a", 0o644)
	tree, err := Scan(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	good := string(tree.Sealed())
	for name, data := range map[string]string{
		"empty":            "",
		"wrong header":     "slipway-manifest 9\nend\n",
		"truncated":        strings.TrimSuffix(good, "end\n"),
		"cut mid-line":     good[:len(good)-20],
		"bad sha":          strings.Replace(good, tree.Files[0].SHA256, "zz", 1),
		"escaping path":    "slipway-manifest 1\nf 644 1 " + tree.Files[0].SHA256 + " \"../../etc/passwd\"\nend\n",
		"absolute path":    "slipway-manifest 1\nd 755 0 - \"/etc\"\nend\n",
		"after end":        good + "d 755 0 - \"x\"\n",
		"duplicate":        strings.Replace(good, "end\n", strings.SplitN(good, "\n", 3)[1]+"\nend\n", 1),
		"unquoted path":    "slipway-manifest 1\nd 755 0 - x\nend\n",
		"bad mode":         "slipway-manifest 1\nd 999 0 - \"x\"\nend\n",
		"file without sha": "slipway-manifest 1\nf 644 1 - \"x\"\nend\n",
	} {
		if _, err := ParseManifest([]byte(data)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := ParseManifest([]byte(good)); err != nil {
		t.Errorf("good manifest refused: %v", err)
	}
}

func FuzzParseManifest(f *testing.F) {
	f.Add([]byte("slipway-manifest 1\nf 644 1 " + strings.Repeat("a", 64) + " \"x\"\nl 777 0 - \"l\" \"x\"\nd 755 0 - \"d\"\nend\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := ParseManifest(data)
		if err != nil {
			return
		}
		for rel := range entries {
			if checkRel(rel) != nil {
				t.Fatalf("accepted unsafe path %q", rel)
			}
		}
	})
}

// TestChecklistReadBySha256sum feeds the checklist to the real sha256sum:
// names with backslashes, newlines and carriage returns must verify.
func TestChecklistReadBySha256sum(t *testing.T) {
	root := t.TempDir()
	for _, name := range []string{"plain.txt", "back\\slash", "new\nline", "car\rriage", "-dash", "sp ace"} {
		writeFile(t, root, name, "content of "+name, 0o644)
	}
	tree, err := Scan(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	check := filepath.Join(t.TempDir(), "check")
	if err := os.WriteFile(check, Checklist(tree.Files), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sha256sum", "-c", "--strict", check)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sha256sum -c: %v\n%s", err, out)
	}
	writeFile(t, root, "new\nline", "tampered", 0o644)
	cmd = exec.Command("sha256sum", "-c", "--quiet", "--strict", check)
	cmd.Dir = root
	if err := cmd.Run(); err == nil {
		t.Fatal("sha256sum -c accepted a changed file")
	}
}
