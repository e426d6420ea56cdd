package deploy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// RolledBackError reports a deploy whose release went live and was then
// switched back on every host, because a switch, an after_switch hook
// (rolling) or the health check failed. MovedOn names the hosts it was
// not switched back on because another run had switched them on to its
// own release while this run's lock was gone (slipway unlock --force):
// they serve that run's release, not this one.
type RolledBackError struct {
	ReleaseID string
	Cause     error
	MovedOn   []string
}

func (e *RolledBackError) Error() string {
	if len(e.MovedOn) > 0 {
		return fmt.Sprintf("release %s is live on no host: it was switched back where it had gone live, except on %s, which another run switched on to its own release while this run's lock was gone: %v",
			e.ReleaseID, strings.Join(e.MovedOn, ", "), e.Cause)
	}
	return fmt.Sprintf("release %s was rolled back on every host it had reached: %v", e.ReleaseID, e.Cause)
}

func (e *RolledBackError) Unwrap() error { return e.Cause }

// SwitchTime is when one host's current was renamed, by our clock (the
// middle of the rename's round trip) and by the host's own (the deploy
// directory's modification time, which the rename sets).
type SwitchTime struct {
	Local  time.Time `json:"local"`
	Remote time.Time `json:"remote,omitzero"`
	RTT    time.Duration
}

// rolloutStep switches the prepared fleet: every host at once (one rename
// per host, all fired together over the open connections), or batch by
// batch for a rolling or canary deploy. After each batch come its
// after_switch hooks and health check; a failure switches every switched
// host back to its previous release.
type rolloutStep struct{ d *deployRun }

func (rolloutStep) Name() string { return "rollout" }

// Commits is true while some host is live on the new release: then a later
// failure must not remove it.
func (s rolloutStep) Commits() bool { return s.d.live.Load() }

func (s rolloutStep) RunFleet(ctx context.Context, targets []*Target) error {
	d := s.d
	batches := d.batches(targets)
	health := d.opts.Stage.Health
	var switched []*Target
	for i, batch := range batches {
		if i > 0 && d.opts.Pause() > 0 {
			d.info("pausing %s before batch %d of %d", d.opts.Pause(), i+1, len(batches))
			select {
			case <-ctx.Done():
				return d.rollBack(ctx, switched, ctx.Err())
			case <-time.After(d.opts.Pause()):
			}
		}
		ok, err := d.switchBatch(ctx, batch)
		switched = append(switched, ok...)
		if err == nil {
			// Interrupted while the batch switched: the rollout reverts
			// whole rather than leave the fleet split.
			err = ctx.Err()
		}
		if err != nil {
			return d.rollBack(ctx, switched, err)
		}
		for _, hook := range s.afterSwitch() {
			if _, err := d.runner.each(ctx, hook, hookTargets(batch, i, targets)); err != nil {
				if (len(batches) > 1 && !d.opts.NoRollback) || ctx.Err() != nil {
					return d.rollBack(ctx, switched, err)
				}
				return err
			}
		}
		if health != nil {
			if _, err := d.runner.each(ctx, healthStep{r: d.run, health: health}, batch); err != nil {
				if d.opts.NoRollback && ctx.Err() == nil {
					return fmt.Errorf("%w (left live: --no-rollback)", err)
				}
				return d.rollBack(ctx, switched, err)
			}
		}
	}
	return nil
}

// PlanFleet lists, for each host, the after_switch hooks its batch would
// run.
func (s rolloutStep) PlanFleet(ctx context.Context, targets []*Target) error {
	for i, batch := range s.d.batches(targets) {
		for _, hook := range s.afterSwitch() {
			if _, err := s.d.runner.each(ctx, hook, hookTargets(batch, i, targets)); err != nil {
				return err
			}
		}
	}
	return nil
}

func (s rolloutStep) afterSwitch() []hookStep {
	var steps []hookStep
	for _, h := range s.d.opts.Config.Hooks.AfterSwitch {
		steps = append(steps, hookStep{r: s.d.run, phase: "after_switch", hook: h, releaseFor: s.d.releaseFor})
	}
	return steps
}

