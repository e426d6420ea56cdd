package deploy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/slipway-deploy/slipway/internal/layout"
	"github.com/slipway-deploy/slipway/internal/shell"
	"github.com/slipway-deploy/slipway/internal/source"
)

func TestPickFromManifest(t *testing.T) {
	order := []string{"a", "b", "c \"q\"", "d", "e", "f\n", "g"}
	pick := pickFromManifest(order, []string{"a", "b", "c \"q\"", "e", "f\n", "g"})
	if pick == nil {
		t.Fatal("no pick")
	}
	// Lines start at 2: a=2 b=3 (c is odd) d=5 is not copied, e=6 g=8.
	if want := "NR>=2&&NR<=3||NR>=6&&NR<=6||NR>=8&&NR<=8"; pick.cond("NR") != want {
		t.Errorf("cond %q, want %q", pick.cond("NR"), want)
	}
	if pick.lines != 4 {
		t.Errorf("lines %d, want 4", pick.lines)
	}
	if want := []string{"c \"q\"", "f\n"}; !slices.Equal(pick.odd, want) {
		t.Errorf("odd %q, want %q", pick.odd, want)
	}
	if p := pickFromManifest(order, nil); p == nil || p.cond("NR") != "0" || p.lines != 0 {
		t.Errorf("nothing to copy: %+v", p)
	}
	// Every other line: too many ranges for a command line.
	var many, every []string
	for i := range 2*maxPickRanges + 2 {
		name := fmt.Sprint(i)
		many = append(many, name)
		if i%2 == 0 {
			every = append(every, name)
		}
	}
	if p := pickFromManifest(many, every); p != nil {
		t.Errorf("%d ranges picked, want the list sent instead", maxPickRanges+1)
	}
}

// The copy's and the recycle's work files inside the new release are
// names no app may ship.
func TestCopyWorkFilesAreReserved(t *testing.T) {
	for _, name := range []string{copyListName, copyListName + ".names", copyStatusName, copyDirsName, copyFilesName, reflinkProbe, recycleListing, recycleRemove, recycleNames, recycleOdd} {
		if !slices.Contains(source.Reserved, name) {
			t.Errorf("%s is not in source.Reserved", name)
		}
	}
}

// TestCopySplitFailsOnAFailedWrite: the split of the copy list (files to
// standard output, directories to descriptor 3) fails when a write of the
// files' list fails (a full disk), though the batch ends with a
// directory, whose write succeeds: a list cut short would copy less.
func TestCopySplitFailsOnAFailedWrite(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "d"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "f"), "x")
	split := string(copyArgs(layout.Layout{DeployTo: "/srv/app", Releases: "releases"}, "1", "2", fromStdin)["split"].(shell.Raw))
	script := `cd "$1" && printf 'f\000d\000' | ` + split + ` 3> /dev/null > /dev/full`
	if out, err := exec.Command("/bin/sh", "-c", script, "sh", dir).CombinedOutput(); err == nil {
		t.Errorf("the split succeeded writing its list to a full disk: %s", out)
	}
}
