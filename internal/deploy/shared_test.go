package deploy

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/source"
)

// TestSharedSeedFailureStopsTheDeploy: a shared directory whose seeding
// fails part-way (here cp failing on one file, as on a full disk) fails
// the deploy, though the link step rides in the upload's command, where
// set -e would not stop it; nothing goes live and the shared directory
// is left empty, so the next deploy seeds it whole.
func TestSharedSeedFailureStopsTheDeploy(t *testing.T) {
	dir := t.TempDir()
	opts := localStage(t, dir, host.NewLocal())
	opts.Config.Shared.Dirs = []string{"storage"}
	l := opts.Layout()
	site := opts.Config.Source.Path
	seed := []string{"a.txt", "b.txt", "c.txt", ".hidden"}
	for _, name := range seed {
		writeFile(t, filepath.Join(site, "storage", name), name)
	}
	writeFile(t, filepath.Join(site, "index.html"), "v1")
	tree, err := source.Scan(site, nil)
	if err != nil {
		t.Fatal(err)
	}

	path := os.Getenv("PATH")
	shimOnPath(t, "cp", `#!/bin/sh
case "$*" in *b.txt*) echo "cp: error writing: No space left on device" >&2; exit 1;; esac
exec /bin/cp "$@"
`)
	if _, err := Deploy(context.Background(), opts, Source{Tree: tree, Revision: tree.Digest}); err == nil {
		t.Fatal("the deploy succeeded with the seeding of shared/storage failing")
	}
	if _, err := os.Lstat(l.CurrentLink()); !os.IsNotExist(err) {
		t.Errorf("current exists after the failed deploy (%v)", err)
	}
	shared := l.SharedPath("storage")
	if names := dirNames(t, shared); len(names) != 0 {
		t.Errorf("shared/storage holds %v after the failed seeding, want nothing", names)
	}
	if names := dirNames(t, l.SharedDir()); !slices.Equal(names, []string{"storage"}) {
		t.Errorf("shared/ holds %v after the failed seeding, want only storage", names)
	}

	t.Setenv("PATH", path)
	deployVersion(t, opts, "v2")
	want := slices.Clone(seed)
	slices.Sort(want)
	if got := dirNames(t, shared); !slices.Equal(got, want) {
		t.Errorf("shared/storage holds %v after the next deploy, want %v", got, want)
	}
	if names := dirNames(t, l.SharedDir()); !slices.Equal(names, []string{"storage"}) {
		t.Errorf("shared/ holds %v after the seeding, want only storage", names)
	}
}

// dirNames lists dir's entries, sorted.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}
