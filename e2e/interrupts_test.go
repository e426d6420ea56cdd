package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-deploy/slipway/internal/shell"
	"github.com/slipway-deploy/slipway/internal/testutil"
	"github.com/slipway-deploy/slipway/internal/ui"
)

// The interrupt suite (TestFaultInjection/Interrupt): a deploy, a
// rollback and a cleanup interrupted by SIGINT, SIGTERM, SIGHUP and a
// closed output (`2>&1 | head`), on a fleet of three SSH hosts and on the
// local host. All four come at the moments that matter most: inside a slow
// before_switch hook that left a background child (`sleep 31 & sleep …`),
// inside a slow build on this machine, in the middle of an upload, inside
// the rollout (a slow after_switch hook), and while cleanup deletes a
// release. One of them, in turn, comes at the start of every other step,
// the moment the --json event stream (the text progress, for cleanup)
// says it started.
//
// After each: slipway exited with the interrupt's code (inside the
// rollout, 6: it went live and every host was switched back; after it, the
// code of a run that switched), having said so at once; no process of the
// run is left on any host or on this machine; no host's lock went while a
// process of the run still ran (watched all along); nothing is left in
// slipway's TMPDIR; every host serves the release it served before, byte
// for byte, and the new release is gone and recorded interrupted (an
// interrupt after the rollout leaves the new release live and complete
// instead); the lock is released; and the next plain deploy succeeds,
// without --force and with no lock to take over.

// faultInterrupt runs the suite on the SSH fleet and on the local host at
// once: they share nothing but this machine's /proc, where each tells its
// processes by their paths.
func faultInterrupt(t *testing.T, add func(matrixRow)) {
	var mu sync.Mutex
	addRow := add
	add = func(r matrixRow) {
		mu.Lock()
		defer mu.Unlock()
		addRow(r)
	}
	t.Run("SSH", func(t *testing.T) {
		t.Parallel()
		interruptSSH(t, add)
	})
	t.Run("local", func(t *testing.T) {
		t.Parallel()
		interruptLocal(t, add)
	})
}

// moment picks the line (or --json event) of a run at which the test
// interrupts it.
type moment func(line string, e *ui.JSONEvent) bool

func stepStarted(step string) moment {
	return func(_ string, e *ui.JSONEvent) bool {
		return e != nil && e.Type == "step_started" && e.Step == step
	}
}

func outputLine(text string) moment {
	return func(line string, e *ui.JSONEvent) bool {
		if e != nil {
			return e.Type == "output" && strings.Contains(e.Line, text)
		}
		return strings.Contains(line, text)
	}
}

// progressDone is the first text progress line saying step is done on a
// host: "host1  lock                     ok      12ms".
func progressDone(step string) moment {
	return func(line string, e *ui.JSONEvent) bool {
		fields := strings.Fields(line)
		return e == nil && len(fields) >= 3 && fields[len(fields)-2] == "ok" && strings.Join(fields[1:len(fields)-2], " ") == step
	}
}

// interruptCase is one interrupted run.
type interruptCase struct {
	kind  interruptKind
	where string // the moment, for the matrix
	at    moment
	// ready, if set, runs at the moment, before the interrupt: it waits
	// for the state the case is about and says what it saw.
	ready func() string
	// sent, if set, runs right after the interrupt was sent, and says
	// what it saw.
	sent func() string
	// prepare, if set, runs once the app is the version to deploy.
	prepare func()
	env     []string // more environment for slipway
	slow    string   // the slow hook switched on for the run (slowBeforeSwitch, slowAfterSwitch)
	codes   []int    // the exit codes the run may end with, when not the outcome's
}

// interruptFleet is the fault suite's fleet with the slow hooks and build
// of interruptConfig, each host's deploy directory on a tmpfs of its own
// (file creation is slow on this machine's disk, and the cases make many
// releases), and a TMPDIR of slipway's own.
type interruptFleet struct {
	*faultFleet
	tmp string
}

func (f *interruptFleet) forTest(t *testing.T) *interruptFleet {
	return &interruptFleet{faultFleet: f.faultFleet.forTest(t), tmp: f.tmp}
}

// Switches of interruptConfig's slow commands: files in a host's home
// for the hooks, the environment of slipway for the build.
const (
	slowBeforeSwitch = "slow-before_switch"
	slowAfterSwitch  = "slow-after_switch"
	slowBuild        = "SLOW_BUILD=1"
)

// interruptConfig is faultConfig's stage with a build on this machine and
// a second before_switch and after_switch hook, each slow when switched
// on. It continues the source: mapping project.config begins.
func interruptConfig() string {
	build := slowCommand("slow build", `[ -n "$SLOW_BUILD" ]`)
	before := slowCommand("slow before_switch", `[ -e "$HOME/`+slowBeforeSwitch+`" ]`)
	after := slowCommand("slow after_switch", `[ -e "$HOME/`+slowAfterSwitch+`" ]`)
	var b strings.Builder
	b.WriteString("  build:\n    - '" + build + "'\n")
	b.WriteString("shared:\n  dirs: [storage]\n  files: [.env]\n")
	b.WriteString("hooks:\n  before_switch:\n    - printf '%s\\n' \"$SLIPWAY_RELEASE_ID\" > BEFORE_SWITCH\n    - '" + before + "'\n")
	b.WriteString("  after_switch:\n    - '" + after + "'\n")
	b.WriteString("  after_rollback:\n    - echo after rollback on $SLIPWAY_HOST\n")
	b.WriteString("health:\n  command: test -s BEFORE_SWITCH\n")
	return b.String()
}

