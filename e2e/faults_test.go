package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-deploy/slipway/internal/testutil"
	"github.com/slipway-deploy/slipway/internal/ui"
)

// The fault-injection suite (issue 7): slipway killed at every step of a
// deploy and of a rollback, a host's connection lost mid-upload, mid-hook
// and at the switch, a host's disk full. The invariants: whatever the fault,
// current never dangles on any host and points at a complete release (the
// one live before, or the new one with every pre-switch step done), and
// shared/ is never changed (checkAfterFault); the next plain deploy then
// recovers without manual steps, or names the one command that does
// (recover, checkRecovered). With SLIPWAY_WRITE_RELIABILITY set, the suite
// writes the matrix of what it did and saw to docs/reliability.md (or to
// the path the variable gives): `make reliability`, and
// reliability_doc_test.go.

func TestFaultInjection(t *testing.T) {
	var rows []matrixRow
	add := func(r matrixRow) { rows = append(rows, r) }
	t.Run("Kill", func(t *testing.T) { faultKill(t, add) })
	t.Run("Network", func(t *testing.T) { faultNetwork(t, add) })
	t.Run("Disk", func(t *testing.T) { faultDisk(t, add) })
	t.Run("Interrupt", func(t *testing.T) { faultInterrupt(t, add) })
	t.Run("Lock", func(t *testing.T) { faultLock(t, add) })
	t.Run("Store", func(t *testing.T) { faultStore(t, add) })
	writeReliabilityDoc(t, rows)
}

// verdict is the matrix's last column for the case t checked.
func verdict(t *testing.T) string {
	if t.Failed() {
		return "✗"
	}
	return "✓"
}

// killPoint is a moment of a run, named by the event that marks it.
type killPoint struct {
	label string
	match func(e ui.JSONEvent) bool
}

// killPoints lists every step of a run in order, from the events of a run
// without a fault: the start of each step and, for a step run on each
// host, the moment the first host is done with it while the others may
// still be at it (the deploy's switch, inside the rollout, has only that).
func killPoints(t *testing.T, run watchedRun) []killPoint {
	t.Helper()
	if run.code != 0 {
		t.Fatalf("the run without a fault failed:\n%s", run.result)
	}
	var points []killPoint
	seen := map[string]bool{}
	for _, e := range run.events {
		step := e.Step
		switch {
		case e.Type == "step_started" && !seen["start "+step]:
			seen["start "+step] = true
			points = append(points, killPoint{"`" + step + "` started", func(e ui.JSONEvent) bool {
				return e.Type == "step_started" && e.Step == step
			}})
		case e.Type == "step_finished" && e.Host != "" && !seen["done "+step]:
			seen["done "+step] = true
			points = append(points, killPoint{"`" + step + "` done on the first host", func(e ui.JSONEvent) bool {
				return e.Type == "step_finished" && e.Step == step && e.Host != ""
			}})
		}
	}
	return points
}

func labels(points []killPoint) []string {
	var out []string
	for _, p := range points {
		out = append(out, p.label)
	}
	return out
}

func newFaultFleet(t *testing.T) *faultFleet {
	// Each host has its own process table, as real servers do: cleanup
	// on one host must not see another's rm -rf of the same release path
	// (ids are the same fleet-wide) as a process using the release.
	return &faultFleet{project: newProject(t, 3, testutil.Options{}), roots: map[string]string{}, version: new(int)}
}

// liveTrees records the content of the release each host serves.
func (f *faultFleet) liveTrees(states map[string]hostState) map[string]map[string]string {
	out := map[string]map[string]string{}
	for _, h := range f.fleet.Hosts {
		out[h.Name] = f.tree(h, states[h.Name].live)
	}
	return out
}

func allReleases(states map[string]hostState) []string {
	var out []string
	for _, s := range states {
		out = append(out, s.releases...)
	}
	return out
}

