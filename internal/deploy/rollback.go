package deploy

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/shell"
)

// RollbackOptions say where a rollback goes and what it does on the way.
type RollbackOptions struct {
	To string // the release to switch to; "" for each host's previous one
	// WithMigrations reverses the migrations the release being left has
	// that the target does not (migrations.rollback), once, before any
	// host switches.
	WithMigrations bool
}

// Rollback switches every selected host back to the release before the live
// one, or to release ro.To, with the same atomic switch as a deploy. The
// release rolled back from is kept and marked, never deleted here. Its
// before_rollback hooks run in the release being left, before any host
// switches; a failing one stops the rollback (unless opts.Force).
func Rollback(ctx context.Context, opts Options, ro RollbackOptions) (*Result, error) {
	r := newRun(ctx, opts)
	rb := &rollbackRun{run: r, RollbackOptions: ro}
	to := ro.To
	err := r.pipeline(rb.steps())
	res := &Result{ReleaseID: to}
	for _, t := range r.targets {
		hr := HostResult{Host: t.Name(), RoundTrips: roundTrips(t)}
		if t.State != nil {
			hr.Known = true
			hr.Live, hr.Previous = t.State.Current, t.State.Previous
			hr.Switched = hr.Live != hr.Previous && !t.movedOn
			hr.RolledBack, hr.MovedOn = t.rolledBack, t.movedOn
			if res.ReleaseID == "" {
				res.ReleaseID = t.State.SwitchTo
			}
		}
		res.Hosts = append(res.Hosts, hr)
	}
	if err != nil && slices.ContainsFunc(res.Hosts, func(h HostResult) bool { return h.Switched }) {
		return res, &SwitchedError{ReleaseID: res.ReleaseID, Err: err}
	}
	return res, err
}

// rollbackRun is the state of one rollback shared by its steps.
type rollbackRun struct {
	*run
	RollbackOptions
	switched atomic.Bool // some host switched: the rollback is live there
	// switchFailed: the switch failed on some host; those that switched
	// go back (rollbackSwitchStep.Finish), so none is left half way.
	switchFailed atomic.Bool
	ahead        []string // migrations to reverse, newest first (WithMigrations)
}

// steps is the whole rollback, in order.
func (rb *rollbackRun) steps() []Step {
	inspect := inspectStep{r: rb.run, forSwitch: true}
	steps := []Step{perHost(connectStep{r: rb.run})}
	steps = append(steps, lockSteps(rb.run, &inspect)...)
	steps = append(steps,
		perHost(inspect),
		perHost(chooseTargetStep{rb: rb}),
		fleetWide(agreeStep{rb}),
	)
	if rb.opts.Config.Migrations.Path != "" {
		steps = append(steps, fleetWide(migrationsStep{rb}))
	}
	steps = append(steps, beforeRollbackHooks(rb.run, rb.opts.Force)...)
	if rb.WithMigrations {
		steps = append(steps, perHost(reverseMigrationsStep{rb: rb}))
	}
	steps = append(steps, perHost(rollbackSwitchStep{rb: rb}))
	steps = append(steps, opcacheResetSteps(rb.run)...)
	for _, hook := range afterRollbackHooks(rb.run) {
		steps = append(steps, perHost(hook))
	}
	return append(steps, perHost(rollbackRecordStep{rb: rb}))
}

// chooseTargetStep finds each host's rollback target; every host must have
// one, or no host moves.
type chooseTargetStep struct {
	releaseHosts
	rb *rollbackRun
}

func (chooseTargetStep) Name() string { return "choose target" }

func (s chooseTargetStep) Run(_ context.Context, t *Target) error {
	st := t.State
	target := s.rb.To
	switch {
	case target != "" && !st.HasRelease(target):
		return fmt.Errorf("release %s does not exist on this host; releases here: %s", target, orNone(st.Releases))
	case target != "" && target == st.Current:
		return fmt.Errorf("release %s is already live here", target)
	case target != "" && st.Meta[target] != nil && neverLive(st.Meta[target].State):
		return fmt.Errorf("release %s never went live (%s); it cannot be rolled back to", target, st.Meta[target].State)
	case target == "":
		if st.Current == "" {
			return fmt.Errorf("nothing is live here, so there is nothing to roll back from")
		}
		target = st.RollbackTarget()
		if target == "" {
			return fmt.Errorf("no earlier release to roll back to (live: %s, releases: %s)", st.Current, orNone(st.Releases))
		}
	}
	t.State.SwitchTo = target
	return nil
}

// Plan chooses as Run does, and notes the target.
func (s chooseTargetStep) Plan(ctx context.Context, t *Target) error {
	if err := s.Run(ctx, t); err != nil {
		return err
	}
	s.rb.plan.host(t).Target = t.State.SwitchTo
	return nil
}

// agreeStep warns when hosts go back to different releases (a fleet that had
// drifted apart); each still goes back to its own previous release.
type agreeStep struct{ rb *rollbackRun }

func (agreeStep) Name() string { return "check targets" }

