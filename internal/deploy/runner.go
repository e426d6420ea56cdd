package deploy

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/slipway-deploy/slipway/internal/host"
)

// Runner runs a pipeline over a fleet. It owns parallelism and barriers:
// each step runs on every host it selects, at most Parallel at a time, and
// the next step starts only when all hosts are done with this one. The
// first step that fails on any host stops the pipeline; the steps done so
// far are undone (unless the run had committed) and finished on every host.
type Runner struct {
	Parallel int
	Events   Observer
	// DryRun calls each step's Plan instead of Run where it has one (see
	// Planner); the executors of a dry run refuse every change.
	DryRun bool
	// CleanupTimeout bounds undo and finish work, which runs even after
	// the run's context was cancelled (Ctrl-C must not leave a lock).
	CleanupTimeout time.Duration
}

// stepRecord remembers on which hosts a step succeeded, for undo and finish,
// and on which the run's cancellation stopped it: its command may have
// done some or all of its work there (a release half made), so it is
// undone there too.
type stepRecord struct {
	step      Step
	succeeded []*Target
	stopped   []*Target
}

// Run runs steps over targets and returns nil or the failures, joined, each
// a *HostError.
func (rn *Runner) Run(ctx context.Context, steps []Step, targets []*Target) error {
	var records []stepRecord
	committed := false // past the point of no return, or done early: nothing is undone
	var runErr error
	for _, step := range steps {
		var succeeded, interrupted []*Target
		var err error
		if step.host != nil {
			succeeded, interrupted, err = rn.eachStopped(ctx, step.host, targets)
		} else {
			succeeded, err = rn.fleet(ctx, step.fleet, targets)
		}
		records = append(records, stepRecord{step: step, succeeded: succeeded, stopped: interrupted})
		// A host step commits where it succeeded; a fleet step commits
		// when it says so, failed or not (a rollout whose switch back
		// failed leaves hosts live on the release: it must not be undone).
		if c, ok := step.step().(Committer); ok && c.Commits() && (len(succeeded) > 0 || step.fleet != nil) {
			committed = true
		}
		if err != nil {
			runErr = err
			committed = committed || errors.Is(err, errDone)
			break
		}
	}
	cleanupCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rn.cleanupTimeout())
	defer cancel()
	var cleanupErrs []error
	if runErr != nil && !committed {
		for i := len(records) - 1; i >= 0; i-- {
			if u, ok := records[i].step.step().(Undoer); ok {
				done := append(append([]*Target{}, records[i].succeeded...), records[i].stopped...)
				cleanupErrs = append(cleanupErrs, rn.parallel(cleanupCtx, "undo "+records[i].step.Name(), stopped(done), u.Undo))
			}
		}
	}
	for i := len(records) - 1; i >= 0; i-- {
		if f, ok := records[i].step.step().(Finisher); ok {
			cleanupErrs = append(cleanupErrs, rn.parallel(cleanupCtx, "finish "+records[i].step.Name(), records[i].succeeded, f.Finish))
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

// stopped leaves out the hosts where a command of the run is still
// running (what it works in is not undone under it) and those another run
// went on from (movedOn).
func stopped(targets []*Target) []*Target {
	var out []*Target
	for _, t := range targets {
		if t.stillRunning == nil && !t.movedOn {
			out = append(out, t)
		}
	}
	return out
}

func (rn *Runner) cleanupTimeout() time.Duration {
	if rn.CleanupTimeout > 0 {
		return rn.CleanupTimeout
	}
	return 2 * time.Minute
}

// each runs one step on every target it selects and waits for all of them.
func (rn *Runner) each(ctx context.Context, s HostStep, targets []*Target) ([]*Target, error) {
	succeeded, _, err := rn.eachStopped(ctx, s, targets)
	return succeeded, err
}

// eachStopped is each, which also returns the targets where the step ran
// and the run's cancellation stopped it, or where a phased step failed
// after its first phase: it may have done some or all of its work there
// (a release half made), so it is undone there too.
func (rn *Runner) eachStopped(ctx context.Context, s HostStep, targets []*Target) (succeeded, interrupted []*Target, err error) {
	limit := rn.Parallel
	if l, ok := s.(Limiter); ok && l.Limit() > 0 && l.Limit() < limit {
		limit = l.Limit()
	}
	run := s.Run
	if p, ok := s.(Planner); ok && rn.DryRun {
		run = p.Plan
	}
	// A step past the point of no return (a rollback's switch) goes on
	// every host or on none: whether it goes is decided once, when its
	// first host comes to it, so an interrupt landing between two hosts'
	// starts cannot split the fleet. The step itself sees the interrupt
	// and finishes what it began.
	begin := func(ctx context.Context) error { return ctx.Err() }
	if c, ok := s.(Committer); ok && c.Commits() {
		var once sync.Once
		var decided error
		begin = func(ctx context.Context) error {
			once.Do(func() { decided = ctx.Err() })
			return decided
		}
	}
	var mu sync.Mutex
	err = rn.parallelN(ctx, limit, s.Name(), targets, func(ctx context.Context, t *Target) error {
		switch s.Where(t) {
		case NotHere:
			return nil
		case SkipHere:
			rn.emit(Event{Kind: StepSkipped, Host: t.Name(), Step: s.Name()})
			return nil
		}
		ph := &phases{rn: rn, t: t, names: []string{s.Name()}}
		run := run
		if p, ok := s.(phased); ok {
			ph.names = p.Phases()
			if !rn.DryRun {
				run = func(ctx context.Context, t *Target) error { return p.RunPhases(ctx, t, ph.next) }
			}
		}
		ph.start()
		err := begin(ctx)
		stopped := false
		if err == nil {
			err = run(ctx, t)
			stopped = err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled)
		}
		if err != nil && !errors.Is(err, errDone) {
			err = ph.fail(ctx, err)
			// A phased step that got past its first phase did part of
			// its work here, as a stopped one may have.
			if stopped || ph.i > 0 {
				mu.Lock()
				interrupted = append(interrupted, t)
				mu.Unlock()
			}
			return err
		}
		ph.finish()
		mu.Lock()
		succeeded = append(succeeded, t)
		mu.Unlock()
		return nil
	})
	return succeeded, interrupted, err
}

// phases reports a host step's progress on one host: the step itself, or
// each phase of a phased one (a fold) as a step of its own.
type phases struct {
	rn    *Runner
	t     *Target
	names []string

	mu    sync.Mutex
	i     int // the phase under way
	begun time.Time
	trips int64
}

func (p *phases) start() {
	p.begun, p.trips = time.Now(), roundTrips(p.t)
	p.rn.emit(Event{Kind: StepStarted, Host: p.t.Name(), Step: p.names[p.i]})
}

// next ends the phase under way and starts the one after it.
func (p *phases) next() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.i >= len(p.names)-1 {
		return // the last phase ends with the step
	}
	p.advance()
}

