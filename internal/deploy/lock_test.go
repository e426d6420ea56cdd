package deploy

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/layout"
)

func TestLockStale(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	alive := func(pid int) bool { return pid == 100 }
	tests := []struct {
		name  string
		owner LockOwner
		stale bool
	}{
		{"holder alive here", LockOwner{Machine: "ci", PID: 100}, false},
		{"holder gone here", LockOwner{Machine: "ci", PID: 200}, true},
		{"other machine, no expiry", LockOwner{Machine: "laptop", PID: 200}, false},
		{"other machine, expired", LockOwner{Machine: "laptop", PID: 200, Expires: now.Add(-time.Second)}, true},
		{"other machine, fresh", LockOwner{Machine: "laptop", PID: 200, Expires: now.Add(time.Minute)}, false},
		{"no owner details", LockOwner{}, false},
	}
	for _, tt := range tests {
		if got := tt.owner.stale("ci", now, alive) != ""; got != tt.stale {
			t.Errorf("%s: stale = %v, want %v", tt.name, got, tt.stale)
		}
	}
}

// TestAcquireRace: of many runs racing for one lock on this machine's
// shell, exactly one takes it and every other is refused naming it, never
// "an unknown holder" (the window between mkdir and the owner file).
func TestAcquireRace(t *testing.T) {
	l := layout.Layout{DeployTo: t.TempDir()}
	const n = 16
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = acquire(context.Background(), host.NewLocal(), l, LockOwner{User: "u", Machine: "m", PID: 1000 + i, Command: "deploy production"}, "")
		}()
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		if err == nil {
			if winner >= 0 {
				t.Fatalf("runs %d and %d both took the lock", winner, i)
			}
			winner = i
		}
	}
	if winner < 0 {
		t.Fatalf("no run took the lock: %v", errs)
	}
	for i, err := range errs {
		if i == winner {
			continue
		}
		var locked *LockedError
		if !errors.As(err, &locked) {
			t.Errorf("run %d: %v, want a LockedError", i, err)
		} else if locked.Owner.PID != 1000+winner {
			t.Errorf("run %d was refused by %s, want pid %d", i, locked.Owner, 1000+winner)
		}
	}
	if entries, err := os.ReadDir(l.LockDir()); err != nil || len(entries) != 1 || entries[0].Name() != "owner.json" {
		t.Errorf("lock directory holds %v (%v), want only owner.json", entries, err)
	}
}

// TestAcquireWaitsForOwner: a lock found without its owner file is looked
// at again; an owner written meanwhile is named, and a lock that never gets
// one is refused as held by an unknown holder.
func TestAcquireWaitsForOwner(t *testing.T) {
	ctx := context.Background()
	l := layout.Layout{DeployTo: t.TempDir()}
	if err := os.MkdirAll(l.LockDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		_ = os.WriteFile(l.LockOwnerFile(), []byte(`{"user":"bob","machine":"ci-9","pid":7}`), 0o644)
	}()
	var locked *LockedError
	if _, err := acquire(ctx, host.NewLocal(), l, LockOwner{User: "u", Machine: "m"}, ""); !errors.As(err, &locked) || locked.Owner.User != "bob" {
		t.Errorf("late owner: %v, want refused by bob", err)
	}

	if err := os.Remove(l.LockOwnerFile()); err != nil {
		t.Fatal(err)
	}
	_, err := acquire(ctx, host.NewLocal(), l, LockOwner{User: "u", Machine: "m"}, "")
	if !errors.As(err, &locked) || !strings.Contains(err.Error(), "unknown holder") {
		t.Errorf("ownerless lock: %v, want refused by an unknown holder", err)
	}

	// A lock released while a run waits for its owner is taken.
	go func() {
		time.Sleep(300 * time.Millisecond)
		_ = os.RemoveAll(l.LockDir())
	}()
	if _, err := acquire(ctx, host.NewLocal(), l, LockOwner{User: "u", Machine: "m"}, ""); err != nil {
		t.Errorf("lock released while waiting: %v, want it taken", err)
	}
}
