package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/layout"
)

// TestRollbackMarksInItsSwitch: a rollback is three commands on a host
// (the lock with the inspection, the switch with the mark of the release
// left, the record with the unlock), and leaves that release recorded
// rolled back; a switch whose rename fails leaves the live release live
// and recorded deployed, its mark undone by the command that failed.
func TestRollbackMarksInItsSwitch(t *testing.T) {
	dir := t.TempDir()
	ex := &countingExec{Executor: host.NewLocal()}
	opts := localStage(t, dir, ex)
	l := opts.Layout()
	ctx := context.Background()
	state := func(id string) string {
		t.Helper()
		var m ReleaseMeta
		data, err := os.ReadFile(l.HistoryFile(id))
		if err == nil {
			err = json.Unmarshal(data, &m)
		}
		if err != nil {
			t.Fatalf("release %s's record: %v", id, err)
		}
		return m.State
	}
	live := func() string {
		t.Helper()
		target, err := os.Readlink(l.CurrentLink())
		if err != nil {
			t.Fatal(err)
		}
		return filepath.Base(target)
	}

	first := deployVersion(t, opts, "v1")
	second := deployVersion(t, opts, "v2")
	ex.n.Store(0)
	if _, err := Rollback(ctx, opts, RollbackOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := ex.n.Load(); n != 3 {
		t.Errorf("the rollback sent the host %d commands, want 3", n)
	}
	if got := live(); got != first {
		t.Errorf("live after the rollback: %s, want %s", got, first)
	}
	if got := state(second); got != StateRolledBack {
		t.Errorf("release %s, rolled back from, is recorded %q", second, got)
	}

	third := deployVersion(t, opts, "v3")
	shimOnPath(t, "mv", `#!/bin/sh
for a; do last=$a; done
case "$1 $2 $last" in "-f -T "*/current) echo "mv: cannot move: Permission denied" >&2; exit 1;; esac
exec /bin/mv "$@"
`)
	if _, err := Rollback(ctx, opts, RollbackOptions{}); err == nil {
		t.Fatal("the rollback succeeded with its rename failing")
	}
	if got := live(); got != third {
		t.Errorf("live after the failed rollback: %s, want %s", got, third)
	}
	if got := state(third); got != StateDeployed {
		t.Errorf("release %s, still live, is recorded %q after the failed switch, want deployed", third, got)
	}
}

// TestSwitchBackFromReadFailure: a switch back that cannot read current
// (readlink failing on the link: an I/O error) fails, rather than report
// that another run moved it to nothing and leave it.
func TestSwitchBackFromReadFailure(t *testing.T) {
	dir := t.TempDir()
	l := layout.Layout{DeployTo: filepath.Join(dir, "app"), Releases: "releases", Shared: "shared", Current: "current"}
	for _, id := range []string{"20261130000001", "20261130000002"} {
		if err := os.MkdirAll(l.ReleaseDir(id), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(l.CurrentTarget("20261130000002"), l.CurrentLink()); err != nil {
		t.Fatal(err)
	}
	shimOnPath(t, "readlink", "#!/bin/sh\necho 'readlink: Input/output error' >&2\nexit 1\n")
	err := switchBackFrom(context.Background(), host.NewLocal(), l, "20261130000002", "20261130000001")
	var moved *MovedOnError
	if err == nil || errors.As(err, &moved) {
		t.Fatalf("switch back with current unreadable: %v, want a failure, not another run's move", err)
	}
}
