package deploy

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/slipway-deploy/slipway/internal/config"
)

// journal records what steps did, in order, for assertions.
type journal struct {
	mu      sync.Mutex
	entries []string
}

func (j *journal) add(format string, args ...any) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.entries = append(j.entries, fmt.Sprintf(format, args...))
}

func (j *journal) has(entry string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Contains(j.entries, entry)
}

// fakeStep records runs, undos and finishes, and fails on chosen hosts.
type fakeStep struct {
	releaseHosts
	name    string
	j       *journal
	failOn  string
	commits bool
	undo    bool
	finish  bool
}

func (s *fakeStep) Name() string { return s.name }
func (s *fakeStep) Run(_ context.Context, t *Target) error {
	s.j.add("run %s %s", s.name, t.Name())
	if t.Name() == s.failOn {
		return fmt.Errorf("boom")
	}
	return nil
}
func (s *fakeStep) Commits() bool { return s.commits }

type undoStep struct{ *fakeStep }

func (s undoStep) Undo(_ context.Context, t *Target) error {
	s.j.add("undo %s %s", s.name, t.Name())
	return nil
}

type finishStep struct{ *fakeStep }

func (s finishStep) Finish(_ context.Context, t *Target) error {
	s.j.add("finish %s %s", s.name, t.Name())
	return nil
}

func targets(names ...string) []*Target {
	var out []*Target
	for i, n := range names {
		out = append(out, &Target{Host: config.Host{Name: n}, Index: i})
	}
	return out
}

func TestRunnerBarrier(t *testing.T) {
	// Every host finishes step one before any host starts step two.
	j := &journal{}
	steps := []Step{perHost(&fakeStep{name: "one", j: j}), perHost(&fakeStep{name: "two", j: j})}
	rn := &Runner{Parallel: 4}
	if err := rn.Run(context.Background(), steps, targets("a", "b", "c", "d")); err != nil {
		t.Fatal(err)
	}
	firstTwo := slices.IndexFunc(j.entries, func(e string) bool { return strings.HasPrefix(e, "run two") })
	for _, e := range j.entries[firstTwo:] {
		if strings.HasPrefix(e, "run one") {
			t.Fatalf("step one ran after step two started: %v", j.entries)
		}
	}
	if len(j.entries) != 8 {
		t.Fatalf("want 8 runs, got %v", j.entries)
	}
}

func TestRunnerFailureUndoesCompletedStepsAndStops(t *testing.T) {
	j := &journal{}
	lock := finishStep{&fakeStep{name: "lock", j: j}}
	create := undoStep{&fakeStep{name: "create", j: j}}
	upload := undoStep{&fakeStep{name: "upload", j: j, failOn: "b"}}
	after := &fakeStep{name: "switch", j: j, commits: true}
	err := (&Runner{Parallel: 2}).Run(context.Background(), []Step{perHost(lock), perHost(create), perHost(upload), perHost(after)}, targets("a", "b", "c"))

	var he *HostError
	if !errors.As(err, &he) || he.Host != "b" || he.Step != "upload" {
		t.Fatalf("err = %v, want a HostError for b at upload", err)
	}
	for _, want := range []string{"undo create a", "undo create b", "undo create c", "undo upload a", "undo upload c", "finish lock a", "finish lock b", "finish lock c"} {
		if !j.has(want) {
			t.Errorf("missing %q in %v", want, j.entries)
		}
	}
	if j.has("undo upload b") {
		t.Error("undid upload on the host where it failed")
	}
	if j.has("run switch a") {
		t.Error("ran a step after a failure")
	}
}

func TestRunnerDoesNotUndoAfterCommit(t *testing.T) {
	j := &journal{}
	steps := []Step{
		perHost(finishStep{&fakeStep{name: "lock", j: j}}),
		perHost(undoStep{&fakeStep{name: "create", j: j}}),
		perHost(&fakeStep{name: "switch", j: j, commits: true}),
		perHost(&fakeStep{name: "hook", j: j, failOn: "a"}),
	}
	err := (&Runner{Parallel: 2}).Run(context.Background(), steps, targets("a", "b"))
	if err == nil {
		t.Fatal("want the hook failure")
	}
	if j.has("undo create a") || j.has("undo create b") {
		t.Errorf("undid a release after the switch: %v", j.entries)
	}
	if !j.has("finish lock a") || !j.has("finish lock b") {
		t.Errorf("lock not released after a failure past the switch: %v", j.entries)
	}
}

// liveFleetStep is a fleet step that fails while it says it committed (a
// rollout whose switch back failed: some host stays live on the release).
type liveFleetStep struct{ live bool }

func (liveFleetStep) Name() string    { return "rollout" }
func (s liveFleetStep) Commits() bool { return s.live }
func (liveFleetStep) RunFleet(context.Context, []*Target) error {
	return fmt.Errorf("health check failed; switching back failed too")
}

// TestRunnerDoesNotUndoUnderALiveFailure: a fleet step that fails while
// it reports a commit (hosts left live on the new release) undoes nothing
// before it, or the live release would be removed from under its hosts;
// one that fails with nothing committed is undone as any failure.
func TestRunnerDoesNotUndoUnderALiveFailure(t *testing.T) {
	for _, live := range []bool{true, false} {
		j := &journal{}
		steps := []Step{
			perHost(undoStep{&fakeStep{name: "create", j: j}}),
			fleetWide(liveFleetStep{live: live}),
		}
		if err := (&Runner{Parallel: 2}).Run(context.Background(), steps, targets("a", "b")); err == nil {
			t.Fatal("want the rollout's failure")
		}
		if undone := j.has("undo create a"); undone == live {
			t.Errorf("live %v: the release was undone: %v", live, undone)
		}
	}
}

