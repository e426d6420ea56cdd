package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipway-deploy/slipway/internal/ui"
)

// The fenced lock under `slipway unlock --force` (TestFaultInjection/Lock):
// a lock removed from under a running deploy, in the middle of its slow
// hook; and twenty deploys racing while a forced unlock strikes at random
// moments. A run whose lock is gone must never switch, nor delete what
// another run made; at any moment at most one run can switch; current
// always points at a complete release.

func faultLock(t *testing.T, add func(matrixRow)) {
	t.Run("unlock --force in a slow hook", func(t *testing.T) { lockRemovedInHook(t, add) })
	t.Run("twenty deploys and forced unlocks", func(t *testing.T) { lockStorm(t, add) })
}

const lockClass = "Forced unlock"

// holdHook is a before_switch hook that holds a release of the version
// named in $HOME/hold on the host (the app's VERSION file), until the test
// removes that file; every other version goes through.
const holdHook = `'while [ -e "$HOME/hold" ] && [ "$(cat VERSION)" = "$(cat "$HOME/hold")" ]; do [ -n "$said" ] || { echo held by the test; said=1; }; sleep 0.02; done'`

// backgroundRun is a slipway run with --json going on while the test acts.
type backgroundRun struct {
	name   string
	cmd    *exec.Cmd
	stderr *lockedOutput
	done   chan struct{}
	code   int

	mu     sync.Mutex
	events []ui.JSONEvent
}

// start starts slipway args (with --json) in the project.
func (p *project) start(name string, args ...string) *backgroundRun {
	p.t.Helper()
	r := &backgroundRun{name: name, cmd: p.command(args...), stderr: &lockedOutput{}, done: make(chan struct{})}
	r.cmd.Stderr = r.stderr
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		p.t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		p.t.Fatalf("start slipway: %v", err)
	}
	p.t.Cleanup(func() {
		select {
		case <-r.done:
		default:
			_ = r.cmd.Process.Kill()
			<-r.done
		}
	})
	go func() {
		defer close(r.done)
		lines := bufio.NewScanner(stdout)
		lines.Buffer(make([]byte, 0, 64<<10), 4<<20)
		for lines.Scan() {
			var e ui.JSONEvent
			if json.Unmarshal(lines.Bytes(), &e) == nil {
				r.mu.Lock()
				r.events = append(r.events, e)
				r.mu.Unlock()
			}
		}
		_ = r.cmd.Wait()
		r.code = r.cmd.ProcessState.ExitCode()
	}()
	return r
}

// count counts the events the run printed so far that match.
func (r *backgroundRun) count(match func(e ui.JSONEvent) bool) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if match(e) {
			n++
		}
	}
	return n
}

func (r *backgroundRun) wait(t *testing.T, limit time.Duration) {
	t.Helper()
	select {
	case <-r.done:
	case <-time.After(limit):
		t.Fatalf("%s did not end within %v\n%s", r.name, limit, r.stderr)
	}
}

// switched lists the hosts the run switched (a switch step_finished ok).
func (r *backgroundRun) switched() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var hosts []string
	for _, e := range r.events {
		if e.Type == "step_finished" && e.Step == "switch" && e.OK != nil && *e.OK {
			hosts = append(hosts, e.Host)
		}
	}
	return hosts
}

// currentWatch polls current on every host while the test acts: it must
// always be a link to a complete release (one whose before_switch hook
// ran: BEFORE_SWITCH holds its id), and it records every release it saw.
type currentWatch struct {
	stop, done chan struct{}
	mu         sync.Mutex
	problems   []string
	seen       map[string][]string // by host, in order
}