func newInterruptFleet(t *testing.T) *interruptFleet {
	f := newFaultFleet(t)
	tmp := t.TempDir()
	f.project = f.project.withEnv("TMPDIR=" + tmp)
	for _, h := range f.fleet.Hosts {
		f.roots[h.Name] = mountTmpfs(t, h, deployTo, 512<<20)
	}
	f.config(interruptConfig())
	f.seed()
	emptyDir(t, tmp)
	return &interruptFleet{faultFleet: f, tmp: tmp}
}

// switchOn makes the slow hook name slow on every host; the function it
// returns switches it off again.
func (f *interruptFleet) switchOn(name string) func() {
	for _, h := range f.fleet.Hosts {
		if err := os.WriteFile(filepath.Join(h.UserHome, name), nil, 0o644); err != nil {
			f.t.Fatal(err)
		}
	}
	return func() {
		for _, h := range f.fleet.Hosts {
			_ = os.Remove(filepath.Join(h.UserHome, name))
		}
	}
}

// ofRun: on a host, a process of the deploy user working in the deploy
// directory (a hook), on a release (the upload's tar, cleanup's rm), or a
// slow command's sleep; on this machine, one working in slipway's TMPDIR
// (the build).
func (f *interruptFleet) ofRun(site string, p testutil.Process) bool {
	if site == testutil.Here {
		return under(p.Cwd(), f.tmp)
	}
	if p.IsSSHD() || p.UID() != f.fleet.UID() {
		return false
	}
	return under(p.Cwd(), deployTo) || strings.Contains(p.Cmdline(), deployTo+"/releases/") || isSlowSleep(p)
}

// run runs one case: slipway with args, interrupted at c.at. It checks
// what holds whatever the command: slipway said at once that it stops,
// exited with one of codes, left no process of the run anywhere, released
// no lock before the last of them was gone, released every lock, and
// left nothing in TMPDIR. It returns the run and the notes of c.ready.
func (f *interruptFleet) run(c interruptCase, codes []int, args ...string) (interruptedRun, string) {
	t := f.t
	locks := map[string]string{}
	for _, h := range f.fleet.Hosts {
		locks[h.Name] = f.path(h, deployTo+"/.slipway/lock")
	}
	if c.slow != "" {
		defer f.switchOn(c.slow)()
	}
	watch := watchLocks(f.fleet.Hosts, locks, f.ofRun)
	cmd := f.withEnv(c.env...).command(args...)
	reached := false
	var notes []string
	run := runInterrupted(t, cmd, c.kind, func(line string, e *ui.JSONEvent, interrupt func()) {
		if reached || !c.at(line, e) {
			return
		}
		reached = true
		if c.ready != nil {
			notes = append(notes, c.ready())
		}
		interrupt()
		if c.sent != nil {
			notes = append(notes, c.sent())
		}
	})
	under := watch.finish(t)
	if left := leftRunning(t, f.fleet, f.ofRun); len(left) > 0 {
		t.Errorf("left running after slipway exited:\n  %s", strings.Join(left, "\n  "))
	}
	if !run.sent {
		t.Fatalf("the run never reached %s:\n%s", c.where, run)
	}
	t.Logf("%s %s: %v; exit %d %s after the interrupt (notice after %v); processes seen under the lock in %d polls\n%s", c.kind.name, c.where, notes, run.code, duration(run.took), run.notice, under, run.output)
	checkInterruptedOutput(t, run, c.kind, codes)
	for _, h := range f.fleet.Hosts {
		s := f.state(h)
		if s.locked {
			t.Errorf("%s: the lock is left after the interrupted run", h.Name)
		}
		if len(s.tempLinks) > 0 {
			t.Errorf("%s: switch links left: %v", h.Name, s.tempLinks)
		}
		if tmp := f.leftoverTemp(h); len(tmp) > 0 {
			notes = append(notes, fmt.Sprintf("%s: work file %s of a stopped write left", h.Name, strings.Join(tmp, ", ")))
		}
	}
	emptyDir(t, f.tmp)
	return run, strings.Join(slices.DeleteFunc(notes, func(n string) bool { return n == "" }), "; ")
}

// command is slipway args in the project, as run runs it.
func (p *project) command(args ...string) *exec.Cmd {
	cmd := exec.Command(p.bin, args...)
	cmd.Dir = p.dir
	cmd.Env = append(p.fleet.Env(), p.env...)
	return cmd
}

