package deploy

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
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

// TestSharedDirNotADirectory: a shared directory that is a symlink to a
// path that does not exist (a volume not mounted) refuses the deploy
// before any change on the host, naming it, where its link would have led
// nowhere; check reports it with its fix.
func TestSharedDirNotADirectory(t *testing.T) {
	dir := t.TempDir()
	opts := localStage(t, dir, host.NewLocal())
	opts.Config.Shared.Dirs = []string{"storage"}
	l := opts.Layout()
	writeFile(t, filepath.Join(opts.Config.Source.Path, "storage", "a.txt"), "a")
	first := deployVersion(t, opts, "v1")

	shared := l.SharedPath("storage")
	if err := os.RemoveAll(shared); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "not-mounted"), shared); err != nil {
		t.Fatal(err)
	}
	releasesBefore := dirNames(t, l.ReleasesDir())
	writeFile(t, filepath.Join(opts.Config.Source.Path, "index.html"), "v2")
	tree, err := source.Scan(opts.Config.Source.Path, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Deploy(context.Background(), opts, Source{Tree: tree, Revision: tree.Digest})
	if err == nil || !strings.Contains(err.Error(), "shared directory "+shared+" on local is not a directory") {
		t.Fatalf("deploy with shared/storage dangling: %v, want it refused, naming it", err)
	}
	if target, err := os.Readlink(l.CurrentLink()); err != nil || filepath.Base(target) != first {
		t.Errorf("current -> %q (%v) after the refused deploy, want release %s", target, err, first)
	}
	if got := dirNames(t, l.ReleasesDir()); !slices.Equal(got, releasesBefore) {
		t.Errorf("releases %v after the refused deploy, want %v: it changed the host", got, releasesBefore)
	}

	reports, err := Check(context.Background(), opts)
	if err == nil {
		t.Fatal("check passed a host whose shared directory dangles")
	}
	if got := problemTexts(reports[0].Problems); !strings.Contains(got, "shared directory "+shared+" is not a directory") {
		t.Errorf("check does not report the dangling shared directory:\n%s", got)
	}
}
