// Package deploy holds the deploy and rollback pipelines: ordered lists of
// small steps run over a fleet by one Runner. docs/architecture.md maps
// the step files to the pipeline.
package deploy

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"slices"
	"time"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/layout"
)

// DialFunc opens the executor for one host of the stage.
type DialFunc func(ctx context.Context, h config.Host) (host.Executor, error)

// Options are what every command that touches a stage needs.
type Options struct {
	Config   *config.Config
	Stage    *config.Stage
	Hosts    []config.Host // the selected hosts, in stage order
	Dial     DialFunc
	Parallel int
	Events   Observer
	Now      func() time.Time // injectable clock for tests
	Command  string           // the command line, recorded in the lock

	// Force deploys even when the revision is already live on every host
	// or the hosts disagree on the live release.
	Force bool
	// Canary switches this many hosts first, checks them, then the rest.
	Canary int
	// NoRollback leaves a release live when its health check fails.
	NoRollback bool
	// LockTTL makes locks lapse unless refreshed (the holder refreshes
	// them while it runs); 0 for locks that never lapse.
	LockTTL time.Duration
	// LockMessage makes the run's lock a manual one (slipway lock), with
	// this reason.
	LockMessage string
}

// Pause is the wait between rollout batches.
func (o Options) Pause() time.Duration {
	if o.Stage.Rollout == nil {
		return 0
	}
	return o.Stage.Rollout.Pause
}

// Layout returns the paths of the stage's deploy directory.
func (o Options) Layout() layout.Layout {
	cfg := o.Config
	return layout.Layout{
		DeployTo:      o.Stage.DeployTo,
		Releases:      cfg.Layout.Releases,
		Shared:        cfg.Layout.Shared,
		Current:       cfg.Layout.Current,
		Repo:          cfg.Layout.Repo,
		AbsoluteLinks: cfg.Symlink == "absolute",
	}
}

// run is the state shared by the steps of one run.
type run struct {
	opts    Options
	layout  layout.Layout
	owner   LockOwner
	targets []*Target
	runner  *Runner
	lock    *Lock
	// plan collects what a dry run would do, per host; nil in a real run.
	plan *Plan
}

// newRun prepares a run of opts; its lock's context derives from ctx.
func newRun(ctx context.Context, opts Options) *run {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	r := &run{
		opts:   opts,
		layout: opts.Layout(),
		owner:  currentOwner(opts),
		runner: &Runner{Parallel: opts.Parallel, Events: opts.Events},
	}
	for i, h := range opts.Hosts {
		r.targets = append(r.targets, &Target{Host: h, Index: i})
	}
	r.lock = newLock(ctx, r)
	return r
}

// pipeline runs steps over the run's hosts, under the lock's context: a
// run that loses its lock stops, and says so.
func (r *run) pipeline(steps []Step) error {
	defer r.lock.Close()
	err := r.runner.Run(r.lock.Context(), steps, r.targets)
	if lost := r.lock.Lost(); lost != nil && err != nil {
		return joinLost(lost, err)
	}
	return err
}

// interrupted reports whether the run was stopped from outside (Ctrl-C,
// SIGTERM, …), not by a failure or the loss of its lock.
func (r *run) interrupted() bool {
	return r.lock.Context().Err() != nil && r.lock.Lost() == nil
}

func currentOwner(opts Options) LockOwner {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	machine, _ := os.Hostname()
	return LockOwner{User: name, Machine: machine, PID: os.Getpid(), Command: opts.Command, Stage: opts.Stage.Name, Started: opts.Now().UTC(), Token: newLockToken(),
		Manual: opts.LockMessage != "", Message: opts.LockMessage}
}

// primary is the host where work done once for the fleet happens: the
// first of the run's hosts that takes releases or, given roles, the first
// with one of them. The lock is taken there first, the git revision is
// resolved there, and `once` hooks run there.
func (r *run) primary(roles ...string) *Target {
	for _, t := range r.targets {
		if hasRole(t, roles) {
			return t
		}
	}
	return nil
}

// hasRole reports whether t has one of roles; with no roles, whether t
// takes releases.
func hasRole(t *Target, roles []string) bool {
	if len(roles) == 0 {
		return !t.Host.NoRelease
	}
	for _, want := range roles {
		if slices.Contains(t.Host.Roles, want) {
			return true
		}
	}
	return false
}

// withState keeps the targets whose deploy directory was read (not the
// no_release hosts).
func withState(targets []*Target) []*Target {
	var out []*Target
	for _, t := range targets {
		if t.State != nil {
			out = append(out, t)
		}
	}
	return out
}

func (r *run) emit(e Event) {
	if r.opts.Events != nil {
		r.opts.Events.Event(e)
	}
}

func (r *run) info(format string, args ...any) {
	r.emit(Event{Kind: Info, Line: fmt.Sprintf(format, args...)})
}

func (r *run) warn(t *Target, format string, args ...any) {
	name := ""
	if t != nil {
		name = t.Name()
	}
	r.emit(Event{Kind: Warning, Host: name, Line: fmt.Sprintf(format, args...)})
}
