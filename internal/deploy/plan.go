package deploy

import (
	"context"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/host"
)

// HostPlan is what a deploy would do on one host.
type HostPlan struct {
	Host      string   `json:"host"`
	Live      string   `json:"live"`
	Upload    string   `json:"upload"` // "full", "delta", "git export" or "none" (no_release)
	Copy      int      `json:"copy"`   // unchanged entries, copied on the host from the live release or kept in a recycled one
	Send      []string `json:"send"`   // entries sent (added or changed)
	SendBytes int64    `json:"send_bytes"`
	Removed   int      `json:"removed"`
	Hooks     []string `json:"hooks"` // in order, as "phase: command"
	Cleanup   []string `json:"cleanup"`
	// Recycle is the release, among those cleanup would delete, whose
	// directory the new release would reuse (source.recycle).
	Recycle    string   `json:"recycle,omitempty"`
	Locked     string   `json:"locked,omitempty"` // the holder, when a lock would refuse the deploy
	Target     string   `json:"target,omitempty"` // a rollback's: the release the host would go back to
	Warnings   []string `json:"warnings,omitempty"`
	ManifestOK bool     `json:"manifest_ok"`
}

// Plan is what `slipway deploy` (or `rollback`) would do, per host.
type Plan struct {
	ReleaseID   string     `json:"release"`
	Revision    string     `json:"revision"`
	AlreadyLive bool       `json:"already_live"`
	Drift       string     `json:"drift,omitempty"`
	Hosts       []HostPlan `json:"hosts"`
	// A rollback's: the migrations the release being left has that its
	// target does not (newest first), and what would reverse them.
	MigrationsAhead []string `json:"migrations_ahead,omitempty"`
	Migrations      string   `json:"migrations,omitempty"`
	Warnings        []string `json:"warnings,omitempty"`
}

// host is t's entry of the plan.
func (p *Plan) host(t *Target) *HostPlan { return &p.Hosts[t.Index] }

// PlanDeploy says what a deploy of src would do on every host, without
// changing anything anywhere: it runs the deploy's own pipeline as a dry
// run, where each step that would change a host notes what it would do
// instead (see Planner), and the executors are read-only, so a write
// would fail rather than happen.
func PlanDeploy(ctx context.Context, opts Options, src Source) (*Plan, error) {
	opts.Dial = readOnlyDial(opts.Dial)
	d := newDeployRun(ctx, opts, src)
	d.runner.DryRun = true
	d.plan = newPlan(d.targets)
	if err := d.pipeline(d.steps()); err != nil {
		return nil, err
	}
	d.plan.ReleaseID, d.plan.Revision = d.releaseID, d.src.Revision
	return d.plan, nil
}

// PlanRollback says what a rollback would do on every host, changing
// nothing anywhere: the rollback's own pipeline as a dry run (see
// PlanDeploy).
func PlanRollback(ctx context.Context, opts Options, ro RollbackOptions) (*Plan, error) {
	opts.Dial = readOnlyDial(opts.Dial)
	rb := &rollbackRun{run: newRun(ctx, opts), RollbackOptions: ro}
	rb.runner.DryRun = true
	rb.plan = newPlan(rb.targets)
	if err := rb.pipeline(rb.steps()); err != nil {
		return nil, err
	}
	return rb.plan, nil
}

func newPlan(targets []*Target) *Plan {
	p := &Plan{}
	for _, t := range targets {
		p.Hosts = append(p.Hosts, HostPlan{Host: t.Name(), Upload: "none"})
	}
	return p
}

// readOnlyDial wraps dial's executors in host.ReadOnly.
func readOnlyDial(dial DialFunc) DialFunc {
	return func(ctx context.Context, h config.Host) (host.Executor, error) {
		ex, err := dial(ctx, h)
		if err != nil {
			return nil, err
		}
		return host.ReadOnly(ex), nil
	}
}
