package deploy

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/layout"
	"github.com/slipway-deploy/slipway/internal/shell"
)

// RolledBackError reports a deploy whose release went live and was then
// switched back on every host, because a switch, an after_switch hook
// (rolling) or the health check failed.
type RolledBackError struct {
	ReleaseID string
	Cause     error
}

func (e *RolledBackError) Error() string {
	return fmt.Sprintf("release %s was rolled back on every host it had reached: %v", e.ReleaseID, e.Cause)
}

func (e *RolledBackError) Unwrap() error { return e.Cause }

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
	var fleet []*Target
	for _, t := range targets {
		if !t.Host.NoRelease {
			fleet = append(fleet, t)
		}
	}
	batches := d.batches(fleet)
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
		if err != nil {
			return d.rollBack(ctx, switched, err)
		}
		// Hooks after the switch run on the batch just switched, with
		// no_release hosts taking theirs with the first batch.
		hookTargets := batch
		if i == 0 {
			hookTargets = append(append([]*Target{}, batch...), noRelease(targets)...)
		}
		for j, h := range d.opts.Config.Hooks.AfterSwitch {
			step := hookStep{run: d.run, phase: "after_switch", index: j, hook: h, releaseFor: d.releaseFor}
			if _, err := d.runner.each(ctx, step, hookTargets); err != nil {
				if len(batches) > 1 && !d.opts.NoRollback {
					return d.rollBack(ctx, switched, err)
				}
				return err
			}
		}
		if health != nil {
			if _, err := d.runner.each(ctx, healthStep{run: d.run, health: health}, batch); err != nil {
				if d.opts.NoRollback {
					return fmt.Errorf("%w (left live: --no-rollback)", err)
				}
				return d.rollBack(ctx, switched, err)
			}
		}
	}
	return nil
}

func noRelease(targets []*Target) []*Target {
	var out []*Target
	for _, t := range targets {
		if t.Host.NoRelease {
			out = append(out, t)
		}
	}
	return out
}

// batches splits the fleet for the rollout: a canary batch first if asked,
// then batches of the rollout's size (the whole fleet when not rolling).
func (d *deployRun) batches(fleet []*Target) [][]*Target {
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
// and the host's own time of the rename.
func (d *deployRun) switchBatch(ctx context.Context, batch []*Target) ([]*Target, error) {
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
			err := t.Exec.Rename(ctx, l.SwitchTempLink(d.releaseID), l.CurrentLink())
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
		d.switched.Store(true)
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

// verifySwitch syncs the deploy directory, so the rename survives a crash,
// reads current back, and returns the host's time of the rename.
func verifySwitch(ctx context.Context, ex host.Executor, l layout.Layout, id string) (time.Time, error) {
	script := fmt.Sprintf("{ sync -- %[1]s 2>/dev/null || sync; } && readlink -- %[2]s && date -r %[1]s +%%s.%%N",
		shell.Quote(l.DeployTo), shell.Quote(l.CurrentLink()))
	res, err := ex.Exec(ctx, host.Command{Script: script})
	if err != nil {
		return time.Time{}, err
	}
	lines := strings.Split(strings.TrimSpace(string(res.Stdout)), "\n")
	if len(lines) < 1 || lines[0] != l.CurrentTarget(id) {
		return time.Time{}, fmt.Errorf("%s points at %q after the switch, want %q", l.CurrentLink(), lines[0], l.CurrentTarget(id))
	}
	var remote time.Time
	if len(lines) > 1 {
		if f, err := strconv.ParseFloat(lines[1], 64); err == nil {
			sec := int64(f)
			remote = time.Unix(sec, int64((f-float64(sec))*1e9))
		}
	}
	return remote, nil
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
	back := stepFunc{"switch back", func(ctx context.Context, t *Target) error {
		if err := switchBack(ctx, t.Exec, d.run, t.State.Previous); err != nil {
			return err
		}
		t.State.Current = t.State.Previous
		t.rolledBack = true
		return nil
	}}
	ok, err := d.runner.each(ctx, back, switched)
	if err != nil {
		// Some hosts still serve the new release: say which, and keep it.
		return fmt.Errorf("%w; switching back failed too, so these hosts stay on %s: %v", cause, d.releaseID, err)
	}
	d.live.Store(false)
	for j, h := range d.opts.Config.Hooks.AfterRollback {
		step := hookStep{run: d.run, phase: "after_rollback", index: j, hook: h, releaseFor: func(t *Target) string { return t.State.Current }}
		var withRelease []*Target
		for _, t := range ok {
			if t.State.Current != "" {
				withRelease = append(withRelease, t)
			}
		}
		if _, err := d.runner.each(ctx, step, withRelease); err != nil {
			d.warn(nil, "after_rollback hook failed: %v", err)
		}
	}
	return &RolledBackError{ReleaseID: d.releaseID, Cause: cause}
}

// switchBack points current at previous again with the same atomic switch;
// with no previous release (a first deploy) it removes current, as it was.
func switchBack(ctx context.Context, ex host.Executor, r *run, previous string) error {
	l := r.layout
	if previous == "" {
		_, err := ex.Exec(ctx, host.Command{Script: "rm -f -- " + shell.Quote(l.CurrentLink())})
		return err
	}
	return Switch(ctx, ex, l, previous)
}

// healthStep checks one host after its switch.
type healthStep struct {
	run    *run
	health *config.Health
}

func (healthStep) Name() string { return "health" }

func (s healthStep) Run(ctx context.Context, t *Target) error {
	return checkHealth(ctx, s.run, t, s.health)
}

func (r *run) emit(e Event) {
	if r.opts.Events != nil {
		r.opts.Events.Event(e)
	}
}

func (r *run) info(format string, args ...any) {
	r.emit(Event{Kind: Info, Line: fmt.Sprintf(format, args...)})
}
