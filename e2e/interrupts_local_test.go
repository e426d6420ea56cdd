package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/slipway-deploy/slipway/internal/shell"
	"github.com/slipway-deploy/slipway/internal/testutil"
	"github.com/slipway-deploy/slipway/internal/ui"
)

// The interrupt suite on the local host (`hosts: [local]`): the same
// interrupts at the same moments as on the SSH fleet (interrupts_test.go),
// where slipway stops its hooks and build as process groups of this
// machine. The project ships a git revision: each deploy exports it into
// $TMPDIR/slipway-export-* and builds there.

// localInterrupts is the project: interruptProject's git checkout with
// interruptConfig's slow commands, switched on by slipway's environment.
type localInterrupts struct {
	*interruptProject
}

// Switches of the local project's slow commands.
const (
	localSlowBefore = "SLOW_BEFORE_SWITCH=1"
	localSlowAfter  = "SLOW_AFTER_SWITCH=1"
)

func newLocalInterrupts(t *testing.T) *localInterrupts {
	t.Helper()
	_, err := exec.LookPath("git")
	testutil.Require(t, "git on PATH: apt-get install git", err == nil)
	root := t.TempDir()
	// The deploy directory is on a tmpfs where there is one: the cases
	// make many releases, and cleanup is caught removing a big one.
	deployRoot := root
	if shm, err := os.MkdirTemp("/dev/shm", "slipway-e2e-"); err == nil {
		deployRoot = shm
		t.Cleanup(func() { os.RemoveAll(shm) })
	}
	p := &interruptProject{
		t: t, bin: testutil.Slipway(t),
		dir: filepath.Join(root, "project"), deployTo: filepath.Join(deployRoot, "deployed"),
		tmp: filepath.Join(root, "tmp"), home: filepath.Join(root, "home"),
	}
	for _, dir := range []string{p.dir, p.tmp, p.home} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	build := slowCommand("slow build", `[ -n "$SLOW_BUILD" ]`)
	before := slowCommand("slow before_switch", `[ -n "$SLOW_BEFORE_SWITCH" ]`)
	after := slowCommand("slow after_switch", `[ -n "$SLOW_AFTER_SWITCH" ]`)
	config := "app: demo\nsource:\n  subdir: site\n  build:\n    - '" + build + "'\n" +
		"hooks:\n  before_switch:\n    - printf '%s\\n' \"$SLIPWAY_RELEASE_ID\" > BEFORE_SWITCH\n    - '" + before + "'\n" +
		"  after_switch:\n    - '" + after + "'\n" +
		"  after_rollback:\n    - echo after rollback\n" +
		"health:\n  command: test -s BEFORE_SWITCH\n" +
		"stages:\n  demo:\n    hosts: [local]\n    deploy_to: " + p.deployTo + "\n"
	if err := os.WriteFile(filepath.Join(p.dir, "slipway.yml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	git(t, p.dir, "init", "--quiet", "--initial-branch=main")
	p.commit()
	p.deploy("the first deploy")
	return &localInterrupts{p}
}

func (p *localInterrupts) forTest(t *testing.T) *localInterrupts {
	p.t = t
	return p
}

// ofRun: a process working in the deploy directory (a hook), on a release
// (the upload's tar, cleanup's rm) or in slipway's TMPDIR (the export's
// build).
func (p *localInterrupts) ofRun(_ string, q testutil.Process) bool {
	return under(q.Cwd(), p.deployTo) || strings.Contains(q.Cmdline(), filepath.Join(p.deployTo, "releases")+"/") || under(q.Cwd(), p.tmp)
}

// run runs one case, as interruptFleet.run does on the fleet.
func (p *localInterrupts) run(c interruptCase, codes []int, args ...string) (interruptedRun, string) {
	t := p.t
	lock := filepath.Join(p.deployTo, ".slipway", "lock")
	watch := watchLocks(nil, map[string]string{"local": lock}, p.ofRun)
	reached := false
	var notes []string
	run := runInterrupted(t, p.slipway(args, c.env...), c.kind, func(line string, e *ui.JSONEvent, interrupt func()) {
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
	if left := leftRunning(t, nil, p.ofRun); len(left) > 0 {
		t.Errorf("left running after slipway exited:\n  %s", strings.Join(left, "\n  "))
	}
	if !run.sent {
		t.Fatalf("the run never reached %s:\n%s", c.where, run)
	}
	t.Logf("%s %s: exit %d %s after the interrupt (notice after %v); processes seen under the lock in %d polls\n%s", c.kind.name, c.where, run.code, duration(run.took), run.notice, under, run.output)
	checkInterruptedOutput(t, run, c.kind, codes)
	if _, err := os.Lstat(lock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the lock is left after the interrupted run (%v)", err)
	}
	if links, _ := filepath.Glob(filepath.Join(p.deployTo, ".current.slipway-*")); len(links) > 0 {
		t.Errorf("switch links left: %v", links)
	}
	emptyDir(t, p.tmp)
	return run, strings.Join(slices.DeleteFunc(notes, func(n string) bool { return n == "" }), "; ")
}

func (p *localInterrupts) tree(id string) map[string]string {
	return hashTree(p.t, filepath.Join(p.deployTo, "releases", id))
}

func (p *localInterrupts) metaState(id string) string {
	b, err := os.ReadFile(filepath.Join(p.deployTo, ".slipway", "releases", id+".json"))
	if err != nil {
		return ""
	}
	var m struct{ State string }
	_ = json.Unmarshal(b, &m)
	return m.State
}

func (p *localInterrupts) metaIDs() []string {
	entries, _ := os.ReadDir(filepath.Join(p.deployTo, ".slipway", "releases"))
	var ids []string
	for _, e := range entries {
		if id, ok := strings.CutSuffix(e.Name(), ".json"); ok {
			ids = append(ids, id)
		}
	}
	return ids
}

// deployCase deploys the next commit, interrupted as c says, and checks
// the deploy directory as deployCase does on the fleet; then recovers.
func (p *localInterrupts) deployCase(class string, c interruptCase, want deployOutcome) matrixRow {
	t := p.t
	old, releasesBefore, metaBefore := p.live(), p.releases(), p.metaIDs()
	oldTree := p.tree(old)
	p.commit()
	if c.prepare != nil {
		c.prepare()
	}
	codes := want.codes(c.kind)
	if c.codes != nil {
		codes = c.codes
	}
	run, note := p.run(c, codes, "deploy", "demo", "--json")
	var after string
	live := p.live()
	switch want.settle(t, c.kind, live != old, run.code) {
	case previousLive, switchedBack:
		if live != old {
			t.Errorf("current is %s after the interrupt, want the previous release %s", live, old)
		}
		sameTree(t, "the live release "+old, p.tree(old), oldTree)
		if got := p.releases(); !slices.Equal(got, releasesBefore) {
			t.Errorf("releases %v after the interrupt, want %v as before", got, releasesBefore)
		}
		recorded := 0
		for _, id := range p.metaIDs() {
			if !slices.Contains(metaBefore, id) {
				recorded++
				if st := p.metaState(id); st != "interrupted" {
					t.Errorf("release %s of the interrupted run is recorded %q, want interrupted", id, st)
				}
			}
		}
		after = "on the previous release, intact"
		if recorded > 0 {
			after += "; new release gone, recorded interrupted"
		}
	case newLive:
		if live == old {
			t.Errorf("the deploy interrupted after its rollout is not live")
		}
		if got := readFile(t, filepath.Join(p.deployTo, "releases", live, "BEFORE_SWITCH")); got != live+"\n" {
			t.Errorf("the new live release is not complete: BEFORE_SWITCH %q", got)
		}
		after = "on the new release, complete"
	}
	if note != "" {
		after = note + "; " + after
	}
	return p.recoverRow(class, c, run, after)
}

// recoverRow deploys the next commit, which must succeed with no lock to
// take over and leave no release of the interrupted run; it returns the
// case's row.
func (p *localInterrupts) recoverRow(class string, c interruptCase, run interruptedRun, after string) matrixRow {
	t := p.t
	_ = os.RemoveAll(filepath.Join(p.dir, "site", "assets"))
	p.commit()
	out := p.deploy("the deploy after the interrupted run")
	if strings.Contains(out, "taking over the lock") {
		t.Errorf("the deploy after the interrupted run took over a lock:\n%s", out)
	}
	for _, id := range p.releases() {
		if st := p.metaState(id); st != "deployed" && st != "rolled_back" {
			t.Errorf("release %s (%q) is left after the next deploy", id, st)
		}
	}
	for _, dir := range []string{"releases", "manifests"} {
		for _, ext := range []string{"tmp", "patch", "body"} {
			if left, _ := filepath.Glob(filepath.Join(p.deployTo, ".slipway", dir, "*."+ext)); len(left) > 0 {
				t.Errorf("work files left after the next deploy: %v", left)
			}
		}
	}
	emptyDir(t, p.tmp)
	return matrixRow{class: class, where: c.kind.name + " " + c.where, run: run.outcome(c.kind),
		after: after + "; no process left, lock released after the last one", recovery: "`slipway deploy demo`: exit 0", verdict: verdict(t)}
}

// rollbackCase rolls back, interrupted as c says: the host serves the
// release it rolled back from or its rollback target, intact.
func (p *localInterrupts) rollbackCase(class string, c interruptCase) matrixRow {
	t := p.t
	from := p.live()
	trees := map[string]map[string]string{}
	for _, id := range p.releases() {
		trees[id] = p.tree(id)
	}
	run, _ := p.run(c, []int{c.kind.code, 0, 5, 141}, "rollback", "demo", "--json")
	live := p.live()
	sameTree(t, "the live release "+live, p.tree(live), trees[live])
	checkRollbackCode(t, c.kind, live != from, run.code)
	after := "on the release rolled back from"
	if live != from {
		after = "on the rollback target"
	}
	return p.recoverRow(class, c, run, after)
}

// cleanupCase runs slipway cleanup, interrupted as c says.
func (p *localInterrupts) cleanupCase(class string, c interruptCase) matrixRow {
	t := p.t
	old := p.live()
	oldTree := p.tree(old)
	run, note := p.run(c, []int{c.kind.code, 0}, "cleanup", "demo")
	if live := p.live(); live != old {
		t.Errorf("current is %s after an interrupted cleanup, want %s", live, old)
	}
	sameTree(t, "the live release "+old, p.tree(old), oldTree)
	after := "on the live release, intact"
	if note != "" {
		after = note + "; " + after
	}
	return p.recoverRow(class, c, run, after)
}

// plantJunk plants a failed release of 10 000 files for cleanup to delete.
func (p *localInterrupts) plantJunk() {
	dir := filepath.Join(p.deployTo, "releases", junkID)
	for _, sub := range []string{"a", "b", "c", "d", "e"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o755); err != nil {
			p.t.Fatal(err)
		}
		for i := range 2000 {
			if err := os.WriteFile(filepath.Join(dir, sub, fmt.Sprint(i)), nil, 0o644); err != nil {
				p.t.Fatal(err)
			}
		}
	}
	meta := `{"id":"` + junkID + `","state":"failed","created_at":"2000-01-01T00:00:00Z","user":"ci","machine":"ci","stage":"demo"}` + "\n"
	if err := os.WriteFile(filepath.Join(p.deployTo, ".slipway", "releases", junkID+".json"), []byte(meta), 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// holdUpload makes an upload hold, in a run with env, once its tar has
// been given the first n bytes of a stream longer than that, while the
// gate it returns is there: 16 MiB on this machine go in a fraction of a
// second, quicker than a look at every process may find them going. A
// tar first on slipway's PATH feeds the real one the stream's first n
// bytes, then waits while the gate is there, then the rest.
func (p *localInterrupts) holdUpload(n int) (gate string, env []string) {
	shims := p.t.TempDir()
	gate = filepath.Join(shims, "hold")
	tar := shell.Script(`#!/bin/sh
case " $* " in *" -x "*" -f - "*) if [ -e {{gate}} ]; then
  first={{dir}}/first.$$
  { head -c {{n}} > "$first"; cat "$first"; got=$(wc -c < "$first"); rm -f "$first"
    if [ "$got" -eq {{n}} ]; then while [ -e {{gate}} ]; do sleep 0.05; done; fi
    cat; } | PATH=${PATH#*:} tar "$@"
  exit
fi;; esac
PATH=${PATH#*:} exec tar "$@"
`, shell.Args{"gate": gate, "dir": shims, "n": strconv.Itoa(n)})
	if err := os.WriteFile(filepath.Join(shims, "tar"), []byte(tar), 0o755); err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		p.t.Fatal(err)
	}
	return gate, []string{"PATH=" + shims + ":" + os.Getenv("PATH")}
}

// junkCase makes c wait, at its moment, for cleanup to be removing the
// junk release, and hold the removal until slipway stops it.
func (p *localInterrupts) junkCase(c interruptCase) interruptCase {
	var z *frozen
	junk := filepath.Join(p.deployTo, "releases", junkID)
	// Removing 10 000 empty files from memory takes milliseconds, less
	// than a look at every process: an rm first on slipway's PATH removes
	// one of the junk's five directories, then waits while the gate is
	// there, for the look to find the removal under way and hold it. (It
	// waits rather than stopping itself: the hold may come first, and a
	// stop of its own after the thaw would last for ever.)
	shims := p.t.TempDir()
	gate := filepath.Join(shims, "hold")
	rm := shell.Script(`#!/bin/sh
case " $* " in *{{junk}}*) if [ -e {{gate}} ]; then /bin/rm -rf -- {{first}}; while [ -e {{gate}} ]; do sleep 0.05; done; fi;; esac
exec /bin/rm "$@"
`, shell.Args{"junk": " " + junk + " ", "gate": gate, "first": junk + "/a"})
	if err := os.WriteFile(filepath.Join(shims, "rm"), []byte(rm), 0o755); err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		p.t.Fatal(err)
	}
	c.env = append(c.env, "PATH="+shims+":"+os.Getenv("PATH"))
	c.ready = func() string {
		z = freezeRemoval(p.t, nil, testutil.Here, junk, junk)
		return ""
	}
	c.sent = func() string { os.Remove(gate); return "its `rm` " + z.thaw() }
	return c
}

// stepsOf runs slipway args (with --json) without a fault and lists the
// steps it went through.
func (p *localInterrupts) stepsOf(args ...string) []stepPoint {
	p.t.Helper()
	cmd := p.slipway(args)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	run := watchedRun{result: result{stdout: stdout.String(), stderr: stderr.String(), code: cmd.ProcessState.ExitCode()}}
	if err != nil && run.code == 0 {
		p.t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var e ui.JSONEvent
		if json.Unmarshal([]byte(line), &e) == nil {
			run.events = append(run.events, e)
		}
	}
	return stepPoints(p.t, run)
}

func interruptLocal(t *testing.T, add func(matrixRow)) {
	p := newLocalInterrupts(t)
	const (
		deployClass   = "Interrupted deploy (local)"
		rollbackClass = "Interrupted rollback (local)"
		cleanupClass  = "Interrupted cleanup (local)"
	)
	p.commit()
	deploySteps := p.stepsOf("deploy", "demo", "--json")
	rollbackSteps := p.stepsOf("rollback", "demo", "--json")
	p.commit()
	p.deploy("a deploy after the rollback")

	for _, kind := range interruptKinds {
		t.Run(kind.name+" in a slow before_switch hook", func(t *testing.T) {
			p := p.forTest(t)
			add(p.deployCase(deployClass, interruptCase{
				kind: kind, where: "inside a slow `before_switch` hook (`sleep 31 & sleep 1; …; sleep 30`)",
				at: outputLine("slow before_switch started"), ready: p.slowReady, env: []string{localSlowBefore},
			}, previousLive))
		})
		t.Run(kind.name+" in a slow build", func(t *testing.T) {
			p := p.forTest(t)
			add(p.deployCase(deployClass, interruptCase{
				kind: kind, where: "inside a slow `build` of the git export (`sleep 31 & sleep 1; …; sleep 30`)",
				at: outputLine("slow build started"), ready: p.slowReady, env: []string{slowBuild},
			}, previousLive))
		})
		t.Run(kind.name+" mid-upload", func(t *testing.T) {
			p := p.forTest(t)
			const size = 16 << 20
			var z *frozen
			gate, env := p.holdUpload(4 << 20)
			add(p.deployCase(deployClass, interruptCase{
				kind: kind, where: "mid-upload of a 16 MiB file (the receiving `tar` held with part of it)",
				at: stepStarted("upload"),
				ready: func() string {
					var got int64
					z, got = p.freezeUpload(size)
					if z == nil {
						return ""
					}
					return fmt.Sprintf("`tar` held with %s of the 16 MiB written", ui.HumanBytes(got))
				},
				env:  env,
				sent: func() string { os.Remove(gate); return "then " + z.thaw() },
				prepare: func() {
					big := make([]byte, size)
					_, _ = rand.Read(big) // crypto/rand.Read never fails
					writeFileAll(t, filepath.Join(p.dir, "site", "assets", "big.bin"), big)
					git(t, p.dir, "add", "-A")
					git(t, p.dir, "commit", "--quiet", "-m", "a big asset")
				},
			}, previousLive))
		})
		t.Run(kind.name+" in the rollout", func(t *testing.T) {
			p := p.forTest(t)
			add(p.deployCase(deployClass, interruptCase{
				kind: kind, where: "inside the rollout: switched, in a slow `after_switch` hook",
				at: outputLine("slow after_switch started"), ready: p.slowReady, env: []string{localSlowAfter},
				codes: []int{6},
			}, switchedBack))
		})
		t.Run(kind.name+" in cleanup", func(t *testing.T) {
			p := p.forTest(t)
			p.plantJunk()
			add(p.cleanupCase(cleanupClass, p.junkCase(interruptCase{
				kind: kind, where: "while removing a release (a failed release of 10 000 files, its `rm` held there)",
				at: progressDone("inspect"),
			})))
		})
	}

	turn := 0
	next := func() interruptKind {
		turn++
		return interruptKinds[(turn-1)%len(interruptKinds)]
	}
	for _, s := range deploySteps {
		kind := next()
		t.Run("deploy "+kind.name+" at "+s.label, func(t *testing.T) {
			p := p.forTest(t)
			c := interruptCase{kind: kind, where: "at " + s.label, at: s.at}
			want := anyMoment
			switch {
			case s.step == "cleanup":
				want = newLive
				p.plantJunk()
				c = p.junkCase(c)
				c.where += " (removing a failed release, its `rm` held there)"
			}
			add(p.deployCase(deployClass, c, want))
		})
	}
	for _, s := range rollbackSteps {
		kind := next()
		t.Run("rollback "+kind.name+" at "+s.label, func(t *testing.T) {
			p := p.forTest(t)
			add(p.rollbackCase(rollbackClass, interruptCase{kind: kind, where: "at " + s.label, at: s.at}))
		})
	}
	for _, step := range []string{"connect", "lock", "inspect"} {
		kind := next()
		t.Run("cleanup "+kind.name+" at "+step, func(t *testing.T) {
			p := p.forTest(t)
			// Something to delete, so the run is still at it when
			// the interrupt lands.
			p.plantJunk()
			add(p.cleanupCase(cleanupClass, interruptCase{kind: kind, where: "when `" + step + "` is done", at: progressDone(step)}))
		})
	}
}

// slowReady waits until the slow command's background sleep runs.
func (p *localInterrupts) slowReady() string {
	poll(p.t, "the slow command's sleeps", func() bool {
		procs, err := testutil.ProcessesOf(nil)
		if err != nil {
			p.t.Fatal(err)
		}
		return slices.ContainsFunc(procs[testutil.Here], func(q testutil.Process) bool {
			return q.Cmdline() == "sleep 31" && p.ofRun(testutil.Here, q)
		})
	})
	return "its sleeps were running"
}

// freezeUpload waits for the upload's command to have written part of the
// big file, and stops its whole process group (its tar included) there.
func (p *localInterrupts) freezeUpload(size int64) (z *frozen, got int64) {
	partial := func() bool {
		bigs, _ := filepath.Glob(filepath.Join(p.deployTo, "releases", "*", "assets", "big.bin"))
		for _, big := range bigs {
			if got = fileSize(big); got > 0 && got < size {
				return true
			}
		}
		return false
	}
	z = freezeGroup(p.t, nil, testutil.Here, "the upload", func(q testutil.Process) bool {
		return strings.Contains(q.Cmdline(), "tar -x") && p.ofRun(testutil.Here, q)
	}, partial, func(q testutil.Process) bool {
		return strings.HasPrefix(q.Cmdline(), "tar -x")
	})
	bigs, _ := filepath.Glob(filepath.Join(p.deployTo, "releases", "*", "assets", "big.bin"))
	for _, big := range bigs {
		if n := fileSize(big); n > 0 && n < size {
			got = n
		}
	}
	return z, got
}

func writeFileAll(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}
