package deploy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/host"
)

// Target is one host of a run: where it is, how to reach it, and what the
// run learned about it.
type Target struct {
	Host  config.Host
	Exec  host.Executor
	Index int // position in the stage; 0 is the primary host, where `once` hooks run
	State *State

	rolledBack bool // switched to the new release, then back (health failure)
	// prefetched is the host's state as read with its lock, for the
	// inspect step to parse (lockSteps); nil once used.
	prefetched []byte
}

// Name is the host as the user wrote it.
func (t *Target) Name() string { return t.Host.Name }

// Step is one stage of a deploy or rollback, run on every host.
type Step interface {
	Name() string
	Run(ctx context.Context, t *Target) error
}

// FleetStep is a step that runs once for the whole fleet between two
// barriers, such as choosing the release id every host will use.
type FleetStep interface {
	Name() string
	RunFleet(ctx context.Context, targets []*Target) error
}

// Skipper lets a step sit out on some hosts (a `once` hook on all but the
// primary host, a role-limited hook).
type Skipper interface {
	Skip(t *Target) bool
}

// Undoer reverses a step on a host where it succeeded, when the run fails
// before it committed (before the switch).
type Undoer interface {
	Undo(ctx context.Context, t *Target) error
}

// Finisher runs at the end of every run, failed or not, on each host where
// the step succeeded: releasing the lock.
type Finisher interface {
	Finish(ctx context.Context, t *Target) error
}

// Limiter caps how many hosts run a step at once, below the run's
// parallelism (git fetches against one server).
type Limiter interface {
	Limit() int
}

// Applier limits a step to some hosts without a word: the others are not
// its business (the two halves of the lock).
type Applier interface {
	Applies(t *Target) bool
}

// NoReleaseStep is a step that also runs on hosts marked no_release (a
// database host): connecting and hooks. Every other step skips them.
type NoReleaseStep interface {
	RunsOnNoRelease() bool
}

// Committer marks the point of no return: once it has succeeded on any host,
// a later failure no longer undoes the earlier steps.
type Committer interface {
	Commits() bool
}

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

// Runner runs an ordered list of steps over a fleet. It owns parallelism and
// barriers: each step runs on every host, at most Parallel at a time, and the
// next step starts only when all hosts are done with this one. The first
// step that fails on any host stops the pipeline; the steps done so far are
// undone (unless the run had committed) and finished on every host.
type Runner struct {
	Parallel int
	Events   Observer
	// CleanupTimeout bounds undo and finish work, which runs even after
	// the run's context was cancelled (Ctrl-C must not leave a lock).
	CleanupTimeout time.Duration
}

// stepRecord remembers on which hosts a step succeeded, for undo and finish.
type stepRecord struct {
	step      any
	succeeded []*Target
}

// Run runs steps over targets and returns nil or the failures, joined, each
// a *HostError.
func (rn *Runner) Run(ctx context.Context, steps []any, targets []*Target) error {
	var records []stepRecord
	committed := false
	var runErr error
	for _, step := range steps {
		var succeeded []*Target
		var err error
		switch s := step.(type) {
		case Step:
			succeeded, err = rn.each(ctx, s, targets)
		case FleetStep:
			succeeded, err = rn.fleet(ctx, s, targets)
		default:
			panic(fmt.Sprintf("deploy: %T is not a step", step))
		}
		records = append(records, stepRecord{step: step, succeeded: succeeded})
		if c, ok := step.(Committer); ok && c.Commits() && len(succeeded) > 0 {
			committed = true
		}
		if err != nil {
			runErr = err
			break
		}
	}
	cleanupCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rn.cleanupTimeout())
	defer cancel()
	var cleanupErrs []error
	if runErr != nil && !committed {
		for i := len(records) - 1; i >= 0; i-- {
			if u, ok := records[i].step.(Undoer); ok {
				cleanupErrs = append(cleanupErrs, rn.parallel(cleanupCtx, "undo "+stepName(records[i].step), records[i].succeeded, u.Undo))
			}
		}
	}
	for i := len(records) - 1; i >= 0; i-- {
		if f, ok := records[i].step.(Finisher); ok {
			cleanupErrs = append(cleanupErrs, rn.parallel(cleanupCtx, "finish "+stepName(records[i].step), records[i].succeeded, f.Finish))
		}
	}
	if cerr := errors.Join(cleanupErrs...); cerr != nil {
		if runErr == nil {
			return cerr
		}
		// The run's own failure comes first; what could not be cleaned up
		// is reported beside it, never instead of it.
		return errors.Join(runErr, &CleanupError{Err: cerr})
	}
	return runErr
}