func faultKill(t *testing.T, add func(matrixRow)) {
	f := newFaultFleet(t)
	f.config(faultConfig(nil, ""))
	f.seed()

	// A deploy and a rollback without a fault name every step, in order.
	f.nextVersion()
	deploySteps := killPoints(t, f.runWatched(nil, "deploy", "production", "--json"))
	rollbackSteps := killPoints(t, f.runWatched(nil, "rollback", "production", "--json"))
	for _, want := range []string{"`lock` started", "`upload` started", "`link shared` started", "`sync` started", "`rollout` started", "`switch` done on the first host", "`health` started", "`record` started", "`cleanup` started"} {
		if !slices.Contains(labels(deploySteps), want) {
			t.Fatalf("a deploy has no %s; its steps: %v", want, labels(deploySteps))
		}
	}
	for _, want := range []string{"`lock` started", "`switch` started", "`record` started"} {
		if !slices.Contains(labels(rollbackSteps), want) {
			t.Fatalf("a rollback has no %s; its steps: %v", want, labels(rollbackSteps))
		}
	}
	f.nextVersion()
	f.mustRun("deploy", "production")

	const class = "SIGKILL during a deploy"
	for _, kp := range deploySteps {
		t.Run("deploy "+kp.label, func(t *testing.T) {
			add(f.forTest(t).killDeploy(class, kp))
		})
	}
	// A rolling rollout pauses between batches: killed there, the fleet is
	// split between the new release and the old.
	t.Run("deploy rolling", func(t *testing.T) {
		g := f.forTest(t)
		g.config(faultConfig(nil, "rollout:\n  strategy: rolling\n  batch: 1\n  pause: 2s\n"))
		defer g.config(faultConfig(nil, ""))
		kp := killPoint{"`switch` done on host1, rolling rollout (batch 1, 2s pause)", func(e ui.JSONEvent) bool {
			return e.Type == "step_finished" && e.Step == "switch" && e.Host == "host1"
		}}
		row := g.killDeploy(class, kp)
		if !strings.Contains(row.recovery, forceCommand) {
			t.Errorf("the fleet was not split, or the recovery did not need %s: %s", forceCommand, row.recovery)
		}
		add(row)
	})

	const rbClass = "SIGKILL during a rollback"
	for _, kp := range rollbackSteps {
		t.Run("rollback "+kp.label, func(t *testing.T) {
			add(f.forTest(t).killRollback(rbClass, kp))
		})
	}
	// One host at a time, the rollback is killed with host1 switched back
	// and the others not.
	t.Run("rollback one host at a time", func(t *testing.T) {
		kp := killPoint{"`switch` done on host1, `--parallel 1` (one host at a time)", func(e ui.JSONEvent) bool {
			return e.Type == "step_finished" && e.Step == "switch" && e.Host == "host1"
		}}
		row := f.forTest(t).killRollback(rbClass, kp, "--parallel", "1")
		if !strings.Contains(row.recovery, forceCommand) {
			t.Errorf("the fleet was not split, or the recovery did not need %s: %s", forceCommand, row.recovery)
		}
		add(row)
	})
}

// faultStore runs the deploy's kill points again with the artifact store
// on (artifacts.store, a real S3 server), whose steps (store packs, the
// hosts' download in the upload) are among them; then it takes the store
// away from the hosts after this machine uploaded the pack: every host
// falls back to a push and the deploy goes live all the same.
func faultStore(t *testing.T, add func(matrixRow)) {
	s3 := testutil.StartS3(t)
	// The hosts reach the store through a relay the test can close; this
	// machine reaches it directly.
	hostsWay := s3.Relay(t)
	f := newFaultFleet(t)
	f.project = f.withEnv(s3.Env()...)
	stage := faultConfig(nil, storeConfig(s3, "faults", s3.Endpoint, hostsWay.Endpoint))
	f.config(stage)
	f.seed()

	f.nextVersion()
	run := f.runWatched(nil, "deploy", "production", "--json")
	if n := run.count("info", "upload from the artifact store"); n != len(f.fleet.Hosts) {
		t.Fatalf("%d of %d hosts downloaded from the store:\n%s", n, len(f.fleet.Hosts), run.result)
	}
	deploySteps := killPoints(t, run)
	for _, want := range []string{"`store packs` started", "`upload` started", "`upload` done on the first host", "`link shared` started", "`sync` started"} {
		if !slices.Contains(labels(deploySteps), want) {
			t.Fatalf("a deploy through the store has no %s; its steps: %v", want, labels(deploySteps))
		}
	}
	f.nextVersion()
	f.mustRun("deploy", "production")

	for _, kp := range deploySteps {
		t.Run("deploy "+kp.label, func(t *testing.T) {
			add(f.forTest(t).killDeploy(storeKillClass, kp))
		})
	}

	t.Run("store lost to the hosts", func(t *testing.T) {
		f := f.forTest(t)
		before := f.states()
		f.nextVersion()
		run := f.runWatched(func(e ui.JSONEvent, _ func()) {
			if e.Type == "step_started" && e.Step == "store packs" {
				hostsWay.Stop()
			}
		}, "deploy", "production", "--json")
		t.Logf("the deploy whose hosts lost the store: exit %d\n%s", run.code, run.stderr)
		if run.code != 0 {
			t.Errorf("the deploy failed; want every host pushed its upload instead:\n%s", run.result)
		}
		if n := run.count("warning", "could not download its pack"); n != len(f.fleet.Hosts) {
			t.Errorf("%d of %d hosts said they could not download their pack:\n%s", n, len(f.fleet.Hosts), run.result)
		}
		live := f.state(f.fleet.Hosts[0]).live
		f.checkAfterFault(fleetWide(map[string]func(*testutil.Host) map[string]string{
			live: func(h *testutil.Host) map[string]string { return f.wantTree(h, live) },
		}))
		f.checkRecovered(before)
		outcome := run.outcome() + "; a warning per host: could not download its pack, pushing its upload over SSH instead"
		after := f.states()
		desc := describe(f.fleet.Hosts, after, map[string]string{live: "the new release"}, allReleases(before))
		add(matrixRow{class: storeKillClass, where: "the hosts' way to the store closed as `store packs` starts (this machine uploads the pack; no host can download it)",
			run: outcome, after: desc, recovery: "none needed", verdict: verdict(t)})
	})
}

