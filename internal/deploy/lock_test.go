package deploy

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/layout"
	"github.com/slipway-deploy/slipway/internal/shell"
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

// TestAcquireOnAFreshHostWhileOthersRelease: on a host with no deploy
// directory, runs that lose the race for the lock release it at once and
// remove the directories they made (as a run that stops before it made a
// release does). A run whose mkdir meets such a removal, of the deploy
// directory it had just found there, fails with "No such file or
// directory"; it must try again, not fail the deploy. Here mkdir is a
// wrapper that, the first few times it is asked for slipway's directory
// or the lock, removes both directories and fails as the real one then
// does, more often than any one release could.
func TestAcquireOnAFreshHostWhileOthersRelease(t *testing.T) {
	dir := t.TempDir()
	l := layout.Layout{DeployTo: filepath.Join(dir, "srv", "app")}
	realMkdir, err := exec.LookPath("mkdir")
	if err != nil {
		t.Fatal(err)
	}
	count := filepath.Join(dir, "removed")
	wrapper := shell.Script(`#!/bin/sh
for last; do :; done
if { [ "$last" = {{meta}} ] || [ "$last" = {{lock}} ]; } && [ "$(wc -c < {{count}})" -lt {{times}} ]; then
  printf x >> {{count}}
  rmdir {{meta}} {{deploy_to}} 2>/dev/null
  echo "mkdir: cannot create directory '$last': No such file or directory" >&2
  exit 1
fi
exec {{mkdir}} "$@"
`, shell.Args{"meta": l.MetaDir(), "lock": l.LockDir(), "deploy_to": l.DeployTo, "count": count, "times": 8, "mkdir": realMkdir})
	writeFile(t, count, "")
	shimOnPath(t, "mkdir", wrapper)
	if err := os.MkdirAll(l.MetaDir(), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := acquire(context.Background(), host.NewLocal(), l, LockOwner{User: "u", Machine: "m", Token: "t1"}, ""); err != nil {
		t.Fatalf("the lock was not taken: %v", err)
	}
	if removed, _ := os.ReadFile(count); len(removed) != 8 {
		t.Errorf("the directories were removed %d times, want 8", len(removed))
	}
	if owner, err := os.ReadFile(l.LockOwnerFile()); err != nil || !strings.Contains(string(owner), `"token":"t1"`) {
		t.Errorf("the lock's owner: %q, %v; want the run's", owner, err)
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

// lockRun is a run of one local host with a deploy directory in a temp
// dir, for the Lock handle's tests.
func lockRun(t *testing.T, ttl time.Duration) (*run, *Target) {
	t.Helper()
	cfg := &config.Config{Layout: config.Layout{Releases: "releases", Shared: "shared", Current: "current", Repo: "repo"}}
	stage := &config.Stage{Name: "demo", DeployTo: t.TempDir(), Hosts: []config.Host{{Name: "local", Local: true}}}
	r := newRun(context.Background(), Options{Config: cfg, Stage: stage, Hosts: stage.Hosts, Parallel: 1, LockTTL: ttl})
	target := r.targets[0]
	target.Exec = host.NewLocal()
	return r, target
}

// TestLockLostCancelsTheRun: a lock removed under a running run (slipway
// unlock) and taken by another is found by the next refresh, which
// cancels the run's context with the loss as its cause; the first run's
// release then leaves the other's lock alone.
func TestLockLostCancelsTheRun(t *testing.T) {
	first, target := lockRun(t, 300*time.Millisecond)
	defer first.lock.Close()
	ctx := context.Background()
	if _, err := first.lock.Acquire(ctx, target, ""); err != nil {
		t.Fatal(err)
	}
	if !first.lock.Holds(target) {
		t.Fatal("Holds is false after Acquire")
	}
	// Refreshes keep the lock while it is the run's own.
	time.Sleep(400 * time.Millisecond)
	if err := first.lock.Context().Err(); err != nil {
		t.Fatalf("the run was cancelled while its lock was its own: %v", context.Cause(first.lock.Context()))
	}

	if err := removeLock(ctx, host.NewLocal(), first.layout); err != nil {
		t.Fatal(err)
	}
	second := LockOwner{User: "other", Machine: "elsewhere", PID: 1, Token: newLockToken()}
	if _, err := acquire(ctx, host.NewLocal(), first.layout, second, ""); err != nil {
		t.Fatal(err)
	}
	select {
	case <-first.lock.Context().Done():
	case <-time.After(3 * time.Second):
		t.Fatal("the run went on after its lock was taken over")
	}
	lost := first.lock.Lost()
	if lost == nil || lost.Host != "local" {
		t.Fatalf("cause = %v, want a LockLostError for local", context.Cause(first.lock.Context()))
	}
	if err := first.lock.Release(ctx, target); err != nil {
		t.Fatal(err)
	}
	body, err := os.ReadFile(first.layout.LockOwnerFile())
	if err != nil || !strings.Contains(string(body), second.Token) {
		t.Errorf("the lost run's release removed or changed the other run's lock: %q %v", body, err)
	}
}

// TestLockReleaseAndClose: Release removes the run's own lock; Close
// stops the refresher and cancels the context without calling it a loss.
func TestLockReleaseAndClose(t *testing.T) {
	r, target := lockRun(t, time.Minute)
	ctx := context.Background()
	if _, err := r.lock.Acquire(ctx, target, ""); err != nil {
		t.Fatal(err)
	}
	if err := r.lock.Release(ctx, target); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(r.layout.LockDir()); !os.IsNotExist(err) {
		t.Errorf("the lock is still there after Release: %v", err)
	}
	r.lock.Close()
	r.lock.Close() // twice is harmless
	if r.lock.Context().Err() == nil || r.lock.Lost() != nil {
		t.Errorf("after Close: context %v, lost %v; want cancelled, not lost", r.lock.Context().Err(), r.lock.Lost())
	}
}

// TestRefreshedExpiryIsTheHolders: a refresh writes the holder's expiry
// beside its owner file; only the holder's own counts.
func TestRefreshedExpiryIsTheHolders(t *testing.T) {
	out := `lock {"user":"u","machine":"m","token":"aaa","expires":"2026-11-29T10:00:00Z"}
lock-expires aaa 2026-11-29T10:15:00Z
lock-expires bbb 2026-11-29T11:00:00Z
`
	st, err := parseState(layout.Layout{}, []byte(out))
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2026, 11, 29, 10, 15, 0, 0, time.UTC)
	if !st.Lock.Expires.Equal(want) {
		t.Errorf("expires = %v, want the holder's refresh %v", st.Lock.Expires, want)
	}
}

// hostDir runs a Local executor's scripts in a directory of their own, as
// if on a host of their own: the deploy path in every script is dir.
type hostDir struct {
	host.Executor
	deployTo, dir string
}

func (h hostDir) Exec(ctx context.Context, cmd host.Command) (host.Result, error) {
	cmd.Script = strings.ReplaceAll(cmd.Script, h.deployTo, h.dir)
	return h.Executor.Exec(ctx, cmd)
}

func (h hostDir) Query(ctx context.Context, cmd host.Command) (host.Result, error) {
	cmd.Script = strings.ReplaceAll(cmd.Script, h.deployTo, h.dir)
	return h.Executor.Query(ctx, cmd)
}

// TestLockRaceGoesToThePrimarysHolder: every host is locked at once; a
// run that holds the primary host's lock waits for a run that lost the
// race to give another host's back, and takes it; a run that lost the
// primary, or meets slipway lock's lock, fails at once.
func TestLockRaceGoesToThePrimarysHolder(t *testing.T) {
	ctx := context.Background()
	cfg := &config.Config{Layout: config.Layout{Releases: "releases", Shared: "shared", Current: "current", Repo: "repo"}}
	// racers are two runs of one stage on the hosts web1 (the primary)
	// and web2.
	racers := func(t *testing.T) (a, b *run) {
		base := t.TempDir()
		deployTo := base + "/app"
		stage := &config.Stage{Name: "demo", DeployTo: deployTo, Hosts: []config.Host{{Name: "web1", Local: true}, {Name: "web2", Local: true}}}
		newRaceRun := func() *run {
			r := newRun(ctx, Options{Config: cfg, Stage: stage, Hosts: stage.Hosts, Parallel: 2})
			for _, t := range r.targets {
				t.Exec = hostDir{Executor: host.NewLocal(), deployTo: deployTo, dir: base + "/" + t.Name()}
			}
			t.Cleanup(r.lock.Close)
			return r
		}
		return newRaceRun(), newRaceRun()
	}
	// lockAll runs the lock step on every host of r at once, as the
	// Runner does, and returns each host's error and how long it took.
	lockAll := func(r *run) ([]error, []time.Duration) {
		step := lockSteps(r, nil)[0].host.(lockStep)
		errs := make([]error, len(r.targets))
		took := make([]time.Duration, len(r.targets))
		var wg sync.WaitGroup
		for i, target := range r.targets {
			wg.Add(1)
			go func() {
				defer wg.Done()
				start := time.Now()
				errs[i] = step.Run(ctx, target)
				took[i] = time.Since(start)
			}()
		}
		wg.Wait()
		return errs, took
	}

	t.Run("holder of the primary waits for the loser", func(t *testing.T) {
		a, b := racers(t)
		loser := b.targets[1]
		if _, err := b.lock.Acquire(ctx, loser, ""); err != nil {
			t.Fatal(err)
		}
		time.AfterFunc(300*time.Millisecond, func() { _ = b.lock.Release(ctx, loser) })
		errs, took := lockAll(a)
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("the primary's holder did not get every lock: %v", errs)
		}
		if took[1] < 300*time.Millisecond {
			t.Errorf("web2 locked in %s, before the loser gave it back", took[1])
		}
	})

	t.Run("loser of the primary fails at once", func(t *testing.T) {
		a, b := racers(t)
		for _, target := range b.targets {
			if _, err := b.lock.Acquire(ctx, target, ""); err != nil {
				t.Fatal(err)
			}
		}
		errs, took := lockAll(a)
		for i, err := range errs {
			var locked *LockedError
			if !errors.As(err, &locked) {
				t.Errorf("%s: %v, want locked", a.targets[i].Name(), err)
			}
			if took[i] > lockRaceWait/2 {
				t.Errorf("%s: refused after %s, want at once", a.targets[i].Name(), took[i])
			}
		}
	})

	t.Run("slipway lock's lock is not waited for", func(t *testing.T) {
		a, b := racers(t)
		b.owner.Manual, b.owner.Message = true, "maintenance"
		b.lock.owner = b.owner
		if _, err := b.lock.Acquire(ctx, b.targets[1], ""); err != nil {
			t.Fatal(err)
		}
		errs, took := lockAll(a)
		var locked *LockedError
		if errs[0] != nil || !errors.As(errs[1], &locked) || !locked.Owner.Manual {
			t.Errorf("errors %v, want web1 locked and web2 refused by the manual lock", errs)
		}
		if took[1] > lockRaceWait/2 {
			t.Errorf("web2: refused after %s, want at once", took[1])
		}
	})
}

// TestReleaseFailsWhenTheLockStays: a release that cannot remove its lock
// fails, though the rmdir of the directories the run made (which may not
// be empty) comes after it: a lock left behind is no lock released.
func TestReleaseFailsWhenTheLockStays(t *testing.T) {
	dir := t.TempDir()
	l := layout.Layout{DeployTo: filepath.Join(dir, "app"), Releases: "releases", Shared: "shared", Current: "current"}
	writeFile(t, l.LockOwnerFile(), `{"token":"0123abcd"}`+"\n")
	shimOnPath(t, "rm", `#!/bin/sh
echo "rm: cannot remove: Input/output error" >&2
exit 1
`)
	_, err := host.NewLocal().Exec(context.Background(), host.Command{Script: releaseScript(l, "0123abcd", []string{l.MetaDir(), l.DeployTo})})
	if err == nil {
		t.Fatal("the release succeeded with its lock left in place")
	}
	if _, err := os.Stat(l.LockDir()); err != nil {
		t.Errorf("the lock: %v, want it still there (rm failed)", err)
	}
}

// TestTakeOverOnlyTheStaleLock: taking over a stale lock removes it only
// while it is still that owner's: a lock another run took since (the
// stale holder released it as it exited) stays, so a run never removes a
// live run's lock for a dead one's.
func TestTakeOverOnlyTheStaleLock(t *testing.T) {
	dir := t.TempDir()
	l := layout.Layout{DeployTo: filepath.Join(dir, "app"), Releases: "releases", Shared: "shared", Current: "current"}
	ctx := context.Background()
	stale := LockOwner{Token: "0123abcd", PID: 1 << 30}

	writeFile(t, l.LockOwnerFile(), `{"token":"fedc9876"}`+"\n")
	if err := takeOver(ctx, host.NewLocal(), l, stale); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(l.LockOwnerFile()); err != nil || !strings.Contains(string(data), "fedc9876") {
		t.Fatalf("the lock another run took since was removed (%q, %v)", data, err)
	}

	writeFile(t, l.LockOwnerFile(), `{"token":"0123abcd"}`+"\n")
	if err := takeOver(ctx, host.NewLocal(), l, stale); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(l.LockDir()); !os.IsNotExist(err) {
		t.Errorf("the stale lock is still there (%v)", err)
	}
}
