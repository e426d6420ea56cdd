package deploy

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/source"
)

// recorder is an executor that runs on this machine and records every
// effect in order, to prove what happens before what.
type recorder struct {
	host.Local
	mu  sync.Mutex
	ops []string
}

func (r *recorder) record(op string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, op)
}

func (r *recorder) Query(ctx context.Context, cmd host.Command) (host.Result, error) {
	r.record("query " + cmd.Script)
	return r.Local.Query(ctx, cmd)
}

func (r *recorder) Exec(ctx context.Context, cmd host.Command) (host.Result, error) {
	r.record("exec " + cmd.Script)
	return r.Local.Exec(ctx, cmd)
}

func (r *recorder) Rename(ctx context.Context, oldpath, newpath string) error {
	r.record("rename " + oldpath + " " + newpath)
	return r.Local.Rename(ctx, oldpath, newpath)
}

// TestDurabilityOrder: the release is synced before the switch, and the
// deploy directory after it, before the run reports success.
func TestDurabilityOrder(t *testing.T) {
	dir := t.TempDir()
	site := filepath.Join(dir, "site")
	if err := os.MkdirAll(site, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(site, "index.html"), []byte("hi"), 0o644); err != nil {
		t.Fatal(err)
	}
	deployTo := filepath.Join(dir, "deploy")
	cfg := &config.Config{
		App: "demo", KeepReleases: 5, Symlink: "relative",
		Layout: config.Layout{Releases: "releases", Shared: "shared", Current: "current", Repo: "repo"},
		Source: config.Source{Strategy: "upload", Path: site, Delta: true, Verify: "changed", Compress: "auto"},
	}
	stage := &config.Stage{Name: "demo", DeployTo: deployTo, Hosts: []config.Host{{Name: "local", Host: "local", Local: true}}}
	cfg.Stages = []*config.Stage{stage}
	rec := &recorder{}
	tree, err := source.Scan(site, nil)
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Config: cfg, Stage: stage, Hosts: stage.Hosts, Parallel: 1,
		Dial: func(context.Context, config.Host) (host.Executor, error) { return rec, nil }}
	res, err := Deploy(context.Background(), opts, Source{Tree: tree, Revision: tree.Digest})
	if err != nil {
		t.Fatal(err)
	}
	release := filepath.Join(deployTo, "releases", res.ReleaseID)
	find := func(match func(string) bool) int {
		return slices.IndexFunc(rec.ops, match)
	}
	upload := find(func(op string) bool { return strings.Contains(op, "tar -x") })
	syncRelease := find(func(op string) bool { return strings.Contains(op, "sync -f -- "+release) })
	rename := find(func(op string) bool {
		return strings.HasPrefix(op, "rename ") && strings.HasSuffix(op, " "+filepath.Join(deployTo, "current"))
	})
	syncDir := find(func(op string) bool { return strings.Contains(op, "sync -- "+deployTo+" ") })
	record := find(func(op string) bool { return strings.Contains(op, `"state":"deployed"`) })
	if upload < 0 || syncRelease < 0 || rename < 0 || syncDir < 0 || record < 0 {
		t.Fatalf("missing operations (upload %d, sync release %d, rename %d, sync dir %d, record %d):\n%s", upload, syncRelease, rename, syncDir, record, strings.Join(rec.ops, "\n---\n"))
	}
	// The sync of the release rides in the upload's round trip (fold.go):
	// in the same script, after the extraction.
	if upload == syncRelease && strings.Index(rec.ops[upload], "tar -x") < strings.Index(rec.ops[upload], "sync -f -- "+release) {
		upload--
	}
	if !(upload < syncRelease && syncRelease < rename && rename < syncDir && syncDir < record) {
		t.Errorf("order: upload %d, sync release %d, rename %d, sync deploy dir %d, record %d; want increasing", upload, syncRelease, rename, syncDir, record)
	}
}

// TestSyncFailureStopsTheSwitch: a sync of the release that fails (a
// write-back error: the data may not be on disk) fails the deploy before
// its switch, with sync's message; a sync that does not know -f (an old
// coreutils or BusyBox) falls back to a plain sync and the deploy goes on.
func TestSyncFailureStopsTheSwitch(t *testing.T) {
	dir := t.TempDir()
	opts := localStage(t, dir, host.NewLocal())
	l := opts.Layout()
	first := deployVersion(t, opts, "v1")

	shimOnPath(t, "sync", `#!/bin/sh
[ "$1" = -f ] || exec /bin/sync "$@"
echo "sync: error syncing '$3': Input/output error" >&2
exit 1
`)
	writeFile(t, filepath.Join(opts.Config.Source.Path, "index.html"), "v2")
	tree, err := source.Scan(opts.Config.Source.Path, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Deploy(context.Background(), opts, Source{Tree: tree, Revision: tree.Digest})
	if err == nil || !strings.Contains(err.Error(), "Input/output error") {
		t.Fatalf("deploy with the release's sync failing: %v, want it to fail with sync's message", err)
	}
	if target, err := os.Readlink(l.CurrentLink()); err != nil || filepath.Base(target) != first {
		t.Errorf("current -> %q (%v) after the failed sync, want release %s still", target, err, first)
	}

	shimOnPath(t, "sync", `#!/bin/sh
case "$1" in -*) echo "sync: invalid option -- '${1#-}'" >&2; echo "Try 'sync --help' for more information." >&2; exit 1;; esac
exec /bin/sync
`)
	if second := deployVersion(t, opts, "v3"); second == first {
		t.Error("the deploy with a sync that knows no options did not go live")
	}
}