// leftoverTemp lists the work files of slipway's scripts (*.tmp, and a
// manifest's *.patch and *.body) under h's deploy directory, outside
// releases.
func (f *interruptFleet) leftoverTemp(h *testutil.Host) []string {
	var out []string
	for _, dir := range []string{deployTo, deployTo + "/.slipway", deployTo + "/.slipway/releases", deployTo + "/.slipway/manifests"} {
		entries, _ := os.ReadDir(f.path(h, dir))
		for _, e := range entries {
			if ext := filepath.Ext(e.Name()); ext == ".tmp" || ext == ".patch" || ext == ".body" {
				out = append(out, dir+"/"+e.Name())
			}
		}
	}
	return out
}

// checkInterruptedOutput checks how slipway reported the interrupt: its
// exit code one of codes, its notice within a second of a signal, never
// "context canceled", and for --json its run_finished event.
func checkInterruptedOutput(t *testing.T, run interruptedRun, kind interruptKind, codes []int) {
	t.Helper()
	if !slices.Contains(codes, run.code) {
		t.Errorf("exit %d, want %v\n%s", run.code, codes, run)
	}
	if run.took > 15*time.Second {
		t.Errorf("slipway took %v to exit after the interrupt", run.took)
	}
	if strings.Contains(run.output, "context canceled") {
		t.Errorf("the output says context canceled:\n%s", run.output)
	}
	if kind.sig == 0 {
		return // the rest of the output went nowhere
	}
	if run.late && run.code == 0 && run.notice < 0 {
		t.Logf("the run had finished before the interrupt was sent: nothing to interrupt")
		return
	}
	notice := "interrupted (" + kind.by + "): stopping every command this run started, then cleaning up"
	if !strings.Contains(run.output, notice) {
		t.Errorf("no notice %q:\n%s", notice, run.output)
	} else if run.notice > time.Second {
		t.Errorf("the notice came %v after the signal, not at once", run.notice)
	}
	if !strings.Contains(run.output, `"type":"run_started"`) {
		return // not a --json command
	}
	fin := run.finished()
	switch {
	case fin == nil:
		t.Errorf("no run_finished event:\n%s", run.output)
	case fin.ExitCode == nil || *fin.ExitCode != run.code:
		t.Errorf("run_finished has exit_code %v, slipway exited %d", fin.ExitCode, run.code)
	case run.code == kind.code && fin.Outcome != "interrupted":
		t.Errorf("run_finished outcome %q, want interrupted", fin.Outcome)
	}
}

// outcome sums up how the run ended, for the matrix.
func (r interruptedRun) outcome(kind interruptKind) string {
	s := fmt.Sprintf("exit %d", r.code)
	if fin := r.finished(); fin != nil {
		s += " (" + fin.Outcome + ")"
	}
	s += " " + duration(r.took) + " after the interrupt"
	if kind.sig != 0 && r.notice >= 0 {
		s += ", notice after " + duration(r.notice)
	}
	return s
}

// metaIDs lists the releases with metadata on h.
func (f *interruptFleet) metaIDs(h *testutil.Host) []string {
	entries, err := os.ReadDir(f.path(h, deployTo+"/.slipway/releases"))
	if err != nil && !os.IsNotExist(err) {
		f.t.Fatal(err)
	}
	var ids []string
	for _, e := range entries {
		if id, ok := strings.CutSuffix(e.Name(), ".json"); ok {
			ids = append(ids, id)
		}
	}
	return ids
}

// allMeta is metaIDs of every host, by host.
func (f *interruptFleet) allMeta() map[string][]string {
	out := map[string][]string{}
	for _, h := range f.fleet.Hosts {
		out[h.Name] = f.metaIDs(h)
	}
	return out
}

// checkUndone checks that no host has a release directory it did not
// have before, and that every release recorded since is recorded
// interrupted; it returns how many hosts recorded one.
func (f *interruptFleet) checkUndone(before map[string]hostState, metaBefore map[string][]string) int {
	t := f.t
	recorded := 0
	for _, h := range f.fleet.Hosts {
		for _, id := range f.state(h).releases {
			if !slices.Contains(before[h.Name].releases, id) {
				t.Errorf("%s: release %s (%q) left by the interrupted run", h.Name, id, f.metaState(h, id))
			}
		}
		for _, id := range f.metaIDs(h) {
			if slices.Contains(metaBefore[h.Name], id) {
				continue
			}
			recorded++
			if st := f.metaState(h, id); st != "interrupted" {
				t.Errorf("%s: release %s of the interrupted run is recorded %q, want interrupted", h.Name, id, st)
			}
		}
	}
	return recorded
}

// deployOutcome is where the fleet must be after an interrupted deploy.
type deployOutcome int

const (
	previousLive deployOutcome = iota // interrupted before the rollout
	// interrupted inside the rollout: the release went live and every host
	// was switched back, which the exit code says (6, rolled_back) rather
	// than the interrupt's
	switchedBack
	newLive // interrupted after the rollout: record, cleanup
	// interrupted at the start of a step, which the run may be past by the
	// time the signal lands (a local run's whole rollout takes a few
	// milliseconds): previousLive or switchedBack, or else newLive, as
	// the fleet shows
	anyMoment
)