func (s agreeStep) RunFleet(_ context.Context, targets []*Target) error {
	seen := map[string][]string{}
	for _, t := range withState(targets) {
		id := t.State.SwitchTo
		seen[id] = append(seen[id], t.Name())
	}
	if len(seen) > 1 {
		var parts []string
		for id, hosts := range seen {
			parts = append(parts, fmt.Sprintf("%s on %s", id, strings.Join(hosts, ", ")))
		}
		s.rb.warn(nil, "hosts roll back to different releases: %s", strings.Join(parts, "; "))
	}
	return nil
}

type rollbackSwitchStep struct {
	releaseHosts
	rb *rollbackRun
}

func (rollbackSwitchStep) Name() string { return "switch" }

func (rollbackSwitchStep) Plan(context.Context, *Target) error { return nil }
func (rollbackSwitchStep) Commits() bool                       { return true }

// Run switches t, in one command that first marks the release rolled back
// from: a rollback that dies after its switch, before its record step,
// must not leave that release looking like one to go back to. Should the
// switch itself fail, the same command marks it deployed again (as does
// the next run that finds it live with the mark, see inspectStep). Once
// begun, the switch is not abandoned on an interrupt, as in a deploy's
// rollout: the rename and the read-back that confirms it go through, so a
// host that switched is known and reported as switched.
func (s rollbackSwitchStep) Run(ctx context.Context, t *Target) error {
	l, to := s.rb.layout, t.State.SwitchTo
	var mark, unmark string
	m := t.State.Meta[t.State.Previous]
	toMark := m != nil && m.State == StateDeployed
	var marked ReleaseMeta
	if toMark {
		marked = *m
		marked.State, marked.RolledBack = StateRolledBack, s.rb.opts.Now().UTC()
		mark, unmark = writeMetaScript(l, &marked), writeMetaScript(l, m)
	}
	if err := markedSwitch(context.WithoutCancel(ctx), t.Exec, l, to, mark, unmark); err != nil {
		s.rb.switchFailed.Store(true)
		return err
	}
	if toMark {
		*m = marked
	}
	t.State.Current = to
	s.rb.switched.Store(true)
	return nil
}

// unmarkRolledBack marks the release t left deployed again, once t is
// back on it, and removes the switch link (in the lock, which goes with
// it anyway).
func (s rollbackSwitchStep) unmarkRolledBack(ctx context.Context, t *Target) error {
	script := "rm -f -- " + shell.Quote(s.rb.layout.LockedSwitchLink(t.State.SwitchTo))
	if m := t.State.Meta[t.State.Previous]; m != nil && m.State == StateRolledBack {
		m.State, m.RolledBack = StateDeployed, time.Time{}
		script += " && " + writeMetaScript(s.rb.layout, m)
	}
	_, err := t.Exec.Exec(ctx, host.Command{Script: script})
	return err
}

// Finish switches t back to the release it left when the switch failed
// on another host (its mv failed; the lock was forced away between the
// hosts' switches), as a deploy's rollout does: the fleet is never left
// half rolled back. A host whose lock went takes it again for that, where
// no other run took it. Finish runs only where the switch succeeded,
// before the lock is released.
func (s rollbackSwitchStep) Finish(ctx context.Context, t *Target) error {
	left := t.State.Previous
	if !s.rb.switchFailed.Load() || t.State.Current != t.State.SwitchTo || left == "" {
		return nil
	}
	back, err := s.rb.switchBackRetaking(ctx, t, left)
	if err != nil {
		return fmt.Errorf("the rollback failed on another host, and switching this one back to %s failed too, so it stays on %s: %w", left, t.State.Current, err)
	}
	if !back {
		return nil
	}
	t.State.Current = left
	t.rolledBack = true
	// The release left is live again: marked deployed, as when the
	// switch fails.
	return s.unmarkRolledBack(ctx, t)
}

// rollbackRecordStep marks the release rolled back from and logs the
// rollback in Capistrano's words.
type rollbackRecordStep struct {
	releaseHosts
	rb *rollbackRun
}

func (rollbackRecordStep) Name() string { return "record" }

func (rollbackRecordStep) Plan(context.Context, *Target) error { return nil }

func (s rollbackRecordStep) Run(ctx context.Context, t *Target) error {
	l := s.rb.layout
	script := appendLogScript(l, fmt.Sprintf("%s rolled back to release %s", s.rb.owner.User, t.State.Current))
	// The switch's command marked the release left where it was
	// recorded deployed; any other record of it is marked here.
	if m, ok := t.State.Meta[t.State.Previous]; ok && m.State != StateRolledBack {
		m.State = StateRolledBack
		m.RolledBack = s.rb.opts.Now().UTC()
		script = writeMetaScript(l, m) + " && " + script
	}
	// A release rolled back to after it was rolled back from is live, and
	// so deployed, again.
	if m, ok := t.State.Meta[t.State.Current]; ok && m.State == StateRolledBack {
		m.State, m.RolledBack = StateDeployed, time.Time{}
		script = writeMetaScript(l, m) + " && " + script
	}
	// The last step: the lock goes in the same round trip.
	_, err := s.rb.lock.execReleasing(ctx, t, script, nil)
	return err
}

func orNone(ids []string) string {
	if len(ids) == 0 {
		return "none"
	}
	return strings.Join(ids, ", ")
}