// CleanupError wraps failures of undo and finish work.
type CleanupError struct{ Err error }

func (e *CleanupError) Error() string {
	return "cleanup after the failure also failed: " + e.Err.Error()
}
func (e *CleanupError) Unwrap() error { return e.Err }

func (rn *Runner) cleanupTimeout() time.Duration {
	if rn.CleanupTimeout > 0 {
		return rn.CleanupTimeout
	}
	return 2 * time.Minute
}

func stepName(step any) string {
	switch s := step.(type) {
	case Step:
		return s.Name()
	case FleetStep:
		return s.Name()
	}
	return fmt.Sprintf("%T", step)
}

// each runs one step on every target and waits for all of them.
func (rn *Runner) each(ctx context.Context, s Step, targets []*Target) ([]*Target, error) {
	skipper, _ := s.(Skipper)
	limit := rn.Parallel
	if l, ok := s.(Limiter); ok && l.Limit() > 0 && l.Limit() < limit {
		limit = l.Limit()
	}
	var mu sync.Mutex
	var succeeded []*Target
	err := rn.parallelN(ctx, limit, s.Name(), targets, func(ctx context.Context, t *Target) error {
		if t.Host.NoRelease && !runsOnNoRelease(s) {
			return nil
		}
		if a, ok := s.(Applier); ok && !a.Applies(t) {
			return nil
		}
		if skipper != nil && skipper.Skip(t) {
			rn.emit(Event{Kind: StepSkipped, Host: t.Name(), Step: s.Name()})
			return nil
		}
		start := time.Now()
		rn.emit(Event{Kind: StepStarted, Host: t.Name(), Step: s.Name()})
		if err := ctx.Err(); err != nil {
			rn.emit(Event{Kind: StepFailed, Host: t.Name(), Step: s.Name(), Err: err})
			return err
		}
		err := s.Run(ctx, t)
		if err != nil {
			rn.emit(Event{Kind: StepFailed, Host: t.Name(), Step: s.Name(), Duration: time.Since(start), Err: err})
			return err
		}
		rn.emit(Event{Kind: StepDone, Host: t.Name(), Step: s.Name(), Duration: time.Since(start)})
		mu.Lock()
		succeeded = append(succeeded, t)
		mu.Unlock()
		return nil
	})
	return succeeded, err
}

func runsOnNoRelease(s Step) bool {
	n, ok := s.(NoReleaseStep)
	return ok && n.RunsOnNoRelease()
}

func (rn *Runner) fleet(ctx context.Context, s FleetStep, targets []*Target) ([]*Target, error) {
	start := time.Now()
	rn.emit(Event{Kind: StepStarted, Step: s.Name()})
	if err := s.RunFleet(ctx, targets); err != nil {
		rn.emit(Event{Kind: StepFailed, Step: s.Name(), Duration: time.Since(start), Err: err})
		return nil, &HostError{Step: s.Name(), Err: err}
	}
	rn.emit(Event{Kind: StepDone, Step: s.Name(), Duration: time.Since(start)})
	return targets, nil
}

// parallel calls fn for every target, at most rn.Parallel at once, and
// returns the failures as *HostError joined.
func (rn *Runner) parallel(ctx context.Context, name string, targets []*Target, fn func(context.Context, *Target) error) error {
	return rn.parallelN(ctx, rn.Parallel, name, targets, fn)
}

func (rn *Runner) parallelN(ctx context.Context, limit int, name string, targets []*Target, fn func(context.Context, *Target) error) error {
	if limit < 1 {
		limit = 1
	}
	sem := make(chan struct{}, limit)
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := fn(ctx, t); err != nil {
				errs[i] = &HostError{Host: t.Name(), Step: name, Err: err}
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (rn *Runner) emit(e Event) {
	if rn.Events != nil {
		rn.Events.Event(e)
	}
}
