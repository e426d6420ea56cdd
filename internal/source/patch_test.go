package source

import (
	"bytes"
	"fmt"
	"testing"
)

// TestPatchIsStable: the same change makes the same patch, byte for byte,
// however Go orders a map: an artifact store names a pack by its checksum.
func TestPatchIsStable(t *testing.T) {
	root := t.TempDir()
	for i := range 30 {
		writeFile(t, root, fmt.Sprintf("f%02d.php", i), "v1", 0o644)
	}
	old, err := Scan(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	live, err := ParseManifest(old.Sealed())
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		writeFile(t, root, fmt.Sprintf("f%02d.php", i), "v2", 0o644)
	}
	tree, err := Scan(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	first := tree.Patch(live)
	for range 20 {
		if again := tree.Patch(live); !bytes.Equal(again, first) {
			t.Fatalf("two patches of one change differ:\n%s\n---\n%s", first, again)
		}
	}
}
