package deploy

import (
	"context"
	"fmt"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/layout"
)

// HostPlan is what a deploy would do on one host.
type HostPlan struct {
	Host       string   `json:"host"`
	Live       string   `json:"live"`
	Upload     string   `json:"upload"` // "full", "delta", "git export" or "none" (no_release)
	Copy       int      `json:"copy"`   // entries copied on the host from the live release
	Send       []string `json:"send"`   // entries sent (added or changed)
	SendBytes  int64    `json:"send_bytes"`
	Removed    int      `json:"removed"`
	Hooks      []string `json:"hooks"` // in order, as "phase: command"
	Cleanup    []string `json:"cleanup"`
	Locked     string   `json:"locked,omitempty"` // the holder, when a lock would refuse the deploy
	Warnings   []string `json:"warnings,omitempty"`
	ManifestOK bool     `json:"manifest_ok"`
}

// Plan is what `slipway deploy` would do, per host.
type Plan struct {
	ReleaseID   string     `json:"release"`
	Revision    string     `json:"revision"`
	AlreadyLive bool       `json:"already_live"`
	Drift       string     `json:"drift,omitempty"`
	Hosts       []HostPlan `json:"hosts"`
}

// PlanDeploy reads every host and says what a deploy of src would do,
// without changing anything anywhere: the executors are read-only, so any
// write would fail rather than happen.
func PlanDeploy(ctx context.Context, opts Options, src Source) (*Plan, error) {
	dial := opts.Dial
	opts.Dial = func(ctx context.Context, h config.Host) (host.Executor, error) {
		ex, err := dial(ctx, h)
		if err != nil {
			return nil, err
		}
		return host.ReadOnly(ex), nil
	}
	r := newRun(opts)
	d := &deployRun{run: r, src: src}
	inspect := inspectStep{r: r, sharedFiles: opts.Config.Shared.Files, forSwitch: true, manifest: src.Tree != nil && opts.Config.Source.Delta}
	steps := []any{connectStep{r}, inspect}
	if inspect.manifest {
		steps = append(steps, manifestStep{r})
	}
	if err := r.runner.Run(ctx, steps, r.targets); err != nil {
		return nil, err
	}
	plan := &Plan{Revision: src.Revision}
	if err := Drift(r.targets); err != nil {
		err.Stage = opts.Stage.Name
		plan.Drift = err.Error()
	}
	var existing []string
	for _, t := range withState(r.targets) {
		existing = append(existing, t.State.Releases...)
		for id := range t.State.Meta {
			existing = append(existing, id)
		}
	}
	id, err := layout.NewReleaseID(r.opts.Now(), existing)
	if err != nil {
		return nil, err
	}
	plan.ReleaseID, d.releaseID = id, id
	plan.AlreadyLive = alreadyLiveStep{d}.RunFleet(ctx, r.targets) == ErrAlreadyLive
	for _, t := range r.targets {
		hp := HostPlan{Host: t.Name(), Upload: "none"}
		if t.State != nil {
			hp.Live = t.State.Current
			hp.ManifestOK = t.State.live != nil
			if t.State.Lock != nil {
				hp.Locked = t.State.Lock.String()
				if why := t.State.Lock.stale(r.owner.Machine, r.opts.Now(), processAlive); why != "" {
					hp.Warnings = append(hp.Warnings, "the lock would be taken over: "+why)
					hp.Locked = ""
				}
			}
			plan := d.deltaPlan(t)
			switch {
			case src.Git != nil:
				hp.Upload = "git export"
			case plan != nil:
				delta := plan.delta
				hp.Upload, hp.Copy, hp.Removed, hp.SendBytes = "delta", len(delta.Copy), delta.Removed, delta.Bytes
				for _, f := range delta.Send {
					hp.Send = append(hp.Send, f.Rel)
				}
			default:
				hp.Upload = "full"
				for _, f := range src.Tree.Files {
					hp.Send = append(hp.Send, f.Rel)
					hp.SendBytes += f.Size
				}
			}
			for _, missing := range t.State.MissingShared {
				hp.Warnings = append(hp.Warnings, fmt.Sprintf("shared file %s is missing: the deploy would stop before any change", r.layout.SharedPath(missing)))
			}
			// Cleanup after this deploy: the new release live, the old one
			// its rollback target.
			after := *t.State
			after.Releases = append(append([]string{}, t.State.Releases...), id)
			after.Meta = map[string]*ReleaseMeta{id: {ID: id, State: StateDeployed}}
			for k, v := range t.State.Meta {
				after.Meta[k] = v
			}
			after.Current = id
			hp.Cleanup = PlanPrune(&after, opts.Config.KeepReleases).Delete
		}
		hp.Hooks = plannedHooks(d, t)
		plan.Hosts = append(plan.Hosts, hp)
	}
	return plan, nil
}

// plannedHooks lists the hooks that would run on t, in order.
func plannedHooks(d *deployRun, t *Target) []string {
	var out []string
	add := func(phase string, hooks []config.Hook) {
		for i, h := range hooks {
			step := hookStep{run: d.run, phase: phase, index: i, hook: h, releaseFor: d.releaseFor}
			if !step.Skip(t) {
				out = append(out, phase+": "+h.Run)
			}
		}
	}
	if d.src.Git != nil {
		add("remote_build", commandsAsHooks(d.src.Git.RemoteBuild))
	}
	add("before_switch", d.opts.Config.Hooks.BeforeSwitch)
	add("after_switch", d.opts.Config.Hooks.AfterSwitch)
	return out
}

func commandsAsHooks(commands []string) []config.Hook {
	hooks := make([]config.Hook, len(commands))
	for i, c := range commands {
		hooks[i] = config.Hook{Run: c}
	}
	return hooks
}