// hookTargets are the hosts that run the after_switch hooks of batch i:
// the batch just switched, with the no_release hosts taking theirs with
// the first batch.
func hookTargets(batch []*Target, i int, targets []*Target) []*Target {
	if i > 0 {
		return batch
	}
	out := append([]*Target{}, batch...)
	for _, t := range targets {
		if t.Host.NoRelease {
			out = append(out, t)
		}
	}
	return out
}

// batches splits the hosts that take releases for the rollout: a canary
// batch first if asked, then batches of the rollout's size (the whole
// fleet when not rolling).
func (d *deployRun) batches(targets []*Target) [][]*Target {
	var fleet []*Target
	for _, t := range targets {
		if !t.Host.NoRelease {
			fleet = append(fleet, t)
		}
	}
	var out [][]*Target
	rest := fleet
	if n := d.opts.Canary; n > 0 && n < len(rest) {
		out = append(out, rest[:n])
		rest = rest[n:]
	}
	size := d.opts.Stage.Rollout.Size(len(fleet))
	for len(rest) > 0 {
		n := min(size, len(rest))
		out = append(out, rest[:n])
		rest = rest[n:]
	}
	return out
}

// switchBatch renames the prepared link over current on every host of the
// batch at the same moment, one round trip each, then reads back the link
// and the host's own time of the rename. The renames run detached from
// ctx: an interrupt does not stop a switch halfway through a batch (the
// rollout then reverts the whole batch).
func (d *deployRun) switchBatch(ctx context.Context, batch []*Target) ([]*Target, error) {
	ctx = context.WithoutCancel(ctx)
	l := d.layout
	type outcome struct {
		start, end time.Time
		err        error
	}
	outcomes := make([]outcome, len(batch))
	var wg sync.WaitGroup
	fire := make(chan struct{})
	for i, t := range batch {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-fire
			start := time.Now()
			err := t.Exec.Rename(ctx, l.LockedSwitchLink(d.releaseID), l.CurrentLink())
			outcomes[i] = outcome{start, time.Now(), err}
		}()
	}
	close(fire)
	wg.Wait()

	var switched []*Target
	var errs []error
	first, last := time.Time{}, time.Time{}
	times := map[string]SwitchTime{}
	for i, t := range batch {
		o := outcomes[i]
		if o.err != nil {
			d.emit(Event{Kind: StepFailed, Host: t.Name(), Step: "switch", Duration: o.end.Sub(o.start), Err: o.err})
			errs = append(errs, &HostError{Host: t.Name(), Step: "switch", Err: o.err})
			continue
		}
		t.State.Current = d.releaseID
		switched = append(switched, t)
		d.live.Store(true)
		mid := o.start.Add(o.end.Sub(o.start) / 2)
		times[t.Name()] = SwitchTime{Local: mid, RTT: o.end.Sub(o.start)}
		if first.IsZero() || mid.Before(first) {
			first = mid
		}
		if mid.After(last) {
			last = mid
		}
	}
	// Make the renames durable and check them; read the host's clock.
	var mu sync.Mutex
	verifyErr := d.runner.parallel(ctx, "switch", switched, func(ctx context.Context, t *Target) error {
		remote, err := verifySwitch(ctx, t.Exec, d.layout, d.releaseID)
		mu.Lock()
		defer mu.Unlock()
		st := times[t.Name()]
		st.Remote = remote
		times[t.Name()] = st
		if err != nil {
			d.emit(Event{Kind: StepFailed, Host: t.Name(), Step: "switch", Err: err})
			return err
		}
		d.emit(Event{Kind: StepDone, Host: t.Name(), Step: "switch", Duration: st.RTT})
		return nil
	})
	d.mu.Lock()
	if d.switchTimes == nil {
		d.switchTimes = map[string]SwitchTime{}
	}
	for h, st := range times {
		d.switchTimes[h] = st
	}
	if skew := last.Sub(first); len(switched) > 1 && skew >= d.skew {
		d.skew = skew
	}
	d.skewHosts = max(d.skewHosts, len(switched))
	d.mu.Unlock()
	if len(switched) > 1 {
		d.info("switched %d hosts within %s (first to last rename)", len(switched), last.Sub(first).Round(time.Microsecond))
	}
	if verifyErr != nil {
		errs = append(errs, verifyErr)
	}
	return switched, errors.Join(errs...)
}

