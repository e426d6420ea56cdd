package deploy

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/layout"
	"github.com/slipway-deploy/slipway/internal/source"
)

// promoteStage is a stage on this machine that has deployed tree, with
// what makes a release on a host differ from the tree it shipped: a shared
// directory (a link in the release), a writable directory (its mode
// changed) and a hook that writes into the release.
func promoteStage(t *testing.T) (Options, *source.Tree, string) {
	t.Helper()
	dir := t.TempDir()
	site := filepath.Join(dir, "site")
	writeFile(t, filepath.Join(site, "index.php"), "<?php echo 1;")
	writeFile(t, filepath.Join(site, "bin/console"), "#!/bin/sh\necho console\n")
	writeFile(t, filepath.Join(site, "storage/logs/.gitkeep"), "")
	writeFile(t, filepath.Join(site, "cache/.keep"), "")
	writeFile(t, filepath.Join(site, "odd $(name) 'q'.txt"), "odd")
	if err := os.Chmod(filepath.Join(site, "bin/console"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("index.php", filepath.Join(site, "link.php")); err != nil {
		t.Fatal(err)
	}
	tree, err := source.Scan(site, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &config.Config{
		App: "demo", KeepReleases: 5, Symlink: "relative",
		Layout:   config.Layout{Releases: "releases", Shared: "shared", Current: "current", Repo: "repo"},
		Source:   config.Source{Strategy: "upload", Path: site, Delta: true, Verify: "changed", Compress: "auto"},
		Shared:   config.Shared{Dirs: []string{"storage"}},
		Writable: config.Writable{Dirs: []string{"cache"}, Mode: "group"},
		Hooks:    config.Hooks{BeforeSwitch: []config.Hook{{Run: "echo generated > generated.txt"}}},
	}
	stage := &config.Stage{Name: "staging", DeployTo: filepath.Join(dir, "deploy"), Hosts: []config.Host{{Name: "local", Host: "local", Local: true}}}
	cfg.Stages = []*config.Stage{stage}
	opts := Options{Config: cfg, Stage: stage, Hosts: stage.Hosts, Parallel: 1,
		Dial: func(context.Context, config.Host) (host.Executor, error) { return host.NewLocal(), nil }}
	res, err := Deploy(context.Background(), opts, Source{Tree: tree, Revision: tree.Digest})
	if err != nil {
		t.Fatal(err)
	}
	return opts, tree, filepath.Join(stage.DeployTo, "releases", res.ReleaseID)
}

// fetched fetches live and opens what came as a tree.
func fetched(t *testing.T, live *LiveRelease) (*source.Tree, *FetchStats, error) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "tree.tar")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	stats, err := FetchRelease(context.Background(), live, f)
	f.Close()
	if err != nil {
		return nil, nil, err
	}
	a, err := source.OpenArchive(file)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a.Tree, stats, nil
}

func TestFetchReleaseRebuildsTheShippedTree(t *testing.T) {
	opts, tree, release := promoteStage(t)
	live, err := ReadLive(context.Background(), opts, true)
	if err != nil {
		t.Fatal(err)
	}
	if live.ID != filepath.Base(release) || live.Meta.Digest != tree.Digest || live.Origin() != "staging@"+live.ID ||
		strings.Join(live.Hosts, ",") != "local" || live.Manifest["index.php"].Type != 'f' {
		t.Fatalf("live release: %+v", live)
	}
	if _, err := os.Stat(filepath.Join(release, "generated.txt")); err != nil {
		t.Fatal("the hook did not write into the release, so this test proves less than it should")
	}

	busybox := t.TempDir()
	if err := os.Symlink("/usr/bin/busybox", filepath.Join(busybox, "tar")); err != nil {
		t.Fatal(err)
	}
	for _, tar := range []string{"GNU", "BusyBox"} {
		for _, compress := range []string{"auto", "gzip"} {
			t.Run(tar+" tar, compress "+compress, func(t *testing.T) {
				if tar == "BusyBox" {
					if _, err := os.Stat("/usr/bin/busybox"); err != nil {
						t.Skip("no /usr/bin/busybox")
					}
					t.Setenv("PATH", busybox+":"+os.Getenv("PATH"))
				}
				opts.Config.Source.Compress = compress
				got, stats, err := fetched(t, live)
				if err != nil {
					t.Fatal(err)
				}
				if got.Digest != tree.Digest {
					t.Fatalf("fetched tree %s, shipped %s", got.Digest, tree.Digest)
				}
				if !bytes.Equal(got.Sealed(), tree.Sealed()) {
					t.Error("manifests differ")
				}
				if stats.Host != "local" || stats.Files != 6 || stats.Bytes == 0 || stats.Gzip != (compress == "gzip") {
					t.Errorf("stats %+v", stats)
				}
			})
		}
	}
}

func TestFetchReleaseRefusesAChangedRelease(t *testing.T) {
	opts, _, release := promoteStage(t)
	live, err := ReadLive(context.Background(), opts, false)
	if err != nil {
		t.Fatal(err)
	}
	index := filepath.Join(release, "index.php")
	writeFile(t, index, "<?php echo 'hotfix';")
	_, _, err = fetched(t, live)
	var changed *ReleaseChangedError
	if !errors.As(err, &changed) || strings.Join(changed.Mismatch.Differ, ",") != "index.php" || len(changed.Shared) != 0 {
		t.Fatalf("edited file: %v", err)
	}
	if !strings.Contains(err.Error(), "staging's live release "+live.ID+" on local is not what its deploy shipped") ||
		!strings.Contains(err.Error(), "refusing to promote it") {
		t.Errorf("message: %v", err)
	}
	writeFile(t, index, "<?php echo 1;")
	if err := os.Remove(filepath.Join(release, "bin/console")); err != nil {
		t.Fatal(err)
	}
	if _, _, err = fetched(t, live); !errors.As(err, &changed) || strings.Join(changed.Mismatch.Missing, ",") != "bin/console" {
		t.Fatalf("removed file: %v", err)
	}
	writeFile(t, filepath.Join(release, "bin/console"), "#!/bin/sh\necho console\n")

	// The app wrote into the shared directory the release links to.
	writeFile(t, filepath.Join(opts.Stage.DeployTo, "shared/storage/logs/.gitkeep"), "log line")
	_, _, err = fetched(t, live)
	if !errors.As(err, &changed) || strings.Join(changed.Shared, ",") != "storage/logs/.gitkeep" || !strings.Contains(err.Error(), "from the artifact cache") {
		t.Fatalf("shared data: %v", err)
	}
}

func TestLiveReleaseNeedsHostsThatAgree(t *testing.T) {
	meta := func(id, digest string) map[string]*ReleaseMeta {
		return map[string]*ReleaseMeta{id: {ID: id, State: StateDeployed, Revision: "abc", Digest: digest}}
	}
	target := func(name, current string, m map[string]*ReleaseMeta) *Target {
		return &Target{Host: config.Host{Name: name}, State: &State{Current: current, Meta: m}}
	}
	const a, b = "20260101000000", "20260102000000"
	for what, c := range map[string]struct {
		targets []*Target
		want    string
	}{
		"disagree": {[]*Target{target("web1", b, meta(b, "sha256:1")), target("web2", b, meta(b, "sha256:1")), target("web3", a, meta(a, "sha256:1"))},
			"the hosts of staging disagree on the live release: " + b + " on web1, web2; " + a + " on web3; bring them to one release first"},
		"nothing live": {[]*Target{target("web1", "", nil)}, "nothing is live on staging"},
		"no record":    {[]*Target{target("web1", a, meta(a, "sha256:1")), target("web2", a, nil)}, "has no slipway record on web2"},
		"record differs": {[]*Target{target("web1", a, meta(a, "sha256:1")), target("web2", a, meta(a, ""))},
			"record their live release " + a + " differently: tree sha256:1 on web1, no tree digest on web2"},
	} {
		live := &LiveRelease{Stage: "staging"}
		err := liveStep{live: live}.RunFleet(context.Background(), c.targets)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v\nwant %q", what, err, c.want)
		}
	}
	live := &LiveRelease{Stage: "staging"}
	noRelease := &Target{Host: config.Host{Name: "db", NoRelease: true}}
	if err := (liveStep{live: live}).RunFleet(context.Background(), []*Target{target("web1", a, meta(a, "sha256:1")), noRelease, target("web2", a, meta(a, "sha256:1"))}); err != nil {
		t.Fatal(err)
	}
	if live.ID != a || live.Meta.Digest != "sha256:1" || strings.Join(live.Hosts, ",") != "web1,web2" {
		t.Errorf("agreed: %+v", live)
	}
}