// storeKillClass is the matrix's section of faultStore.
const storeKillClass = "Artifact store"

// killDeploy deploys the next version, SIGKILLs slipway at kp, checks the
// fleet, and recovers by running the same deploy again.
func (f *faultFleet) killDeploy(class string, kp killPoint) matrixRow {
	t := f.t
	before := f.states()
	old := before[f.fleet.Hosts[0].Name].live
	oldTrees := f.liveTrees(before)
	f.nextVersion()
	run := f.runWatched(func(e ui.JSONEvent, kill func()) {
		if kp.match(e) {
			kill()
		}
	}, "deploy", "production", "--json")
	if !run.killed {
		t.Fatalf("the deploy never reached %s:\n%s", kp.label, run.result)
	}
	f.waitQuiet()
	after := f.states()
	allowed := map[string]func(*testutil.Host) map[string]string{
		old: func(h *testutil.Host) map[string]string { return oldTrees[h.Name] },
	}
	names := map[string]string{old: "the previous release"}
	for _, s := range after {
		if id := s.live; id != old && id != "" {
			allowed[id] = func(h *testutil.Host) map[string]string { return f.wantTree(h, id) }
			names[id] = "the new release"
		}
	}
	f.checkAfterFault(fleetWide(allowed))
	desc := describe(f.fleet.Hosts, after, names, allReleases(before))
	recovery := f.recover(after)
	f.checkRecovered(after)
	return matrixRow{class: class, where: kp.label, run: "SIGKILL", after: desc, recovery: recovery, verdict: verdict(t)}
}

// killRollback rolls back (with more flags), SIGKILLs slipway at kp,
// checks the fleet, and recovers by deploying the next version.
func (f *faultFleet) killRollback(class string, kp killPoint, flags ...string) matrixRow {
	t := f.t
	before := f.states()
	from := before[f.fleet.Hosts[0].Name].live
	trees := f.trees()
	// Each host rolls back to its own newest release older than the live
	// one that went live: after a recovery from a split fleet, hosts can
	// differ there (the split's odd hosts keep the release they served).
	rollbackTo := map[string]string{}
	names := map[string]string{from: "the release rolled back from"}
	for _, h := range f.fleet.Hosts {
		for _, id := range before[h.Name].releases {
			if id < from && f.metaState(h, id) == "deployed" {
				rollbackTo[h.Name] = id
			}
		}
		if rollbackTo[h.Name] == "" {
			t.Fatalf("%s: no release to roll back to from %s: %v", h.Name, from, before)
		}
		names[rollbackTo[h.Name]] = "the rollback target"
	}
	run := f.runWatched(func(e ui.JSONEvent, kill func()) {
		if kp.match(e) {
			kill()
		}
	}, append([]string{"rollback", "production", "--json"}, flags...)...)
	if !run.killed {
		t.Fatalf("the rollback never reached %s:\n%s", kp.label, run.result)
	}
	f.waitQuiet()
	after := f.states()
	f.checkAfterFault(func(h *testutil.Host, id string) (map[string]string, bool) {
		if id != from && id != rollbackTo[h.Name] {
			return nil, false
		}
		return trees[h.Name][id], true
	})
	desc := describe(f.fleet.Hosts, after, names, allReleases(before))
	f.nextVersion()
	recovery := f.recover(after)
	f.checkRecovered(after)
	return matrixRow{class: class, where: kp.label, run: "SIGKILL", after: desc, recovery: recovery, verdict: verdict(t)}
}

