package deploy

import (
	"context"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/host"
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

// host is t's entry of the plan.
func (p *Plan) host(t *Target) *HostPlan { return &p.Hosts[t.Index] }

// PlanDeploy says what a deploy of src would do on every host, without
// changing anything anywhere: it runs the deploy's own pipeline as a dry
// run, where each step that would change a host notes what it would do
// instead (see Planner), and the executors are read-only, so a write
// would fail rather than happen.
func PlanDeploy(ctx context.Context, opts Options, src Source) (*Plan, error) {
	dial := opts.Dial
	opts.Dial = func(ctx context.Context, h config.Host) (host.Executor, error) {
		ex, err := dial(ctx, h)
		if err != nil {
			return nil, err
		}
		return host.ReadOnly(ex), nil
	}
	d := newDeployRun(ctx, opts, src)
	d.runner.DryRun = true
	d.plan = &Plan{Revision: src.Revision}
	for _, t := range d.targets {
		d.plan.Hosts = append(d.plan.Hosts, HostPlan{Host: t.Name(), Upload: "none"})
	}
	if err := d.pipeline(d.steps()); err != nil {
		return nil, err
	}
	d.plan.ReleaseID, d.plan.Revision = d.releaseID, d.src.Revision
	return d.plan, nil
}
