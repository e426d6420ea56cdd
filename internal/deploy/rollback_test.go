package deploy

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/slipway-deploy/slipway/internal/host"
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