func (f *faultFleet) watchCurrent() *currentWatch {
	w := &currentWatch{stop: make(chan struct{}), done: make(chan struct{}), seen: map[string][]string{}}
	last := map[string]string{}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			default:
			}
			for _, h := range f.fleet.Hosts {
				target, err := os.Readlink(f.path(h, deployTo+"/current"))
				if err != nil || target == last[h.Name] {
					if err != nil {
						w.problem("%s: current: %v", h.Name, err)
					}
					continue
				}
				last[h.Name] = target
				id := filepath.Base(target)
				w.mu.Lock()
				w.seen[h.Name] = append(w.seen[h.Name], id)
				w.mu.Unlock()
				b, err := os.ReadFile(f.path(h, deployTo+"/releases/"+id+"/BEFORE_SWITCH"))
				if target != "releases/"+id || err != nil || string(b) != id+"\n" {
					w.problem("%s: current -> %s, not a complete release (BEFORE_SWITCH %q, %v)", h.Name, target, b, err)
				}
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	return w
}

func (w *currentWatch) problem(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.problems) < 10 {
		w.problems = append(w.problems, fmt.Sprintf(format, args...))
	}
}

func (w *currentWatch) finish(t *testing.T) map[string][]string {
	t.Helper()
	close(w.stop)
	<-w.done
	for _, p := range w.problems {
		t.Error(p)
	}
	return w.seen
}

// newLockFleet is a fault fleet on tmpfs deploy directories, seeded.
func newLockFleet(t *testing.T, extra string) *faultFleet {
	f := newFaultFleet(t)
	for _, h := range f.fleet.Hosts {
		f.roots[h.Name] = mountTmpfs(t, h, deployTo, 512<<20)
	}
	f.config(faultConfig(nil, ""))
	f.seed()
	f.config(faultConfig(nil, extra))
	return f
}