func TestDiffManifests(t *testing.T) {
	file := func(sum string) source.Entry {
		return source.Entry{Type: 'f', Mode: 0o644, Size: 1, SHA256: strings.Repeat(sum, 64)}
	}
	from := map[string]source.Entry{
		"index.php": file("a"), "same.php": file("b"), "old.txt": file("c"), "dir": {Type: 'd', Mode: 0o755},
		"link": {Type: 'l', Mode: 0o777, Link: "index.php"}, "mode": file("d"),
	}
	to := map[string]source.Entry{
		"index.php": file("e"), "same.php": file("b"), "new.js": file("f"), "dir": {Type: 'd', Mode: 0o755}, "dir/new": {Type: 'd', Mode: 0o755},
		"link": {Type: 'l', Mode: 0o777, Link: "same.php"}, "mode": {Type: 'f', Mode: 0o755, Size: 1, SHA256: strings.Repeat("d", 64)},
	}
	d := DiffManifests(from, to)
	show := func(cs []Change) string {
		var out []string
		for _, c := range cs {
			out = append(out, c.Path+":"+c.Type)
		}
		return strings.Join(out, " ")
	}
	if got := show(d.Added); got != "dir/new:dir new.js:file" {
		t.Errorf("added %s", got)
	}
	if got := show(d.Removed); got != "old.txt:file" {
		t.Errorf("removed %s", got)
	}
	if got := show(d.Changed); got != "index.php:file link:link mode:file" {
		t.Errorf("changed %s", got)
	}
	if same := DiffManifests(from, from); len(same.Added)+len(same.Removed)+len(same.Changed) != 0 || same.Added == nil {
		t.Errorf("a release against itself: %+v", same)
	}
}

func TestFetchScriptParses(t *testing.T) {
	for _, name := range hostileNames {
		l := layout.Layout{DeployTo: "/srv/" + name, Releases: "releases", Shared: "shared", Current: "current", Repo: "repo"}
		for _, gzipped := range []bool{false, true} {
			if err := parses(fetchReleaseScript(l, "20261122103015", gzipped)); err != nil {
				t.Errorf("%q: %v", name, err)
			}
		}
	}
}