func TestRunnerLockFailureReleasesOnlyOwnLocks(t *testing.T) {
	// The host where the lock was refused holds someone else's lock: it
	// must not be released.
	j := &journal{}
	lock := &lockLike{fakeStep: &fakeStep{name: "lock", j: j, failOn: "b"}}
	err := (&Runner{Parallel: 3}).Run(context.Background(), []Step{perHost(lock)}, targets("a", "b", "c"))
	if err == nil {
		t.Fatal("want a lock failure")
	}
	if j.has("finish lock b") || !j.has("finish lock a") || !j.has("finish lock c") {
		t.Errorf("finish ran on the wrong hosts: %v", j.entries)
	}
}

type lockLike struct{ *fakeStep }

func (s *lockLike) Finish(_ context.Context, t *Target) error {
	s.j.add("finish %s %s", s.name, t.Name())
	return nil
}

func TestRunnerCancelledContextStillCleansUp(t *testing.T) {
	j := &journal{}
	ctx, cancel := context.WithCancel(context.Background())
	cancelling := stepFunc{name: "upload", fn: func(context.Context, *Target) error { cancel(); return ctx.Err() }}
	lock := finishStep{&fakeStep{name: "lock", j: j}}
	err := (&Runner{Parallel: 1}).Run(ctx, []Step{perHost(lock), perHost(cancelling)}, targets("a"))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if !j.has("finish lock a") {
		t.Error("lock not released after Ctrl-C")
	}
}

func TestRunnerSkipAndParallelLimit(t *testing.T) {
	var running, peak atomic.Int32
	slow := stepFunc{name: "slow", fn: func(context.Context, *Target) error {
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		defer running.Add(-1)
		for i := 0; i < 1000; i++ {
			_ = i * i
		}
		return nil
	}}
	if err := (&Runner{Parallel: 2}).Run(context.Background(), []Step{perHost(slow)}, targets("a", "b", "c", "d", "e")); err != nil {
		t.Fatal(err)
	}
	if peak.Load() > 2 {
		t.Errorf("ran %d at once, limit 2", peak.Load())
	}

	j := &journal{}
	once := &onceStep{fakeStep: &fakeStep{name: "migrate", j: j}}
	if err := (&Runner{Parallel: 3}).Run(context.Background(), []Step{perHost(once)}, targets("a", "b", "c")); err != nil {
		t.Fatal(err)
	}
	if len(j.entries) != 1 || j.entries[0] != "run migrate a" {
		t.Errorf("once step ran as %v", j.entries)
	}
}

type onceStep struct{ *fakeStep }

func (s *onceStep) Where(t *Target) Selection {
	if t.Index != 0 {
		return SkipHere
	}
	return RunHere
}

// cancelStep cancels the run on host "b" and reports its cancellation
// there, as a command stopped by an interrupt does.
type cancelStep struct {
	*fakeStep
	cancel context.CancelFunc
}

func (s cancelStep) Run(ctx context.Context, t *Target) error {
	s.j.add("run %s %s", s.name, t.Name())
	if t.Name() == "b" {
		s.cancel()
		return ctx.Err()
	}
	return nil
}

func (s cancelStep) Undo(_ context.Context, t *Target) error {
	s.j.add("undo %s %s", s.name, t.Name())
	return nil
}

// TestRunnerUndoesWhereTheInterruptStoppedAStep: a step stopped by the
// run's cancellation may have done its work on the host (its command
// finished, or made half a release, as it was stopped): it is undone
// there too.
func TestRunnerUndoesWhereTheInterruptStoppedAStep(t *testing.T) {
	j := &journal{}
	ctx, cancel := context.WithCancel(context.Background())
	create := cancelStep{&fakeStep{name: "create", j: j}, cancel}
	err := (&Runner{Parallel: 1}).Run(ctx, []Step{perHost(create)}, targets("a", "b"))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want the cancellation", err)
	}
	for _, want := range []string{"undo create a", "undo create b"} {
		if !j.has(want) {
			t.Errorf("missing %q in %v", want, j.entries)
		}
	}
}

// TestCommittingStepGoesOnEveryHostOrNone: an interrupt that lands after a
// committing step began on one host still lets it run on the others (it
// is decided once, for all), and one that lands before it began keeps it
// from every host.
func TestCommittingStepGoesOnEveryHostOrNone(t *testing.T) {
	for _, cancelFirst := range []bool{false, true} {
		ctx, cancel := context.WithCancel(context.Background())
		if cancelFirst {
			cancel()
		}
		var ran atomic.Int32
		step := &committing{run: func(ctx context.Context, t *Target) error {
			// The first host's switch: the interrupt lands while it
			// works, before the others have begun.
			cancel()
			ran.Add(1)
			return nil
		}}
		targets := []*Target{{Index: 0}, {Index: 1}, {Index: 2}}
		rn := &Runner{Parallel: 1}
		_, _ = rn.each(ctx, step, targets)
		want := int32(3)
		if cancelFirst {
			want = 0
		}
		if got := ran.Load(); got != want {
			t.Errorf("interrupted before it began: %v; the step ran on %d hosts, want %d", cancelFirst, got, want)
		}
		cancel()
	}
}

type committing struct {
	run func(context.Context, *Target) error
}

func (*committing) Name() string                               { return "switch" }
func (*committing) Where(*Target) Selection                    { return RunHere }
func (*committing) Commits() bool                              { return true }
func (c *committing) Run(ctx context.Context, t *Target) error { return c.run(ctx, t) }
