package deploy

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/source"
	"github.com/slipway-deploy/slipway/internal/testutil"
)

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	info, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return info.Sys().(*syscall.Stat_t).Ino
}

// recycleStage is a local stage keeping 3 releases of recycleSite, and its
// releases directory.
func recycleStage(t *testing.T) (Options, string) {
	t.Helper()
	dir := t.TempDir()
	opts := localStage(t, dir, &host.Local{})
	opts.Config.KeepReleases = 3
	recycleSite(t, opts.Config.Source.Path)
	return opts, filepath.Join(dir, "deploy", "releases")
}

// recycleSite is an app of many entries: nested directories (one with its
// own mode), an executable, a symlink, and a name the manifest escapes.
func recycleSite(t *testing.T, site string) {
	t.Helper()
	for i := range 60 {
		writeFile(t, filepath.Join(site, fmt.Sprintf("src/mod%d/file%02d.php", i%6, i)), fmt.Sprintf("<?php // %d\n", i))
	}
	writeFile(t, filepath.Join(site, "bin/console"), "#!/bin/sh\n")
	writeFile(t, filepath.Join(site, "private/keys.txt"), "k")
	writeFile(t, filepath.Join(site, "odd \xff name\n.txt"), "odd")
	writeFile(t, filepath.Join(site, "-dash"), "dash")
	for p, mode := range map[string]os.FileMode{"bin/console": 0o755, "private": 0o750} {
		if err := os.Chmod(filepath.Join(site, p), mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("src/mod1", filepath.Join(site, "link")); err != nil {
		t.Fatal(err)
	}
}

// TestRecycledReleaseIsTheNewTree: with a full history, the new release
// is the oldest release's directory (the same inode), and whatever the
// app did to that directory while it was kept (files written, changed in
// place, chmodded, removed, a file replaced by a directory, a symlink
// retargeted), the release is exactly the new tree, with the shared links
// of a fresh one; the old release's metadata is gone with it.
func TestRecycledReleaseIsTheNewTree(t *testing.T) {
	dir := t.TempDir()
	opts := localStage(t, dir, &host.Local{})
	opts.Config.KeepReleases = 3
	opts.Config.Shared.Dirs = []string{"storage"}
	site := opts.Config.Source.Path
	recycleSite(t, site)
	releases := filepath.Join(dir, "deploy", "releases")

	oldest := deployVersion(t, opts, "v1")
	old := filepath.Join(releases, oldest)
	// The app changes between the oldest release and the live one, and
	// again for the new one.
	writeFile(t, filepath.Join(site, "src/mod1/file07.php"), "<?php // changed for v2\n")
	if err := os.Remove(filepath.Join(site, "src/mod1/file13.php")); err != nil {
		t.Fatal(err)
	}
	deployVersion(t, opts, "v2")
	deployVersion(t, opts, "v2.1")

	// The app at work in its release while it was live, as seen now.
	time.Sleep(20 * time.Millisecond)
	writeFile(t, filepath.Join(old, "junk.txt"), "written at run time")
	writeFile(t, filepath.Join(old, "cache/views/a.php"), "compiled")
	writeFile(t, filepath.Join(old, "src/mod2/file02.php"), "changed in place") // unchanged in the app
	if err := os.Chmod(filepath.Join(old, "src/mod3/file03.php"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(old, "src/mod4/file04.php")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(old, "src/mod5/file05.php")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(old, "src/mod5/file05.php/inside"), "a directory now")
	if err := os.Remove(filepath.Join(old, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("src/mod2", filepath.Join(old, "link")); err != nil {
		t.Fatal(err)
	}
	kept := inode(t, filepath.Join(old, "src/mod0/file00.php"))
	oldDir := inode(t, old)

	writeFile(t, filepath.Join(site, "src/new/added.php"), "<?php // added in v3\n")
	if err := os.Chmod(filepath.Join(site, "private"), 0o700); err != nil {
		t.Fatal(err)
	}

	// The plan says so.
	writeFile(t, filepath.Join(site, "index.html"), "v3")
	tree, err := source.Scan(site, nil)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := PlanDeploy(context.Background(), opts, Source{Tree: tree, Revision: tree.Digest})
	if err != nil {
		t.Fatal(err)
	}
	if got := plan.Hosts[0].Recycle; got != oldest {
		t.Errorf("the plan would recycle %q, want %q", got, oldest)
	}

	id := deployVersion(t, opts, "v3")
	release := filepath.Join(releases, id)
	if inode(t, release) != oldDir {
		t.Fatalf("release %s is a new directory, not %s's", id, oldest)
	}
	if inode(t, filepath.Join(release, "src/mod0/file00.php")) != kept {
		t.Errorf("an unchanged file was copied again")
	}
	want := testutil.Tree(t, site)
	got := testutil.Tree(t, release)
	if got["storage"] != "link ../../shared/storage" {
		t.Errorf("storage is %q, want the shared link", got["storage"])
	}
	delete(got, "storage")
	delete(got, "REVISION")
	for p, w := range want {
		if got[p] != w {
			t.Errorf("%s: %q, want %q", p, got[p], w)
		}
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: left in the release", p)
		}
	}
	for _, gone := range []string{old, filepath.Join(dir, "deploy", ".slipway", "releases", oldest+".json"), filepath.Join(dir, "deploy", ".slipway", "manifests", oldest)} {
		if _, err := os.Lstat(gone); err == nil {
			t.Errorf("%s is still there", gone)
		}
	}
	for _, f := range []string{recycleListing, recycleRemove, recycleNames, recycleOdd, copyListName} {
		if _, err := os.Lstat(filepath.Join(release, f)); err == nil {
			t.Errorf("work file %s left in the release", f)
		}
	}
}

// TestRecycleFallsBackToACopy: a candidate a process still uses, or that
// holds an entry the deploy user does not own, is left alone (cleanup
// deals with it as before) and the release is a copy; so is every
// release with source.recycle off, and with keep_releases 2, where the
// release cleanup deletes is the rollback target while the deploy runs.
func TestRecycleFallsBackToACopy(t *testing.T) {
	for _, c := range []string{"in use", "not ours", "recycle off", "keep 2"} {
		t.Run(c, func(t *testing.T) {
			if c == "not ours" && os.Geteuid() != 0 {
				t.Fatal("needs root, to give a file to another user")
			}
			dir := t.TempDir()
			opts := localStage(t, dir, &host.Local{})
			opts.Config.KeepReleases = 3
			opts.Config.Source.Recycle = c != "recycle off"
			recycleSite(t, opts.Config.Source.Path)
			releases := filepath.Join(dir, "deploy", "releases")
			oldest := deployVersion(t, opts, "v1")
			old := filepath.Join(releases, oldest)
			deployVersion(t, opts, "v2")
			if c == "keep 2" {
				// The release cleanup would delete is the rollback
				// target until the new release is live.
				opts.Config.KeepReleases = 2
			} else {
				deployVersion(t, opts, "v2.1")
			}
			oldDir := inode(t, old)
			switch c {
			case "in use":
				cmd := exec.Command("sleep", "60")
				cmd.Dir = old
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
			case "not ours":
				if err := os.Lchown(filepath.Join(old, "private/keys.txt"), 65534, 65534); err != nil {
					t.Fatal(err)
				}
			}
			id := deployVersion(t, opts, "v3")
			if inode(t, filepath.Join(releases, id)) == oldDir {
				t.Fatalf("%s recycled", oldest)
			}
			want := testutil.Tree(t, opts.Config.Source.Path)
			got := testutil.Tree(t, filepath.Join(releases, id))
			delete(got, "REVISION")
			if len(got) != len(want) {
				t.Errorf("%d entries in the release, want %d", len(got), len(want))
			}
			for p, w := range want {
				if got[p] != w {
					t.Errorf("%s: %q, want %q", p, got[p], w)
				}
			}
			_, err := os.Lstat(old)
			if stays := c == "in use"; (err == nil) != stays {
				t.Errorf("%s there: %v, want %v (cleanup keeps a release in use, and deletes the others)", oldest, err == nil, stays)
			}
		})
	}
}

// TestRecycleAfterAFailure: a deploy that fails after recycling leaves one
// release fewer, the oldest, and never the rollback target; once a deploy
// went live again, the next recycles again.
func TestRecycleAfterAFailure(t *testing.T) {
	opts, releases := recycleStage(t)
	v1 := deployVersion(t, opts, "v1")
	v2 := deployVersion(t, opts, "v2")
	v3 := deployVersion(t, opts, "v3")

	opts.Config.Hooks.BeforeSwitch = []config.Hook{{Run: "false"}}
	writeFile(t, filepath.Join(opts.Config.Source.Path, "index.html"), "v4")
	tree, err := source.Scan(opts.Config.Source.Path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Deploy(context.Background(), opts, Source{Tree: tree, Revision: tree.Digest}); err == nil {
		t.Fatal("the deploy with a failing before_switch hook succeeded")
	}
	if _, err := os.Lstat(filepath.Join(releases, v1)); err == nil {
		t.Errorf("%s is still there: the failed deploy did not recycle it", v1)
	}
	for _, id := range []string{v2, v3} {
		if _, err := os.Lstat(filepath.Join(releases, id)); err != nil {
			t.Errorf("the failed deploy took %s: %v", id, err)
		}
	}
	opts.Config.Hooks.BeforeSwitch = nil

	deployVersion(t, opts, "v5")
	before := inode(t, filepath.Join(releases, v2))
	v6 := deployVersion(t, opts, "v6")
	if inode(t, filepath.Join(releases, v6)) != before {
		t.Errorf("the deploy after a success did not recycle %s", v2)
	}
}

// TestRecycleChoice: the release cleanup would delete once the new one is
// live, the oldest that went live, never the rollback target of now, and
// none while the newest release of the host did not go live.
func TestRecycleChoice(t *testing.T) {
	meta := func(states ...string) map[string]*ReleaseMeta {
		m := map[string]*ReleaseMeta{}
		for i, st := range states {
			id := fmt.Sprintf("%02d", i+1)
			m[id] = &ReleaseMeta{ID: id, State: st}
		}
		return m
	}
	ids := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("%02d", i+1))
		}
		return out
	}
	d, rb, f := StateDeployed, StateRolledBack, StateFailed
	for _, c := range []struct {
		name     string
		releases []string
		meta     map[string]*ReleaseMeta
		current  string
		keep     int
		want     string
	}{
		{"a full history", ids(3), meta(d, d, d), "03", 3, "01"},
		{"more than a full history (a release was in use)", ids(4), meta(d, d, d, d), "04", 3, "01"},
		{"a history not yet full", ids(2), meta(d, d), "02", 3, ""},
		{"keep 2: the one cleanup deletes is the rollback target", ids(2), meta(d, d), "02", 2, ""},
		{"keep 1", ids(2), meta(d, d), "02", 1, ""},
		{"the last deploy failed, its release gone", ids(4), meta(d, d, d, d, f), "04", 3, ""},
		{"rolled back: the live one is older", ids(4), meta(d, d, d, rb), "03", 3, "01"},
		{"only a failed release to delete", ids(3), meta(f, d, d), "03", 3, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			st := &State{Releases: c.releases, Meta: c.meta, Current: c.current}
			if got := recycleChoice(st, "99", c.keep); got != c.want {
				t.Errorf("recycle %q, want %q", got, c.want)
			}
		})
	}
}

// TestRecycleAfterARollback: the rounds of a fleet in use (deploy, roll
// back, deploy again) keep recycling where cleanup would delete: the
// release rolled back from stays in history and counts for no
// keep_releases, so the deploy after a rollback recycles only once the
// deployed releases exceed keep_releases again.
func TestRecycleAfterARollback(t *testing.T) {
	opts, releases := recycleStage(t)
	var deployed []string // went live and not rolled back from, oldest first
	for _, v := range []string{"v1", "v2", "v3"} {
		deployed = append(deployed, deployVersion(t, opts, v))
	}
	for round := range 3 {
		// Back to a full history, then the deploy rolled back from.
		if round > 0 {
			deployed = append(deployed, deployVersion(t, opts, fmt.Sprintf("fill %d", round)))
		}
		oldest := deployed[0]
		before := inode(t, filepath.Join(releases, oldest))
		id := deployVersion(t, opts, fmt.Sprintf("round %d", round))
		if inode(t, filepath.Join(releases, id)) != before {
			t.Errorf("round %d: %s did not recycle %s", round+1, id, oldest)
		}
		deployed = deployed[1:]
		if _, err := Rollback(context.Background(), opts, RollbackOptions{}); err != nil {
			t.Fatalf("round %d: rollback: %v", round+1, err)
		}
	}
}