// codes are the exit codes a deploy interrupted by kind may end with, for
// the outcome.
func (want deployOutcome) codes(kind interruptKind) []int {
	switch want {
	case switchedBack:
		return []int{6, kind.code}
	case newLive:
		// Live before the interrupt: a success, or a failure after the
		// switch (5); a closed output is reported all the same (141).
		if kind.sig == 0 {
			return []int{141, 5}
		}
		return []int{0, 5}
	case anyMoment:
		return append(switchedBack.codes(kind), newLive.codes(kind)...)
	}
	return []int{kind.code}
}

// settle says, for anyMoment, which outcome it was, by whether the new
// release is live, and checks the exit code said the same.
func (want deployOutcome) settle(t *testing.T, kind interruptKind, newIsLive bool, code int) deployOutcome {
	t.Helper()
	if want != anyMoment {
		return want
	}
	want = switchedBack
	if newIsLive {
		want = newLive
	}
	if !slices.Contains(want.codes(kind), code) {
		t.Errorf("exit %d, want %v: the new release is live: %v", code, want.codes(kind), newIsLive)
	}
	return want
}

// deployCase deploys the next version, interrupted as c says, and checks
// the fleet: every host on its previous release, byte for byte, the new
// release gone and recorded interrupted (or, for want newLive, every
// host on the new release, complete); then recovers with a plain deploy.
func (f *interruptFleet) deployCase(class string, c interruptCase, want deployOutcome) matrixRow {
	t := f.t
	before := f.states()
	old := before[f.fleet.Hosts[0].Name].live
	oldTrees := f.liveTrees(before)
	metaBefore := f.allMeta()
	f.nextVersion()
	if c.prepare != nil {
		c.prepare()
	}
	codes := want.codes(c.kind)
	if c.codes != nil {
		codes = c.codes
	}
	run, note := f.run(c, codes, "deploy", "production", "--json")
	after := f.states()
	var fleetAfter string
	switch want.settle(t, c.kind, after[f.fleet.Hosts[0].Name].live != old, run.code) {
	case previousLive, switchedBack:
		f.checkAfterFault(fleetWide(map[string]func(*testutil.Host) map[string]string{
			old: func(h *testutil.Host) map[string]string { return oldTrees[h.Name] },
		}))
		recorded := f.checkUndone(before, metaBefore)
		fleetAfter = describe(f.fleet.Hosts, after, map[string]string{old: "the previous release, intact"}, allReleases(before))
		if recorded > 0 {
			fleetAfter += fmt.Sprintf("; new release gone, recorded interrupted on %d host(s)", recorded)
		}
	case newLive:
		id := after[f.fleet.Hosts[0].Name].live
		if id == old {
			t.Errorf("the deploy interrupted after its rollout is not live")
		}
		f.checkAfterFault(fleetWide(map[string]func(*testutil.Host) map[string]string{
			id: func(h *testutil.Host) map[string]string { return f.wantTree(h, id) },
		}))
		fleetAfter = describe(f.fleet.Hosts, after, map[string]string{id: "the new release, complete"}, allReleases(before))
	}
	if note != "" {
		fleetAfter = note + "; " + fleetAfter
	}
	return f.recoverRow(class, c, run, fleetAfter, after)
}

// recoverRow runs the next plain deploy and checks the fleet after it;
// it returns the case's row.
func (f *interruptFleet) recoverRow(class string, c interruptCase, run interruptedRun, fleetAfter string, after map[string]hostState) matrixRow {
	f.nextVersion()
	recovery := f.recover(after)
	f.checkRecovered(after)
	for _, h := range f.fleet.Hosts {
		if tmp := f.leftoverTemp(h); len(tmp) > 0 {
			f.t.Errorf("%s: work files left after the next deploy: %v", h.Name, tmp)
		}
	}
	emptyDir(f.t, f.tmp)
	return matrixRow{class: class, where: c.kind.name + " " + c.where, run: run.outcome(c.kind), after: fleetAfter + "; no process left, locks released after the last one", recovery: recovery, verdict: verdict(f.t)}
}

// rollbackCase rolls back, interrupted as c says, and checks the fleet:
// every host on the release it rolled back from or every host on its
// rollback target, never split, each byte for byte as before; then
// recovers with a plain deploy.
func (f *interruptFleet) rollbackCase(class string, c interruptCase) matrixRow {
	t := f.t
	before := f.states()
	from := before[f.fleet.Hosts[0].Name].live
	trees := f.trees()
	targets := f.rollbackTargets()
	run, _ := f.run(c, []int{c.kind.code, 0, 5, 141}, "rollback", "production", "--json")
	after := f.states()
	f.checkAfterFault(func(h *testutil.Host, id string) (map[string]string, bool) {
		if id != from && id != targets[h.Name] {
			return nil, false
		}
		return trees[h.Name][id], true
	})
	switched := after[f.fleet.Hosts[0].Name].live != from
	if split(after) {
		t.Errorf("the interrupted rollback split the fleet: %v", after)
	}
	checkRollbackCode(t, c.kind, switched, run.code)
	names := map[string]string{from: "the release rolled back from"}
	for _, id := range targets {
		names[id] = "the rollback target"
	}
	return f.recoverRow(class, c, run, describe(f.fleet.Hosts, after, names, allReleases(before)), after)
}

