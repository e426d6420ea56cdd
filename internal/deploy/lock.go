package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/layout"
	"github.com/slipway-deploy/slipway/internal/shell"
)

// LockOwner says who holds a deploy lock, so a refused run can name them.
type LockOwner struct {
	User    string    `json:"user"`
	Machine string    `json:"machine"`
	PID     int       `json:"pid"`
	Command string    `json:"command"`
	Stage   string    `json:"stage"`
	Started time.Time `json:"started"`
	// Expires is when the lock lapses unless its holder refreshes it;
	// zero for a lock that never lapses.
	Expires time.Time `json:"expires,omitzero"`
}

// stale says why a lock found on a host can be taken over, or "": its
// holder ran on this machine and is gone, or it lapsed without refresh.
func (o LockOwner) stale(machine string, now time.Time, alive func(int) bool) string {
	switch {
	case o.Machine != "" && o.Machine == machine && o.PID > 0 && !alive(o.PID):
		return fmt.Sprintf("its holder, pid %d on this machine, is no longer running", o.PID)
	case !o.Expires.IsZero() && now.After(o.Expires):
		return fmt.Sprintf("it expired at %s without being refreshed", o.Expires.UTC().Format(time.RFC3339))
	}
	return ""
}

// processAlive reports whether pid runs on this machine.
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

func (o LockOwner) String() string {
	if o.User == "" && o.Machine == "" {
		return "an unknown holder (the lock has no owner details)"
	}
	return fmt.Sprintf("%s@%s (pid %d, %q, since %s)", o.User, o.Machine, o.PID, o.Command, o.Started.UTC().Format(time.RFC3339))
}

// LockedError reports a deploy directory locked by another run.
type LockedError struct {
	Host  string
	Owner LockOwner
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("deploy directory is locked by %s", e.Owner)
}

// lockedStatus is the exit status the lock script uses to say "held by
// someone else", distinct from any failure of mkdir itself.
const lockedStatus = 75

// ownerWaitTries is how many times, a tenth of a second apart, a run
// looks again for the owner of a lock that has none yet.
const ownerWaitTries = 30

// Acquire takes the lock on one host. mkdir is atomic on every filesystem,
// so of two runs racing for the lock exactly one creates the directory.
func Acquire(ctx context.Context, ex host.Executor, l layout.Layout, owner LockOwner) error {
	_, err := acquireThen(ctx, ex, l, owner, "")
	return err
}

// acquireThen takes the lock and, once it holds it, runs then in the same
// round trip (a run reads the host's state right after locking it),
// returning its output. Whatever then does, the lock stays taken.
func acquireThen(ctx context.Context, ex host.Executor, l layout.Layout, owner LockOwner, then string) ([]byte, error) {
	body, err := json.Marshal(owner)
	if err != nil {
		return nil, err
	}
	// The owner file is written under another name and renamed into
	// place, so a reader sees no owner or the whole of it, never half. A
	// run that finds a lock just made, its owner not yet in place, looks
	// again for up to three seconds rather than refusing with no name to
	// give; if the lock goes meanwhile, it takes it. A lock whose owner
	// could not be written (a full disk) would be nobody's, never stale,
	// and refuse every later run: it goes at once.
	script := fmt.Sprintf(`umask 022 && mkdir -p -- %[1]s && tries=0 && while :; do
if mkdir -- %[2]s 2>/dev/null; then
printf '%%s\n' %[3]s > %[2]s/owner.tmp && mv -f -- %[2]s/owner.tmp %[4]s || { status=$?; rm -rf -- %[2]s; exit $status; }
break
fi
if [ -s %[4]s ] || [ "$tries" -ge %[6]d ]; then head -c 65536 -- %[4]s 2>/dev/null; exit %[5]d; fi
tries=$((tries + 1)); sleep 0.1 2>/dev/null || sleep 1
done`,
		shell.Quote(l.MetaDir()), shell.Quote(l.LockDir()), shell.Quote(string(body)), shell.Quote(l.LockOwnerFile()), lockedStatus, ownerWaitTries)
	if then != "" {
		script += "\n( " + then + "\n) || true"
	}
	res, err := ex.Exec(ctx, host.Command{Script: script})
	var exitErr *host.ExitError
	if errors.As(err, &exitErr) && exitErr.Code == lockedStatus {
		var holder LockOwner
		_ = json.Unmarshal([]byte(strings.TrimSpace(string(res.Stdout))), &holder)
		return nil, &LockedError{Host: ex.Name(), Owner: holder}
	}
	return res.Stdout, err
}

