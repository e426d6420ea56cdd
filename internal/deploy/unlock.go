package deploy

import (
	"context"
	"errors"
	"fmt"
)

// Unlock removes the deploy lock on every selected host and returns who held
// it, per host. Without force it removes only locks that are stale (their
// holder is gone, or they lapsed) or manual (slipway lock): a live run's
// lock is refused on every host before any lock is removed, naming its
// holder. With force it removes them all; a run whose lock is removed
// stops before its switch (its changes are fenced by the lock).
func Unlock(ctx context.Context, opts Options, force bool) (map[string]*LockOwner, error) {
	r := newRun(ctx, opts)
	holders := make([]*LockOwner, len(r.targets))
	refuse := fleetWide(liveLocksStep{r: r, force: force})
	unlock := stepFunc{name: "unlock", fn: func(ctx context.Context, t *Target) error {
		holders[t.Index] = t.State.Lock
		return removeLock(ctx, t.Exec, r.layout)
	}}
	err := r.pipeline([]Step{perHost(connectStep{r: r}), perHost(inspectStep{r: r}), refuse, perHost(unlock)})
	out := map[string]*LockOwner{}
	for _, t := range r.targets {
		out[t.Name()] = holders[t.Index]
	}
	return out, err
}

// liveLocksStep refuses to unlock while a run may still hold a lock.
type liveLocksStep struct {
	r     *run
	force bool
}

func (liveLocksStep) Name() string { return "check locks" }

func (s liveLocksStep) RunFleet(_ context.Context, targets []*Target) error {
	if s.force {
		return nil
	}
	var errs []error
	for _, t := range withState(targets) {
		lock := t.State.Lock
		if lock == nil || lock.LockStatus(s.r.opts.Now()) != "live" {
			continue
		}
		errs = append(errs, fmt.Errorf("%s: %w", t.Name(), &LockedError{Host: t.Name(), Owner: *lock,
			Hint: fmt.Sprintf("its holder may still be running (on another machine, or refreshed within lock_ttl). Wait for it; if it is gone, slipway unlock %s --force removes it, and a run that still holds it then stops before its switch", s.r.opts.Stage.Name)}))
	}
	return errors.Join(errs...)
}

// HoldLock takes the deploy lock on every selected host and keeps it
// (slipway lock): deploys, rollbacks and cleanups are refused, naming the
// holder and opts.LockMessage, until slipway unlock. A manual lock never
// lapses and is never taken over. If a host cannot be locked, the locks
// taken on the others are given back.
func HoldLock(ctx context.Context, opts Options) error {
	opts.LockTTL = 0
	r := newRun(ctx, opts)
	// The primary first: of two racing, only the one that took it goes on.
	hold := func(primary bool) Step { return perHost(holdLockStep{lockStep{r: r, only: &primary}}) }
	return r.pipeline([]Step{perHost(connectStep{r: r}), hold(true), hold(false)})
}

// holdLockStep takes the lock like lockStep, but gives it back only if the
// run fails.
type holdLockStep struct{ lockStep }

func (s holdLockStep) Undo(ctx context.Context, t *Target) error { return s.lockStep.Finish(ctx, t) }

func (holdLockStep) Finish(context.Context, *Target) error { return nil }