// waitHook is a before_switch hook that holds each host until the test
// creates $HOME/faults-go there.
const waitHook = `'echo waiting for the test; while [ ! -e "$HOME/faults-go" ]; do sleep 0.02; done'`

func letGo(t *testing.T, hosts ...*testutil.Host) {
	t.Helper()
	for _, h := range hosts {
		if err := os.WriteFile(filepath.Join(h.UserHome, "faults-go"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func holdAgain(t *testing.T, hosts ...*testutil.Host) {
	t.Helper()
	for _, h := range hosts {
		if err := os.Remove(filepath.Join(h.UserHome, "faults-go")); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
}

func faultNetwork(t *testing.T, add func(matrixRow)) {
	f := newFaultFleet(t)
	f.config(faultConfig(nil, ""))
	f.seed()
	host1, host2, host3 := f.fleet.Hosts[0], f.fleet.Hosts[1], f.fleet.Hosts[2]
	const class = "Lost network"

	t.Run("mid-upload", func(t *testing.T) {
		f := f.forTest(t)
		before := f.states()
		oldTrees := f.liveTrees(before)
		f.nextVersion()
		const bigSize = 32 << 20
		f.writeRandom("app/assets/big.bin", bigSize)
		var got int64 = -1
		run := f.runWatched(func(e ui.JSONEvent, _ func()) {
			if e.Type != "step_started" || e.Step != "upload" || e.Host != host2.Name || got >= 0 {
				return
			}
			var big string
			waitFor(t, 30*time.Second, "the upload reaching host2", func() bool {
				for _, id := range f.state(host2).releases {
					if !slices.Contains(before[host2.Name].releases, id) {
						big = f.path(host2, deployTo+"/releases/"+id+"/assets/big.bin")
						return fileSize(big) > 0
					}
				}
				return false
			})
			signalSessions(t, host2, syscall.SIGSTOP)
			got = fileSize(big)
			host2.KillSessions(t)
		}, "deploy", "production", "--json")
		if got < 0 || got >= bigSize {
			t.Errorf("host2 had %d of %d bytes of the big file when its connection was cut: not mid-upload", got, bigSize)
		}
		where := fmt.Sprintf("host2 mid-upload (cut after %.1f of %d MiB)", float64(got)/(1<<20), bigSize>>20)
		add(f.networkCase(class, where, run, before, oldTrees, "host2: upload"))
	})

	t.Run("mid-hook", func(t *testing.T) {
		f := f.forTest(t)
		f.config(faultConfig([]string{waitHook}, ""))
		defer f.config(faultConfig(nil, ""))
		defer holdAgain(t, f.fleet.Hosts...)
		before := f.states()
		oldTrees := f.liveTrees(before)
		f.nextVersion()
		cut := false
		run := f.runWatched(func(e ui.JSONEvent, _ func()) {
			if e.Type == "output" && e.Host == host2.Name && strings.Contains(e.Line, "waiting for the test") && !cut {
				cut = true
				host2.KillSessions(t)
				letGo(t, f.fleet.Hosts...)
			}
		}, "deploy", "production", "--json")
		if !cut {
			t.Errorf("the hook never ran on host2:\n%s", run.result)
		}
		add(f.networkCase(class, "host2 inside a `before_switch` hook", run, before, oldTrees, "host2: before_switch: echo waiting"))
	})

	t.Run("at-switch", func(t *testing.T) {
		f := f.forTest(t)
		f.config(faultConfig([]string{waitHook}, ""))
		defer f.config(faultConfig(nil, ""))
		defer holdAgain(t, f.fleet.Hosts...)
		before := f.states()
		old := before[host1.Name].live
		oldTrees := f.liveTrees(before)
		f.nextVersion()
		// The hook holds every host; host1 and host3 go on and are
		// frozen once done, so the sync step can finish on host2 only;
		// host2 is frozen then, and host1 and host3 go on to switch.
		// host2's rename waits in its frozen connection, which is cut
		// once host1 and host3 are live on the new release.
		waiting, hookDone := map[string]bool{}, map[string]bool{}
		phase := 0
		run := f.runWatched(func(e ui.JSONEvent, _ func()) {
			switch {
			case phase == 0 && e.Type == "output" && strings.Contains(e.Line, "waiting for the test"):
				waiting[e.Host] = true
				if len(waiting) == 3 {
					letGo(t, host1, host3)
					phase = 1
				}
			case phase == 1 && e.Type == "step_finished" && strings.HasPrefix(e.Step, "before_switch: echo waiting") && e.Host != host2.Name:
				hookDone[e.Host] = true
				if len(hookDone) == 2 {
					signalSessions(t, host1, syscall.SIGSTOP)
					signalSessions(t, host3, syscall.SIGSTOP)
					letGo(t, host2)
					phase = 2
				}
			case phase == 2 && e.Type == "step_finished" && e.Step == "sync" && e.Host == host2.Name:
				signalSessions(t, host2, syscall.SIGSTOP)
				signalSessions(t, host1, syscall.SIGCONT)
				signalSessions(t, host3, syscall.SIGCONT)
				waitFor(t, 30*time.Second, "host1 and host3 switching", func() bool {
					return f.state(host1).live != old && f.state(host3).live != old
				})
				host2.KillSessions(t)
				phase = 3
			}
		}, "deploy", "production", "--json")
		if phase != 3 {
			t.Fatalf("the run did not get to the switch as planned (phase %d):\n%s", phase, run.result)
		}
		row := f.networkCase(class, "host2 at the switch (host1 and host3 switched, host2's rename in flight)", run, before, oldTrees, "host2: switch")
		// The fleet switch's rollback path: host1 and host3 went back.
		fin := run.finished()
		if run.code != 6 || fin == nil || fin.Outcome != "rolled_back" {
			t.Errorf("want exit 6, outcome rolled_back; got exit %d:\n%s", run.code, run.result)
		} else {
			for _, r := range fin.Results {
				if r.RolledBack != (r.Host != host2.Name) {
					t.Errorf("%s: rolled_back = %v", r.Host, r.RolledBack)
				}
			}
		}
		row.verdict = verdict(t)
		add(row)
	})
}

// networkCase checks a run whose connection to host2 was lost: a clean
// failure naming host2 (and step), every host on its previous release
// (host2 possibly on the complete new one, if its switch went through
// before the cut), then recovers with the same deploy.
func (f *faultFleet) networkCase(class, where string, run watchedRun, before map[string]hostState, oldTrees map[string]map[string]string, names string) matrixRow {
	t := f.t
	t.Logf("the run that lost host2: exit %d\n%s", run.code, run.stderr)
	old := before[f.fleet.Hosts[0].Name].live
	if run.code == 0 || run.killed {
		t.Errorf("want a failure; got exit %d:\n%s", run.code, run.result)
	}
	if !strings.Contains(run.stderr, names) {
		t.Errorf("the failure does not name %q:\n%s", names, run.stderr)
	}
	after := f.states()
	allowed := map[string]func(*testutil.Host) map[string]string{
		old: func(h *testutil.Host) map[string]string { return oldTrees[h.Name] },
	}
	for _, h := range f.fleet.Hosts {
		s := after[h.Name]
		if s.live != old && h.Name != "host2" {
			t.Errorf("%s: live on %s after the failure, want the previous release %s", h.Name, s.live, old)
		}
		if h.Name != "host2" && (!keptReleases(before[h.Name], s) || s.locked || len(s.tempLinks) > 0) {
			t.Errorf("%s: the failed run left releases %v (before: %v), lock %v, switch links %v", h.Name, s.releases, before[h.Name].releases, s.locked, s.tempLinks)
		}
		if id := s.live; id != old {
			allowed[id] = func(h *testutil.Host) map[string]string { return f.wantTree(h, id) }
		}
	}
	f.checkAfterFault(fleetWide(allowed))
	outcome := run.outcome() + "; the error names `" + names + "`"
	desc := describe(f.fleet.Hosts, after, map[string]string{old: "the previous release"}, allReleases(before))
	recovery := f.recover(after)
	f.checkRecovered(after)
	return matrixRow{class: class, where: where, run: outcome, after: desc, recovery: recovery, verdict: verdict(t)}
}

func faultDisk(t *testing.T, add func(matrixRow)) {
	f := newFaultFleet(t)
	host2 := f.fleet.Hosts[1]
	const size = 4 << 20
	f.roots[host2.Name] = mountTmpfs(t, host2, deployTo, size)
	f.config(faultConfig(nil, ""))
	f.seed()
	const class = "Full disk"
	fill := deployTo + "/filler"

	t.Run("upload", func(t *testing.T) {
		f := f.forTest(t)
		add(f.diskCase(class, "`upload`: a 6 MiB file for a 4 MiB disk", "host2: upload", func() {
			f.nextVersion()
			f.writeRandom("app/assets/big.bin", 6<<20)
		}))
	})

	t.Run("create release", func(t *testing.T) {
		f := f.forTest(t)
		// A live release of 2.5 MiB: a new one that keeps that file
		// copies it on the host first (delta), or uploads it (full).
		f.nextVersion()
		f.writeRandom("app/assets/big.bin", 5<<19)
		big := readFile(t, filepath.Join(f.dir, "app/assets/big.bin"))
		f.mustRun("deploy", "production")
		step, where := "host2: create release", "`create release`: copying a 2.5 MiB file of the live release"
		if uploadMode() != "" {
			step, where = "host2: upload", "`upload`: a release with a 2.5 MiB file beside a live one"
		}
		add(f.diskCase(class, where, step, func() {
			f.nextVersion()
			f.write("app/assets/big.bin", big)
		}))
	})

	t.Run("full before the deploy", func(t *testing.T) {
		f := f.forTest(t)
		f.nextVersion()
		f.mustRun("deploy", "production")
		row := f.diskCase(class, "`lock`: the disk was full before the deploy started", "host2: lock", func() {
			f.nextVersion()
			host2.Run(t, "dd if=/dev/zero of="+fill+" bs=64k 2>/dev/null; test -s "+fill)
		})
		add(row)
	})
}

// diskCase makes the deploy prepare sets up fail on host2's full disk: a
// clean failure before any switch naming host2 and step, every host still
// on its previous release, nothing of the new release left on any host
// (and host2's disk as full as before), then recovers with a deploy of a
// version that fits.
func (f *faultFleet) diskCase(class, where, step string, prepare func()) matrixRow {
	t := f.t
	host2 := f.fleet.Hosts[1]
	before := f.states()
	old := before[f.fleet.Hosts[0].Name].live
	oldTrees := f.liveTrees(before)
	prepare()
	filled := usedBytes(t, f.path(host2, deployTo))
	res := f.run("deploy", "production")
	t.Logf("the deploy that filled host2's disk:\n%s", res)
	if res.code != 1 || !strings.Contains(res.stderr, step) || !strings.Contains(res.stderr, "No space left on device") {
		t.Errorf("want exit 1 naming %q and the full disk; got:\n%s", step, res)
	}
	if !strings.Contains(res.stderr, "no host was switched") {
		t.Errorf("the failure does not say no host was switched:\n%s", res.stderr)
	}
	after := f.states()
	f.checkAfterFault(fleetWide(map[string]func(*testutil.Host) map[string]string{
		old: func(h *testutil.Host) map[string]string { return oldTrees[h.Name] },
	}))
	for _, h := range f.fleet.Hosts {
		s := after[h.Name]
		if !keptReleases(before[h.Name], s) || s.locked || len(s.tempLinks) > 0 {
			t.Errorf("%s: the failed deploy left releases %v (before: %v), lock %v, switch links %v", h.Name, s.releases, before[h.Name].releases, s.locked, s.tempLinks)
		}
	}
	// The failed release's metadata stays (history shows the failure).
	if now := usedBytes(t, f.path(host2, deployTo)); now > filled+16<<10 {
		t.Errorf("host2: %d bytes in use after the failure, %d before the deploy: the partial release was not removed", now, filled)
	}
	desc := describe(f.fleet.Hosts, after, map[string]string{old: "the previous release"}, allReleases(before))
	host2.Run(t, "rm -f "+deployTo+"/filler")
	f.nextVersion()
	recovery := f.recover(after)
	f.checkRecovered(after)
	return matrixRow{class: class, where: where, run: "exit 1 (failed); the error names `" + step + "` and `No space left on device`", after: desc, recovery: recovery, verdict: verdict(t)}
}