// checkRollbackCode checks that an interrupted rollback's exit code says
// whether it switched: the interrupt's before the switch; after it 5 (a
// step after the switch failed), 0 (the rest was done before the
// interrupt landed) or, for a closed output, 141 all the same.
func checkRollbackCode(t *testing.T, kind interruptKind, switched bool, code int) {
	t.Helper()
	want := []int{kind.code}
	if switched {
		want = []int{0, 5}
		if kind.sig == 0 {
			want = []int{141, 5}
		}
	}
	if !slices.Contains(want, code) {
		t.Errorf("the rollback switched: %v; exit %d, want %v", switched, code, want)
	}
}

// junkID is a failed release planted for cleanup to delete: with many
// files, so that its removal takes a while and can be caught at it.
const junkID = "20000101000000"

// plantJunk plants the junk release on h.
func (f *interruptFleet) plantJunk(h *testutil.Host) {
	dir := deployTo + "/releases/" + junkID
	meta := `{"id":"` + junkID + `","state":"failed","created_at":"2000-01-01T00:00:00Z","user":"ci","machine":"ci","stage":"production"}`
	h.Run(f.t, "mkdir -p "+dir+" && cd "+dir+" && for d in a b c d e; do mkdir $d && (cd $d && seq 1 2000 | xargs touch); done && printf '%s\\n' '"+meta+"' > "+deployTo+"/.slipway/releases/"+junkID+".json")
}

// junkLeft counts the entries left of the junk release on h.
func (f *interruptFleet) junkLeft(h *testutil.Host) int {
	n := 0
	_ = filepath.WalkDir(f.path(h, deployTo+"/releases/"+junkID), func(string, os.DirEntry, error) error { n++; return nil })
	return n
}

// frozen is a process the test stopped (SIGSTOP) so that the interrupt
// finds it at work.
type frozen struct {
	pid  int
	site string // a host's name, or testutil.Here
	// group, when set, is the process group held whole: the command's
	// script and what it runs (pid is one of them).
	group int
	pids  []int
}

// freeze waits until a process of the deploy user on h matches, and stops
// it.
func (f *interruptFleet) freeze(h *testutil.Host, what string, match func(testutil.Process) bool) *frozen {
	return freezeOn(f.t, f.fleet.Hosts, h.Name, what, func(p testutil.Process) bool { return !p.IsSSHD() && match(p) })
}

// freezeOn waits until a process of site (one of hosts, or testutil.Here)
// matches, and stops it; it fails t and returns nil if none does within
// 30 s (the run then goes on, so its output shows where it was).
func freezeOn(t *testing.T, hosts []*testutil.Host, site, what string, match func(testutil.Process) bool) *frozen {
	t.Helper()
	var found *frozen
	poll(t, siteName(site)+": "+what, func() bool {
		procs, err := testutil.ProcessesOf(hosts)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range procs[site] {
			if match(p) && syscall.Kill(p.PID, syscall.SIGSTOP) == nil {
				found = &frozen{pid: p.PID, site: site}
				return true
			}
		}
		return false
	})
	return found
}

// poll is waitFor for the moments the test waits for inside a run: it
// fails t without stopping it, so the run goes on and its output, logged,
// shows where it was.
func poll(t *testing.T, what string, cond func() bool) bool {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("%s: not within 30s", what)
			return false
		}
	}
	return true
}

