package deploy

import (
	"testing"
	"time"
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