// Release removes the lock on one host.
func Release(ctx context.Context, ex host.Executor, l layout.Layout) error {
	_, err := ex.Exec(ctx, host.Command{Script: "rm -rf -- " + shell.Quote(l.LockDir())})
	return err
}

// acquire takes the lock on t, taking over a stale one (with a warning),
// and runs then once it holds it, keeping the output in t.prefetched.
func (r *run) acquire(ctx context.Context, t *Target, then string) error {
	owner := r.owner
	if r.opts.LockTTL > 0 {
		owner.Expires = r.opts.Now().Add(r.opts.LockTTL).UTC()
	}
	out, err := acquireThen(ctx, t.Exec, r.layout, owner, then)
	if err == nil {
		r.lockMu.Lock()
		r.locked = append(r.locked, t)
		r.lockMu.Unlock()
		t.prefetched = out
	}
	var locked *LockedError
	if !errors.As(err, &locked) {
		return err
	}
	why := locked.Owner.stale(r.owner.Machine, r.opts.Now(), processAlive)
	if why == "" {
		return err
	}
	r.warn(t, "taking over the lock held by %s: %s", locked.Owner, why)
	if err := Release(ctx, t.Exec, r.layout); err != nil {
		return err
	}
	out, err = acquireThen(ctx, t.Exec, r.layout, owner, then)
	if err != nil {
		return err
	}
	r.lockMu.Lock()
	r.locked = append(r.locked, t)
	r.lockMu.Unlock()
	t.prefetched = out
	return nil
}

// holdsLock reports whether this run holds the lock on t.
func (r *run) holdsLock(t *Target) bool {
	r.lockMu.Lock()
	defer r.lockMu.Unlock()
	return slices.Contains(r.locked, t)
}

// release stops refreshing and removes the lock on t.
func (r *run) release(ctx context.Context, t *Target) error {
	r.lockMu.Lock()
	r.lockReleased = true
	r.lockMu.Unlock()
	return Release(ctx, t.Exec, r.layout)
}

// refreshLocks keeps the locks of a long run from lapsing: every third of
// the TTL it pushes their expiry forward on every host it holds. It stops
// when ctx ends.
func (r *run) refreshLocks(ctx context.Context) {
	ttl := r.opts.LockTTL
	if ttl <= 0 {
		return
	}
	ticker := time.NewTicker(ttl / 3)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		owner := r.owner
		owner.Expires = r.opts.Now().Add(ttl).UTC()
		body, _ := json.Marshal(owner)
		script := fmt.Sprintf("[ -d %[1]s ] && printf '%%s\\n' %[2]s > %[3]s.tmp && mv -f -- %[3]s.tmp %[3]s",
			shell.Quote(r.layout.LockDir()), shell.Quote(string(body)), shell.Quote(r.layout.LockOwnerFile()))
		// Holding lockMu keeps a release from running under a refresh,
		// which could otherwise leave a file in the lock being removed.
		r.lockMu.Lock()
		if r.lockReleased {
			r.lockMu.Unlock()
			return
		}
		for _, t := range r.locked {
			if _, err := t.Exec.Exec(ctx, host.Command{Script: script}); err != nil && ctx.Err() == nil {
				r.warn(t, "could not refresh the deploy lock: %v", err)
			}
		}
		r.lockMu.Unlock()
	}
}