// thaw lets the process go on once slipway has sent it SIGTERM (pending
// while it is stopped), or after 1.5 s if it has not: a closed output is
// only noticed at slipway's next write. It says which.
func (z *frozen) thaw() string {
	if z == nil {
		return "nothing held"
	}
	pids := z.pids
	if len(pids) == 0 {
		pids = []int{z.pid}
	}
	signalled := func() bool {
		for _, pid := range pids {
			if !termPending(pid) {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(1500 * time.Millisecond)
	for !signalled() && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	pending := signalled()
	if z.group > 0 {
		_ = syscall.Kill(-z.group, syscall.SIGCONT)
	} else {
		_ = syscall.Kill(z.pid, syscall.SIGCONT)
	}
	if pending {
		return "stopped by slipway"
	}
	return "not stopped 1.5 s on (slipway had written nothing since the output closed), so let go"
}

// termPending reports whether pid is gone or has SIGTERM pending.
func termPending(pid int) bool {
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return true
	}
	for _, line := range strings.Split(string(status), "\n") {
		key, value, _ := strings.Cut(line, ":")
		if key != "SigPnd" && key != "ShdPnd" {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(value), 16, 64)
		if err == nil && mask&(1<<(uint(syscall.SIGTERM)-1)) != 0 {
			return true
		}
	}
	return false
}

// slowReady waits until the slow command's sleeps run on every site
// (hosts: on each host of the fleet; else on this machine) and says so.
func (f *interruptFleet) slowReady(onHosts bool) func() string {
	return func() string {
		hosts := f.fleet.Hosts
		poll(f.t, "the slow command's sleeps", func() bool {
			procs, err := testutil.ProcessesOf(hosts)
			if err != nil {
				f.t.Fatal(err)
			}
			sites := []string{testutil.Here}
			if onHosts {
				sites = nil
				for _, h := range hosts {
					sites = append(sites, h.Name)
				}
			}
			for _, site := range sites {
				background := slices.ContainsFunc(procs[site], func(p testutil.Process) bool {
					return p.Cmdline() == "sleep 31" && f.ofRun(site, p)
				})
				if !background {
					return false
				}
			}
			return true
		})
		if onHosts {
			return fmt.Sprintf("the hook's sleeps were running on %d hosts", len(hosts))
		}
		return "the build's sleeps were running here"
	}
}

func interruptSSH(t *testing.T, add func(matrixRow)) {
	f := newInterruptFleet(t)
	const (
		deployClass   = "Interrupted deploy (SSH)"
		rollbackClass = "Interrupted rollback (SSH)"
		cleanupClass  = "Interrupted cleanup (SSH)"
	)
	host1 := f.fleet.Hosts[0]

	// A deploy and a rollback without a fault name every step, in order.
	f.nextVersion()
	deploySteps := stepPoints(t, f.runWatched(nil, "deploy", "production", "--json"))
	rollbackSteps := stepPoints(t, f.runWatched(nil, "rollback", "production", "--json"))
	f.nextVersion()
	f.mustRun("deploy", "production")
	emptyDir(t, f.tmp)

	for _, kind := range interruptKinds {
		t.Run(kind.name+" in a slow before_switch hook", func(t *testing.T) {
			f := f.forTest(t)
			add(f.deployCase(deployClass, interruptCase{
				kind: kind, where: "inside a slow `before_switch` hook (`sleep 31 & sleep 1; …; sleep 30`) on every host",
				at: outputLine("slow before_switch started"), ready: f.slowReady(true), slow: slowBeforeSwitch,
			}, previousLive))
		})
		t.Run(kind.name+" in a slow build", func(t *testing.T) {
			f := f.forTest(t)
			add(f.deployCase(deployClass, interruptCase{
				kind: kind, where: "inside a slow `build` on this machine (`sleep 31 & sleep 1; …; sleep 30`)",
				at: outputLine("slow build started"), ready: f.slowReady(false), env: []string{slowBuild},
			}, previousLive))
		})
		t.Run(kind.name+" mid-upload", func(t *testing.T) {
			f := f.forTest(t)
			const size = 32 << 20
			var z *frozen
			c := interruptCase{kind: kind, where: "mid-upload of a 32 MiB file (the receiving `tar` of the first host to get part of it held there)",
				at: stepStarted("upload"),
				ready: func() string {
					var got int64
					z, got = f.freezeUpload(size)
					if z == nil {
						return ""
					}
					return fmt.Sprintf("%s's `tar` held with %s of the 32 MiB written", z.site, ui.HumanBytes(got))
				},
				sent:    func() string { return "then " + z.thaw() },
				prepare: func() { f.writeRandom("app/assets/big.bin", size) },
			}
			add(f.deployCase(deployClass, c, previousLive))
		})
		t.Run(kind.name+" in the rollout", func(t *testing.T) {
			f := f.forTest(t)
			// Every host switched, then the interrupt: the rollout goes
			// back whole, as a failed health check makes it.
			add(f.deployCase(deployClass, interruptCase{
				kind: kind, where: "inside the rollout: every host switched, in a slow `after_switch` hook",
				at: outputLine("slow after_switch started"), ready: f.slowReady(true), slow: slowAfterSwitch,
				codes: []int{6},
			}, switchedBack))
		})
		t.Run(kind.name+" in cleanup", func(t *testing.T) {
			f := f.forTest(t)
			add(f.cleanupCase(cleanupClass, kind))
		})
	}

	// One interrupt at the start of every other step, the four in turn.
	turn := 0
	next := func() interruptKind {
		turn++
		return interruptKinds[(turn-1)%len(interruptKinds)]
	}
	for _, p := range deploySteps {
		kind := next()
		t.Run("deploy "+kind.name+" at "+p.label, func(t *testing.T) {
			f := f.forTest(t)
			c := interruptCase{kind: kind, where: "at " + p.label, at: p.at}
			want := anyMoment
			switch {
			case p.step == "create release" && uploadMode() == "":
				// Caught copying the live release's unchanged files
				// into the new one (a delta), as on a big app it does
				// for a while.
				c = f.copyCase(c, host1)
			case p.step == "cleanup":
				// Caught removing a release, as cleanup does after a
				// deploy.
				want = newLive
				f.plantJunk(host1)
				c = f.junkCase(c, host1)
				c.where += " (" + host1.Name + " removing a failed release, its `rm` held there)"
			}
			add(f.deployCase(deployClass, c, want))
		})
	}
	for _, p := range rollbackSteps {
		kind := next()
		t.Run("rollback "+kind.name+" at "+p.label, func(t *testing.T) {
			f := f.forTest(t)
			add(f.rollbackCase(rollbackClass, interruptCase{kind: kind, where: "at " + p.label, at: p.at}))
		})
	}
	for _, step := range []string{"connect", "lock", "inspect"} {
		kind := next()
		t.Run("cleanup "+kind.name+" at "+step, func(t *testing.T) {
			f := f.forTest(t)
			// Something to delete, so the run is still at it when
			// the interrupt lands.
			f.plantJunk(host1)
			add(f.cleanupCaseAt(cleanupClass, interruptCase{kind: kind, where: "when `" + step + "` is done on the first host", at: progressDone(step)}))
		})
	}
}

// stepPoint is the start of a step of a run (for the switch, inside the
// rollout, the moment the first host is done with it: it reports nothing
// else).
type stepPoint struct {
	label, step string
	at          moment
}

// stepPoints lists the steps of a run without a fault, in order.
func stepPoints(t *testing.T, run watchedRun) []stepPoint {
	t.Helper()
	var points []stepPoint
	for _, kp := range killPoints(t, run) {
		step, started := strings.CutSuffix(strings.TrimPrefix(kp.label, "`"), "` started")
		if !started {
			if kp.label != "`switch` done on the first host" {
				continue
			}
			step = "switch"
		}
		match := kp.match
		points = append(points, stepPoint{label: kp.label, step: step, at: func(_ string, e *ui.JSONEvent) bool { return e != nil && match(*e) }})
	}
	return points
}

// freezeUpload waits for the first host to have some but not all of the
// big file in the new release, and stops its tar there.
func (f *interruptFleet) freezeUpload(size int64) (z *frozen, got int64) {
	poll(f.t, "the upload reaching a host", func() bool {
		for _, h := range f.fleet.Hosts {
			for _, id := range f.state(h).releases {
				got = fileSize(f.path(h, deployTo+"/releases/"+id+"/assets/big.bin"))
				if got <= 0 || got >= size {
					continue
				}
				for _, p := range h.Processes(f.t) {
					if strings.HasPrefix(p.Cmdline(), "tar -x") && syscall.Kill(p.PID, syscall.SIGSTOP) == nil {
						z = &frozen{pid: p.PID, site: h.Name}
						return true
					}
				}
			}
		}
		return false
	})
	return z, got
}

// junkCase makes c wait, at its moment, for h to be removing the junk
// release, and hold that removal until slipway stops it. Removing 10 000
// empty files can take less than a look at every process, so an rm first
// on h's PATH removes one of the junk's five directories, then waits while
// the gate is there (30 s at most), for the look to find the removal under
// way and hold it (as the local cases do: junkCase in
// interrupts_local_test.go).
func (f *interruptFleet) junkCase(c interruptCase, h *testutil.Host) interruptCase {
	var z *frozen
	junk := deployTo + "/releases/" + junkID
	gate := filepath.Join(h.UserHome, "hold-removal")
	h.Shim(f.t, "rm", shell.Script(`case " $* " in *{{junk}}*) if [ -e "$HOME/hold-removal" ]; then /bin/rm -rf -- {{first}}; n=0; while [ -e "$HOME/hold-removal" ] && [ $n -lt 600 ]; do sleep 0.05; n=$((n + 1)); done; fi;; esac
exec /bin/rm "$@"`, shell.Args{"junk": " " + junk + " ", "first": junk + "/a"}))
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		f.t.Fatal(err)
	}
	c.ready = func() string {
		z = freezeRemoval(f.t, f.fleet.Hosts, h.Name, f.path(h, junk), junk)
		return ""
	}
	c.sent = func() string { os.Remove(gate); return h.Name + "'s `rm` " + z.thaw() }
	return c
}

// freezeRemoval waits for the command that removes the junk release (dir
// on this machine, path on site) and, once the removal is under way (one
// of the junk's five directories gone: a directory's link count counts
// its subdirectories), stops the command's whole process group, its rm
// included, at once.
func freezeRemoval(t *testing.T, hosts []*testutil.Host, site, dir, path string) *frozen {
	t.Helper()
	return freezeGroup(t, hosts, site, "the removal of "+path, func(p testutil.Process) bool {
		// Locally the script is sh's argument; on a host it is read from
		// stdin, and the cleanup's command is the host's only one.
		return strings.Contains(p.Cmdline(), path) || site != testutil.Here && !p.IsSSHD()
	}, func() bool {
		var st syscall.Stat_t
		return syscall.Stat(dir, &st) != nil || st.Nlink < 7
	}, func(p testutil.Process) bool {
		// rm itself, or a test's shim of it (sh running the shim)
		return strings.HasPrefix(p.Cmdline(), "rm -rf -- "+path) || strings.Contains(p.Cmdline(), "/rm rm -rf -- "+path) || strings.Contains(p.Cmdline(), "/rm -rf -- "+path)
	})
}

// freezeGroup waits for a process of site that is (or belongs to) the
// command of interest, then until underWay says the command is at the
// work the case is about, and then stops its whole process group at once
// (SIGSTOP to the group); doing must match one of the group's processes
// then, or the work was over before it could be held.
func freezeGroup(t *testing.T, hosts []*testutil.Host, site, what string, command func(testutil.Process) bool, underWay func() bool, doing func(testutil.Process) bool) *frozen {
	t.Helper()
	group := 0
	poll(t, siteName(site)+": the command of "+what, func() bool {
		procs, err := testutil.ProcessesOf(hosts)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range procs[site] {
			if command(p) {
				group = processGroup(p.PID)
				return group > 0
			}
		}
		return false
	})
	if group == 0 || !poll(t, siteName(site)+": "+what+" under way", underWay) {
		return nil
	}
	if err := syscall.Kill(-group, syscall.SIGSTOP); err != nil {
		t.Errorf("%s: %s was over before it could be held (%v)", siteName(site), what, err)
		return nil
	}
	procs, err := testutil.ProcessesOf(hosts)
	if err != nil {
		t.Fatal(err)
	}
	z := &frozen{site: site, group: group}
	for _, p := range procs[site] {
		if processGroup(p.PID) == group {
			z.pids = append(z.pids, p.PID)
			if doing(p) {
				z.pid = p.PID
			}
		}
	}
	if z.pid == 0 {
		t.Errorf("%s: %s was over before it could be held; its group held: %v", siteName(site), what, z.pids)
	}
	return z
}

// processGroup is pid's process group, 0 once pid is gone.
func processGroup(pid int) int {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(stat)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 3 {
		return 0
	}
	group, _ := strconv.Atoi(fields[2])
	return group
}

// copyCase makes c wait, at its moment, for h to be copying the unchanged
// files of the live release into the new one, and hold the copy (a
// process working in the live release) until slipway stops it.
func (f *interruptFleet) copyCase(c interruptCase, h *testutil.Host) interruptCase {
	var z *frozen
	live := deployTo + "/releases/" + f.state(h).live
	// A small app's copy takes milliseconds, less than a look at every
	// process: tar waits at the start of the copy, in the live release,
	// while the gate is there, for the look to find it and hold it. (It
	// waits rather than stopping itself: the hold may come first, and a
	// stop of its own after the thaw would last for ever.)
	gate := filepath.Join(h.UserHome, "hold-copy")
	h.Shim(f.t, "tar", `if [ "$1" = -c ] && [ "$PWD" = `+shell.Quote(live)+` ] && [ -e "$HOME/hold-copy" ]; then while [ -e "$HOME/hold-copy" ]; do sleep 0.05; done; fi
exec /usr/bin/tar "$@"`)
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { os.Remove(gate) })
	c.ready = func() string {
		z = f.freeze(h, "copying from "+live, func(p testutil.Process) bool {
			return p.Name == "tar" && p.Cwd() == live && strings.Contains(p.Cmdline(), " -c ")
		})
		return ""
	}
	c.sent = func() string { os.Remove(gate); return h.Name + "'s copy " + z.thaw() }
	c.where += " (" + h.Name + " copying the live release's unchanged files, held there)"
	return c
}