// switchBackRetaking switches t back to release previous (switchBack) and
// says whether it did. If the lock was forced away during the switch
// (slipway unlock --force), it takes the lock again first, waiting for a
// run that took it meanwhile to give it back, so that a run that lost its
// lock mid-switch never leaves the fleet split; and it switches back only
// if current still points at the release this run put live there. If
// another run switched the host meanwhile, the host is that run's: it is
// left as it is, with a warning, nothing of this run's is undone there
// (movedOn), and switchBackRetaking returns false.
func (r *run) switchBackRetaking(ctx context.Context, t *Target, previous string) (bool, error) {
	err := switchBack(ctx, t.Exec, r.layout, previous)
	var lost *LockLostError
	if !errors.As(err, &lost) {
		return err == nil, err
	}
	if err := r.lock.retake(ctx, t); err != nil {
		return false, fmt.Errorf("the deploy lock was removed during the switch and could not be taken again to switch back: %w", err)
	}
	r.warn(t, "the deploy lock was removed during the switch (slipway unlock --force); took it again to switch this host back")
	err = switchBackFrom(ctx, t.Exec, r.layout, t.State.Current, previous)
	var moved *MovedOnError
	if errors.As(err, &moved) {
		r.warn(t, "%v", moved)
		t.State.Current, t.movedOn = moved.live(), true
		return false, nil
	}
	return err == nil, err
}

// rollBack switches every host in switched back to the release it had
// before, runs after_rollback hooks there, and reports the cause. A host
// that cannot be switched back stays live on the new release and the run
// reports it as such.
func (d *deployRun) rollBack(ctx context.Context, switched []*Target, cause error) error {
	if len(switched) == 0 {
		return cause
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
	defer cancel()
	back := stepFunc{name: "switch back", fn: func(ctx context.Context, t *Target) error {
		back, err := d.switchBackRetaking(ctx, t, t.State.Previous)
		if back {
			t.State.Current = t.State.Previous
			t.rolledBack = true
		}
		return err
	}}
	ok, err := d.runner.each(ctx, back, switched)
	if err != nil {
		// Some hosts still serve the new release: say which, and keep it.
		return fmt.Errorf("%w; switching back failed too, so these hosts stay on %s: %v", cause, d.releaseID, err)
	}
	d.live.Store(false)
	var movedOn []string
	for _, t := range ok {
		if t.movedOn {
			movedOn = append(movedOn, t.Name())
		}
	}
	// The hosts switched back; after a first deploy nothing is live again:
	// no release to run in.
	ok = slices.DeleteFunc(ok, func(t *Target) bool { return !t.rolledBack })
	var withRelease []*Target
	for _, t := range ok {
		if t.State.Current != "" {
			withRelease = append(withRelease, t)
		}
	}
	// Where the web server passes current/ paths, OPcache would go on
	// serving the release just left.
	for _, reset := range opcacheResetSteps(d.run) {
		if _, err := d.runner.each(ctx, reset.host, ok); err != nil {
			d.warn(nil, "OPcache reset after the switch back failed: %v", err)
		}
	}
	for _, hook := range afterRollbackHooks(d.run) {
		if _, err := d.runner.each(ctx, hook, withRelease); err != nil {
			d.warn(nil, "after_rollback hook failed: %v", err)
		}
	}
	return &RolledBackError{ReleaseID: d.releaseID, Cause: cause, MovedOn: movedOn}
}
