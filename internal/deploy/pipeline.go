package deploy

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/host"
)

// A pipeline is an ordered list of steps run by the Runner over a fleet:
// deploy, rollback and the maintenance commands are each one literal list
// (see their steps functions). A step does its work on each host
// (HostStep, added with perHost) or once for the whole fleet between two
// barriers (FleetStep, added with fleetWide). The optional interfaces
// below add undo, finish, commit, limit and plan behaviour; the Runner
// discovers them.

// Step is one entry of a pipeline.
type Step struct {
	host  HostStep
	fleet FleetStep
}

// perHost makes s a pipeline step run on each host it selects.
func perHost(s HostStep) Step { return Step{host: s} }

// fleetWide makes s a pipeline step run once for the fleet.
func fleetWide(s FleetStep) Step { return Step{fleet: s} }

// Name is the step's name, as progress lines show it.
func (s Step) Name() string {
	if s.host != nil {
		return s.host.Name()
	}
	return s.fleet.Name()
}

// step is the step's own value, for the optional interfaces.
func (s Step) step() any {
	if s.host != nil {
		return s.host
	}
	return s.fleet
}

// HostStep is work done on each host the step selects, in parallel, with
// a barrier after it.
type HostStep interface {
	Name() string
	// Where says whether the step runs on t.
	Where(t *Target) Selection
	Run(ctx context.Context, t *Target) error
}

// FleetStep is work done once for the whole fleet between two barriers,
// such as choosing the release id every host will use.
type FleetStep interface {
	Name() string
	RunFleet(ctx context.Context, targets []*Target) error
}

// Selection says whether a step runs on a host.
type Selection int

const (
	// RunHere: the step runs on the host.
	RunHere Selection = iota
	// SkipHere: the step is for the host but sits out, and progress says
	// so (a `once` hook on every host but the primary).
	SkipHere
	// NotHere: the host is none of the step's business, and nothing is
	// said (a host with no releases, the other half of the lock).
	NotHere
)

// releaseHosts selects the hosts that take releases: every host but those
// marked no_release. Most steps embed it.
type releaseHosts struct{}

func (releaseHosts) Where(t *Target) Selection {
	if t.Host.NoRelease {
		return NotHere
	}
	return RunHere
}

// everyHost selects every host, no_release ones too (connecting).
type everyHost struct{}

func (everyHost) Where(*Target) Selection { return RunHere }

// Undoer reverses a host step on a host where it succeeded, when the run
// fails before it committed (before the switch).
type Undoer interface {
	Undo(ctx context.Context, t *Target) error
}

// Finisher runs at the end of every run, failed or not, on each host where
// the step succeeded: releasing the lock, closing the connection.
type Finisher interface {
	Finish(ctx context.Context, t *Target) error
}

// Limiter caps how many hosts run a host step at once, below the run's
// parallelism (git fetches against one server).
type Limiter interface {
	Limit() int
}

// Committer marks the point of no return: once it has succeeded on any
// host, a later failure no longer undoes the earlier steps.
type Committer interface {
	Commits() bool
}

// Planner is a host step that changes its host: in a dry run (plan,
// --dry-run) the Runner calls Plan instead of Run, to record what the
// step would do. A step that changes its host and has no Plan fails a dry
// run, because the executors there refuse every change.
type Planner interface {
	Plan(ctx context.Context, t *Target) error
}

// FleetPlanner is the dry-run form of a fleet step (see Planner).
type FleetPlanner interface {
	PlanFleet(ctx context.Context, targets []*Target) error
}

// Target is one host of a run: where it is, how to reach it, and what the
// run learned about it.
type Target struct {
	Host  config.Host
	Exec  host.Executor
	Index int // position among the run's hosts, for results kept per host
	State *State

	rolledBack bool // switched to the new release, then back (health failure)
	// movedOn: while the run's lock was gone, another run switched the
	// host away from the run's release, which may now be that run's
	// rollback target: nothing of the run's is undone here.
	movedOn bool
	// stillRunning: a command this run started here could not be stopped;
	// the run leaves the host as it is (no undo) and keeps its lock.
	stillRunning *host.StillRunningError
	// prefetched is the host's state as read with its lock, for the
	// inspect step to parse (lockStep); nil once used.
	prefetched []byte
}

// Name is the host as the user wrote it.
func (t *Target) Name() string { return t.Host.Name }

// errDone ends a pipeline early and successfully: there is nothing (more)
// to do. A step returns an error that wraps it; the Runner reports the
// step done, undoes nothing, finishes, and returns the error, so the caller
// knows why the run stopped.
var errDone = errors.New("nothing to do")

// HostError is a failure of one step on one host.
type HostError struct {
	Host string
	Step string
	Err  error
}

func (e *HostError) Error() string {
	if e.Host == "" {
		return fmt.Sprintf("%s: %v", e.Step, e.Err)
	}
	// Executor errors already start with the host name; say it once.
	msg := strings.TrimPrefix(e.Err.Error(), e.Host+": ")
	return fmt.Sprintf("%s: %s: %s", e.Host, e.Step, msg)
}

func (e *HostError) Unwrap() error { return e.Err }

// CleanupError wraps failures of undo and finish work.
type CleanupError struct{ Err error }

func (e *CleanupError) Error() string {
	return "cleanup after the failure also failed: " + e.Err.Error()
}
func (e *CleanupError) Unwrap() error { return e.Err }

// Errors splits a joined run error into its parts, for printing one per line.
func Errors(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, Errors(e)...)
		}
		return out
	}
	return []error{err}
}

// stepFunc is a host step made of a function, for the short pipelines of
// the maintenance commands. It runs on the hosts that take releases, or
// on every host with allHosts.
type stepFunc struct {
	name     string
	allHosts bool
	fn       func(context.Context, *Target) error
}

func (s stepFunc) Name() string { return s.name }

func (s stepFunc) Where(t *Target) Selection {
	if s.allHosts {
		return RunHere
	}
	return releaseHosts{}.Where(t)
}

func (s stepFunc) Run(ctx context.Context, t *Target) error { return s.fn(ctx, t) }