// cleanupCase runs slipway cleanup, interrupted while it removes the junk
// release on host1.
func (f *interruptFleet) cleanupCase(class string, kind interruptKind) matrixRow {
	host1 := f.fleet.Hosts[0]
	f.plantJunk(host1)
	c := f.junkCase(interruptCase{kind: kind, where: "while removing a release (" + host1.Name + ": a failed release of 10 000 files, its `rm` held there)", at: progressDone("inspect")}, host1)
	return f.cleanupCaseAt(class, c)
}

// cleanupCaseAt runs slipway cleanup, interrupted as c says, and checks
// that the fleet serves what it served, then recovers with a plain deploy,
// whose cleanup removes what the interrupted one left.
func (f *interruptFleet) cleanupCaseAt(class string, c interruptCase) matrixRow {
	before := f.states()
	old := before[f.fleet.Hosts[0].Name].live
	oldTrees := f.liveTrees(before)
	run, note := f.run(c, []int{c.kind.code, 0}, "cleanup", "production")
	after := f.states()
	f.checkAfterFault(fleetWide(map[string]func(*testutil.Host) map[string]string{
		old: func(h *testutil.Host) map[string]string { return oldTrees[h.Name] },
	}))
	desc := describe(f.fleet.Hosts, after, map[string]string{old: "the live release, intact"}, allReleases(before))
	if n := f.junkLeft(f.fleet.Hosts[0]); n > 0 {
		desc += fmt.Sprintf("; %d entries of the failed release left on host1", n)
	}
	if note != "" {
		desc = note + "; " + desc
	}
	return f.recoverRow(class, c, run, desc, after)
}
