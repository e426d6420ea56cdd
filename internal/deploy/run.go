// Package deploy holds the deploy and rollback pipelines: ordered lists of
// small steps run over a fleet by one Runner.
package deploy

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"strings"
	"sync"
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

	// Canary switches this many hosts first, checks them, then the rest.
	Canary int
	// NoRollback leaves a release live when its health check fails.
	NoRollback bool
	// LockTTL makes locks lapse unless refreshed (the holder refreshes
	// them while it runs); 0 for locks that never lapse.
	LockTTL time.Duration
}

// Pause is the wait between rollout batches.
func (o Options) Pause() time.Duration {
	if o.Stage.Rollout == nil {
		return 0
	}
	return o.Stage.Rollout.Pause
}

// run is the state shared by the steps of one run.
type run struct {
	opts    Options
	layout  layout.Layout
	owner   LockOwner
	targets []*Target
	runner  *Runner

	lockMu       sync.Mutex
	locked       []*Target // hosts whose lock this run holds
	lockReleased bool      // release began: refreshing stops
}

func newRun(opts Options) *run {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	cfg := opts.Config
	r := &run{
		opts: opts,
		layout: layout.Layout{
			DeployTo:      opts.Stage.DeployTo,
			Releases:      cfg.Layout.Releases,
			Shared:        cfg.Layout.Shared,
			Current:       cfg.Layout.Current,
			Repo:          cfg.Layout.Repo,
			AbsoluteLinks: cfg.Symlink == "absolute",
		},
		owner:  currentOwner(opts),
		runner: &Runner{Parallel: opts.Parallel, Events: opts.Events},
	}
	for i, h := range opts.Hosts {
		r.targets = append(r.targets, &Target{Host: h, Index: i})
	}
	return r
}

// Layout returns the paths of the stage's deploy directory.
func (o Options) Layout() layout.Layout { return newRun(o).layout }

func currentOwner(opts Options) LockOwner {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	machine, _ := os.Hostname()
	return LockOwner{User: name, Machine: machine, PID: os.Getpid(), Command: opts.Command, Stage: opts.Stage.Name, Started: opts.Now().UTC()}
}

func (r *run) warn(t *Target, format string, args ...any) {
	if r.opts.Events == nil {
		return
	}
	name := ""
	if t != nil {
		name = t.Name()
	}
	r.opts.Events.Event(Event{Kind: Warning, Host: name, Line: fmt.Sprintf(format, args...)})
}

// connectStep opens the connection to each host; its Finish closes it, last
// of all, after the lock is released.
type connectStep struct{ r *run }

func (connectStep) Name() string { return "connect" }

// RunsOnNoRelease: hooks on a no_release host need its connection.
func (connectStep) RunsOnNoRelease() bool { return true }

func (s connectStep) Run(ctx context.Context, t *Target) error {
	ex, err := s.r.opts.Dial(ctx, t.Host)
	if err != nil {
		return err
	}
	t.Exec = ex
	return nil
}

func (connectStep) Finish(_ context.Context, t *Target) error {
	return t.Exec.Close()
}

// lockSteps take the deploy lock: on the primary host first, then on the
// others in parallel. Of several runs racing for one stage, exactly one
// gets the primary's lock, so exactly one goes on (in parallel, each could
// win a different host and all would fail). Finish releases the lock
// whether the run succeeded or not.
//
// With inspect, each host's state is read in the same round trip as its
// lock is taken, and the inspect step that follows uses it.
func lockSteps(r *run, inspect *inspectStep) []any {
	return []any{lockStep{r: r, primary: true, inspect: inspect}, lockStep{r: r, inspect: inspect}}
}

type lockStep struct {
	r       *run
	primary bool // lock the primary host only; else every other host
	inspect *inspectStep
}

func (lockStep) Name() string { return "lock" }

// Applies keeps each half of the lock to its hosts, silently.
func (s lockStep) Applies(t *Target) bool {
	return (t == firstWithRelease(s.r.targets)) == s.primary
}

func (s lockStep) Run(ctx context.Context, t *Target) error {
	then := ""
	if s.inspect != nil {
		then = s.inspect.script()
	}
	return s.r.acquire(ctx, t, then)
}

func (s lockStep) Finish(ctx context.Context, t *Target) error {
	return s.r.release(ctx, t)
}

// firstWithRelease is the primary host: the first that takes releases.
func firstWithRelease(targets []*Target) *Target {
	for _, t := range targets {
		if !t.Host.NoRelease {
			return t
		}
	}
	return nil
}

// inspectStep reads each host's deploy directory.
type inspectStep struct {
	r           *run
	sharedFiles []string
	// forSwitch refuses a host whose current is a real directory: a run
	// that would switch it must stop before changing anything.
	forSwitch bool
	// manifest also reads the live release's manifest, for a delta upload.
	manifest bool
}

func (inspectStep) Name() string { return "inspect" }

func (s inspectStep) script() string {
	return inspectScript(s.r.layout, s.sharedFiles, s.manifest)
}

func (s inspectStep) Run(ctx context.Context, t *Target) error {
	var st *State
	var err error
	if raw := t.prefetched; raw != nil {
		// Read with the lock (lockSteps).
		t.prefetched = nil
		st, err = parseState(s.r.layout, raw)
	} else {
		st, err = Inspect(ctx, t, s.r.layout, s.sharedFiles, s.manifest)
	}
	if err != nil {
		return err
	}
	t.State = st
	st.Previous = st.Current
	if st.CurrentIsDir && s.forSwitch {
		cur := s.r.layout.CurrentLink()
		return fmt.Errorf("%s is a real directory, not a symlink, so it cannot be switched atomically; move it aside (mv %s %s.old), then deploy again", cur, cur, cur)
	}
	if s.forSwitch && len(st.MissingShared) > 0 {
		return missingShared(t, s.r.layout, st.MissingShared)
	}
	if m := st.Meta[st.Current]; m != nil && (m.State == StatePreparing || m.State == StateRolledBack) && s.r.holdsLock(t) {
		// The live release went live, so it counts as deployed: the
		// rollback target once a newer release is live, never a leftover
		// to delete. A run that died after its switch left it preparing; a
		// rollback from it that died before its switch, rolled back.
		why := "the run that switched to it died before recording it"
		if m.State == StateRolledBack {
			why = "it is recorded as rolled back from (a rollback from it stopped before its switch)"
		}
		m.State, m.RolledBack = StateDeployed, time.Time{}
		if _, err := t.Exec.Exec(ctx, host.Command{Script: writeMetaScript(s.r.layout, m)}); err != nil {
			return fmt.Errorf("recording live release %s as deployed: %w", m.ID, err)
		}
		s.r.warn(t, "release %s is live, but %s; recorded as deployed now", m.ID, why)
	}
	for _, f := range st.BadMeta {
		s.r.warn(t, "release metadata %s/%s is malformed and is ignored (not trusted); delete it if the release is gone", s.r.layout.HistoryDir(), f)
	}
	return nil
}

func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	return []error{err}
}

// Errors splits a joined run error into its parts, for printing one per line.
func Errors(err error) []error { return unjoin(err) }

// missingShared refuses a release whose shared files do not exist: the app
// would start without its .env.
func missingShared(t *Target, l layout.Layout, missing []string) error {
	var paths []string
	for _, f := range missing {
		paths = append(paths, l.SharedPath(f))
	}
	return fmt.Errorf("shared file %s does not exist; create it on the host (for example: scp .env.production %s:%s), then deploy again",
		strings.Join(paths, ", "), t.Name(), paths[0])
}