// advance ends the phase under way as done and starts the next.
func (p *phases) advance() {
	p.end(StepDone, nil)
	p.i++
	p.start()
}

func (p *phases) end(kind EventKind, err error) {
	p.rn.emit(Event{Kind: kind, Host: p.t.Name(), Step: p.names[p.i], Duration: time.Since(p.begun), Err: err, RoundTrips: roundTrips(p.t) - p.trips})
}

// finish ends the step: every phase left is done.
func (p *phases) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.i < len(p.names)-1 {
		p.advance()
	}
	p.end(StepDone, nil)
}

// fail ends the step failed in the phase err names (a *phaseError), or the
// one under way, and returns err as that phase's failure.
func (p *phases) fail(ctx context.Context, err error) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var pe *phaseError
	if errors.As(err, &pe) {
		for p.i < pe.phase && p.i < len(p.names)-1 {
			p.advance()
		}
		err = pe.err
	}
	p.end(StepFailed, why(ctx, err))
	return &HostError{Host: p.t.Name(), Step: p.names[p.i], Err: err}
}

func (rn *Runner) fleet(ctx context.Context, s FleetStep, targets []*Target) ([]*Target, error) {
	run := s.RunFleet
	if p, ok := s.(FleetPlanner); ok && rn.DryRun {
		run = p.PlanFleet
	}
	start := time.Now()
	before := make([]int64, len(targets))
	for i, t := range targets {
		before[i] = roundTrips(t)
	}
	// The most round trips any one host took: hosts wait in parallel.
	trips := func() (most int64) {
		for i, t := range targets {
			most = max(most, roundTrips(t)-before[i])
		}
		return most
	}
	rn.emit(Event{Kind: StepStarted, Step: s.Name()})
	if err := run(ctx, targets); err != nil {
		if errors.Is(err, errDone) {
			rn.emit(Event{Kind: StepDone, Step: s.Name(), Duration: time.Since(start), Line: err.Error(), RoundTrips: trips()})
			return targets, err
		}
		rn.emit(Event{Kind: StepFailed, Step: s.Name(), Duration: time.Since(start), Err: why(ctx, err), RoundTrips: trips()})
		return nil, &HostError{Step: s.Name(), Err: err}
	}
	rn.emit(Event{Kind: StepDone, Step: s.Name(), Duration: time.Since(start), RoundTrips: trips()})
	return targets, nil
}

// roundTrips is how many round trips t's connection has taken so far; 0
// before it is connected.
func roundTrips(t *Target) int64 {
	if t.Exec == nil {
		return 0
	}
	return t.Exec.RoundTrips()
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
				var still *host.StillRunningError
				if errors.As(err, &still) {
					t.stillRunning = still
				}
				// A phased step's failure names its phase already.
				if he, ok := err.(*HostError); !ok || he.Host != t.Name() {
					err = &HostError{Host: t.Name(), Step: name, Err: err}
				}
				errs[i] = err
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// why is what a step's failure is reported as: the cause of a cancelled
// run (the interrupt, the lost lock) rather than "context canceled".
func why(ctx context.Context, err error) error {
	if errors.Is(err, context.Canceled) {
		if cause := context.Cause(ctx); cause != nil && cause != context.Canceled {
			return cause
		}
	}
	return err
}

func (rn *Runner) emit(e Event) {
	if rn.Events != nil {
		rn.Events.Event(e)
	}
}