// lockRemovedInHook: slipway unlock --force while a deploy (A) is held in
// its before_switch hook. Without --force the unlock is refused, naming A.
// A second deploy (B) then goes through, and its cleanup keeps A's
// release, which A's hook still works in; once let go, A stops at its next
// change, refused by the fence, without switching and without touching
// B's release.
func lockRemovedInHook(t *testing.T, add func(matrixRow)) {
	f := newLockFleet(t, "")
	f.config(faultConfig([]string{holdHook}, ""))
	host1 := f.fleet.Hosts[0]
	before := f.states()
	old := before[host1.Name].live
	current := f.watchCurrent()

	versionA := f.nextVersion()
	for _, h := range f.fleet.Hosts {
		if err := os.WriteFile(filepath.Join(h.UserHome, "hold"), []byte(versionA+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		for _, h := range f.fleet.Hosts {
			_ = os.Remove(filepath.Join(h.UserHome, "hold"))
		}
	}()
	a := f.start("deploy A", "deploy", "production", "--json")
	waitFor(t, time.Minute, "deploy A held in its hook on every host", func() bool {
		return a.count(func(e ui.JSONEvent) bool { return e.Type == "output" && e.Line == "held by the test" }) == len(f.fleet.Hosts)
	})
	idA := ""
	for _, id := range f.state(host1).releases {
		if !slices.Contains(before[host1.Name].releases, id) {
			idA = id
		}
	}

	refused := f.expectCode(3, "unlock", "production")
	if !strings.Contains(refused.stderr, "deploy production") || !strings.Contains(refused.stderr, "--force") {
		t.Errorf("the unlock of a live lock does not name its holder and --force:\n%s", refused.stderr)
	}
	forced := f.mustRun("unlock", "production", "--force")
	if !strings.Contains(forced.stderr, "removed the lock held by") {
		t.Errorf("unlock --force does not say whose lock it removed:\n%s", forced.stderr)
	}

	f.nextVersion()
	resB := f.run("deploy", "production")
	t.Logf("deploy B:\n%s", resB)
	if resB.code != 0 {
		t.Fatalf("deploy B, started after the forced unlock, failed:\n%s", resB)
	}
	idB := f.state(host1).live
	treesB := map[string]map[string]string{}
	for _, h := range f.fleet.Hosts {
		if got := f.state(h).live; got != idB || got == old || got == idA {
			t.Errorf("%s: live on %s after deploy B, want B's release %s", h.Name, got, idB)
		}
		treesB[h.Name] = f.tree(h, idB)
		sameTree(t, h.Name+": B's release "+idB, treesB[h.Name], f.wantTree(h, idB))
		if !slices.Contains(f.state(h).releases, idA) {
			t.Errorf("%s: deploy B's cleanup deleted A's release %s, which A's hook works in", h.Name, idA)
		}
	}
	if !strings.Contains(resB.stderr, "kept "+idA) {
		t.Errorf("deploy B's cleanup does not say it kept A's release %s, in use:\n%s", idA, resB.stderr)
	}

	// Let A go: its next change is refused.
	for _, h := range f.fleet.Hosts {
		_ = os.Remove(filepath.Join(h.UserHome, "hold"))
	}
	a.wait(t, time.Minute)
	seen := current.finish(t)
	t.Logf("deploy A: exit %d\n%s", a.code, a.stderr)
	if a.code == 0 || !strings.Contains(a.stderr.String(), "lost its deploy lock") {
		t.Errorf("deploy A, whose lock was removed: exit %d, want a failure saying it lost its lock:\n%s", a.code, a.stderr)
	}
	if hosts := a.switched(); len(hosts) > 0 {
		t.Errorf("deploy A switched %v after losing its lock", hosts)
	}
	for _, h := range f.fleet.Hosts {
		if slices.Contains(seen[h.Name], idA) {
			t.Errorf("%s: current pointed at A's release %s (seen: %v)", h.Name, idA, seen[h.Name])
		}
		s := f.state(h)
		if s.live != idB || s.locked || len(s.tempLinks) > 0 {
			t.Errorf("%s: after A: live %s (want B's %s), locked %v, switch links %v", h.Name, s.live, idB, s.locked, s.tempLinks)
		}
		sameTree(t, h.Name+": B's release after A stopped", f.tree(h, idB), treesB[h.Name])
		if !slices.Contains(s.releases, idA) {
			t.Errorf("%s: A's release %s is gone: A's undo ran without its lock", h.Name, idA)
		}
		if st := f.metaState(h, idA); st != "preparing" && st != "failed" {
			t.Errorf("%s: A's release %s is recorded %q, want preparing or failed", h.Name, idA, st)
		}
	}
	after := f.states()
	// The next plain deploy cleans up what A left.
	f.nextVersion()
	recovery := f.recover(after)
	f.checkRecovered(after)
	add(matrixRow{class: lockClass, where: "`slipway unlock production --force` while deploy A is held in its `before_switch` hook on every host; deploy B right after",
		run:      fmt.Sprintf("unlock without --force: exit 3, naming A; with --force: exit 0; B: exit 0, its cleanup kept A's release (in use); A, let go: exit %d, \"lost its deploy lock\", never switched", a.code),
		after:    "all on B's release, intact; A's release left preparing (its undo refused by the fence); current never pointed at A's release (polled)",
		recovery: recovery, verdict: verdict(t)})
}

// lockStorm: twenty deploys, each of its own version, start at random
// moments over a few seconds while slipway unlock --force strikes at
// random moments. From the runs' --json events: the span from a run's
// lock to its switch never overlaps another run's; current, polled, is
// always a complete release; in the end all hosts agree, the lock is gone,
// and a plain deploy goes through.
func lockStorm(t *testing.T, add func(matrixRow)) {
	f := newLockFleet(t, "")
	f.config(faultConfig([]string{"sleep 0.3"}, ""))
	seed := rand.Uint64()
	rng := rand.New(rand.NewPCG(seed, seed))
	t.Logf("seed %d", seed)
	const n = 20
	const window = 8 * time.Second
	// Each run deploys its own version, from its own checkout.
	projects := make([]*project, n)
	for i := range projects {
		q := *f.project
		q.dir = t.TempDir()
		q.t = t
		q.writeApp(fmt.Sprintf("storm-%02d", i))
		q.config(faultConfig([]string{"sleep 0.3"}, ""))
		projects[i] = &q
	}
	current := f.watchCurrent()
	runs := make([]*backgroundRun, n)
	var runsMu sync.Mutex
	var launch sync.WaitGroup
	for i, q := range projects {
		delay := time.Duration(rng.Int64N(int64(window)))
		launch.Go(func() {
			time.Sleep(delay)
			r := q.start(fmt.Sprintf("deploy %02d", i), "deploy", "production", "--json")
			runsMu.Lock()
			runs[i] = r
			runsMu.Unlock()
		})
	}
	// The unlocker: slipway unlock --force at random moments until every
	// deploy is over, each after a run has switched since the one before,
	// and every other one while a run holds the lock and has not begun its
	// switch (it has locked the primary host, no more), so that however slow the machine, the storm has
	// runs that switched as well as runs that lost their lock.
	switchedRuns := func() int {
		runsMu.Lock()
		defer runsMu.Unlock()
		n := 0
		for _, r := range runs {
			if r != nil && len(r.switched()) > 0 {
				n++
			}
		}
		return n
	}
	holding := func() bool {
		runsMu.Lock()
		defer runsMu.Unlock()
		for _, r := range runs {
			if r != nil && r.count(func(e ui.JSONEvent) bool {
				return e.Type == "step_finished" && e.Step == "lock" && e.Host == "host1" && e.OK != nil && *e.OK
			}) > 0 && r.count(func(e ui.JSONEvent) bool {
				return e.Type == "run_finished" || e.Step == "rollout" || e.Step == "switch"
			}) == 0 {
				return true
			}
		}
		return false
	}
	stopUnlocks := make(chan struct{})
	unlocked := make(chan int)
	go func() {
		count := 0
		defer func() { unlocked <- count }()
		for last := 0; ; last = switchedRuns() {
			select {
			case <-stopUnlocks:
				return
			case <-time.After(time.Duration(500+rng.IntN(2000)) * time.Millisecond):
			}
			// Every other strike is aimed; the rest fall where they fall
			// (between runs, in the middle of a switch, in a cleanup).
			aimed := count%2 == 0
			for (count > 0 && switchedRuns() <= last) || (aimed && !holding()) {
				select {
				case <-stopUnlocks:
					return
				case <-time.After(10 * time.Millisecond):
				}
			}
			if res := f.run("unlock", "production", "--force"); res.code != 0 {
				t.Errorf("unlock --force: %s", res)
			}
			count++
		}
	}()
	launch.Wait()
	for _, r := range runs {
		r.wait(t, 2*time.Minute)
	}
	close(stopUnlocks)
	unlocks := <-unlocked
	seen := current.finish(t)

	// Each run that switched: the span from its lock (done on the primary
	// host, host1) to its last switch or switch back (the rename, by
	// slipway's clock).
	type span struct {
		run        *backgroundRun
		from, till time.Time
	}
	var spans []span
	outcomes := map[string]int{}
	for _, r := range runs {
		lost := strings.Contains(r.stderr.String(), "lost its deploy lock")
		switch {
		case r.code == 0:
			outcomes["succeeded"]++
		case r.code == 3:
			outcomes["refused: locked"]++
		case lost:
			outcomes["stopped: lost its lock"]++
		case r.code == 1 && strings.Contains(r.stderr.String(), "hosts disagree on the live release"):
			// It locked the fleet while a run that lost its lock in the
			// middle of its switch had switched some hosts and not yet
			// switched them back; the end state below shows they were.
			outcomes["refused: hosts mid-switch"]++
		default:
			outcomes[fmt.Sprintf("exit %d", r.code)]++
			t.Errorf("%s: exit %d, neither a success, a refusal nor a lost lock:\n%s", r.name, r.code, r.stderr)
		}
		if len(r.switched()) == 0 {
			continue
		}
		s := span{run: r}
		r.mu.Lock()
		for _, e := range r.events {
			switch {
			case e.Type == "step_finished" && e.Step == "lock" && e.Host == "host1" && e.OK != nil && *e.OK:
				s.from = e.Time
			case e.Type == "step_finished" && (e.Step == "switch" || e.Step == "switch back") && e.OK != nil && *e.OK && e.Time.After(s.till):
				s.till = e.Time
			case e.Type == "run_finished":
				for _, res := range e.Results {
					if res.SwitchLocal != nil && !res.SwitchLocal.IsZero() {
						s.till = *res.SwitchLocal
					}
				}
			}
		}
		r.mu.Unlock()
		if s.from.IsZero() || s.till.Before(s.from) {
			t.Errorf("%s switched %v, but its events give no lock-to-switch span (%v to %v)", r.name, r.switched(), s.from, s.till)
			continue
		}
		spans = append(spans, s)
	}
	sort.Slice(spans, func(i, j int) bool { return spans[i].from.Before(spans[j].from) })
	for i := 1; i < len(spans); i++ {
		a, b := spans[i-1], spans[i]
		if b.from.Before(a.till) {
			t.Errorf("%s held the lock from %s and switched at %s; %s held it from %s: both could switch at once",
				a.run.name, a.from.Format("15:04:05.000000"), a.till.Format("15:04:05.000000"), b.run.name, b.from.Format("15:04:05.000000"))
		}
	}
	t.Logf("%d forced unlocks; outcomes %v; %d runs switched", unlocks, outcomes, len(spans))
	if len(spans) == 0 || outcomes["stopped: lost its lock"] == 0 {
		t.Errorf("the storm proves little: %d runs switched, %d lost their lock (seed %d)", len(spans), outcomes["stopped: lost its lock"], seed)
	}

	// Every run is over: one live release everywhere, no lock.
	after := f.states()
	livesSeen := 0
	for _, h := range f.fleet.Hosts {
		livesSeen += len(seen[h.Name])
		if s := after[h.Name]; s.locked || s.live != after[f.fleet.Hosts[0].Name].live || len(s.tempLinks) > 0 {
			t.Errorf("%s: after the storm live %s (host1: %s), locked %v, switch links %v", h.Name, s.live, after[f.fleet.Hosts[0].Name].live, s.locked, s.tempLinks)
		}
	}
	if last := spans; len(last) > 0 {
		// Where the last run to switch left the primary host: its
		// release, or the one before if it switched back (it lost its
		// lock in the middle of its switch).
		lastRun := last[len(last)-1].run
		lastRun.mu.Lock()
		var release string
		for _, e := range lastRun.events {
			for _, res := range e.Results {
				if e.Type == "run_finished" && res.Host == f.fleet.Hosts[0].Name {
					release = res.Live
				}
			}
		}
		lastRun.mu.Unlock()
		if got := after[f.fleet.Hosts[0].Name].live; release == "" || got != release {
			t.Errorf("live on %s after the storm, want %q, where the last run to switch (%s) left it", got, release, lastRun.name)
		}
	}
	f.nextVersion()
	recovery := f.recover(after)
	f.checkRecovered(after)
	if t.Failed() {
		for _, r := range runs {
			if r.code != 3 {
				t.Logf("%s: exit %d, switched %v:\n%s", r.name, r.code, r.switched(), r.stderr)
			}
		}
	}
	add(matrixRow{class: lockClass, where: fmt.Sprintf("%d deploys of %d versions started at random moments within %s, `slipway unlock production --force` every 0.5 to 2.5 s once a run has switched since the last, every other one held until a run is between its lock and its switch (%d times)", n, n, window, unlocks),
		run:      fmt.Sprintf("%s; no two lock-to-switch spans overlap", describeOutcomes(outcomes)),
		after:    fmt.Sprintf("current always a complete release (%d switches polled on 3 hosts); all hosts on one release, no lock", livesSeen),
		recovery: recovery, verdict: verdict(t)})
}

func describeOutcomes(outcomes map[string]int) string {
	var parts []string
	for _, k := range []string{"succeeded", "stopped: lost its lock", "refused: locked", "refused: hosts mid-switch"} {
		if outcomes[k] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", outcomes[k], k))
		}
	}
	return strings.Join(parts, ", ")
}
