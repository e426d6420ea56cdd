package e2e

// docs/reliability.md: the matrix of what the fault-injection suite
// (faults_test.go) did and saw, written when SLIPWAY_WRITE_RELIABILITY is
// set (make reliability).

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-deploy/slipway/internal/testutil"
)

// reliabilityEnv turns on writing the matrix: "1" for docs/reliability.md,
// or the path of the file to write.
const reliabilityEnv = "SLIPWAY_WRITE_RELIABILITY"

// faultClasses are the sections of the matrix: each class of fault, with
// the text that introduces it.
var faultClasses = []struct{ name, intro string }{
	{"SIGKILL during a deploy", "slipway runs `deploy production --json`; the suite SIGKILLs it the moment it prints the " +
		"event named: the start of every step, and for a step run on each host the moment the first host is done " +
		"with it (the others may still be at it), in the order of a deploy without a fault, which the suite runs " +
		"first to find them (the switch, inside `rollout`, reports only its result). " +
		"Recovery: the same deploy again, as a retried CI job runs it."},
	{"SIGKILL during a rollback", "The same for `rollback production --json`. Recovery: a plain deploy of the next version."},
	{"Lost network", "host2's connection is cut by killing its sshd session processes (the commands they started " +
		"run on, as on a real network loss). The moment is pinned by freezing the session (SIGSTOP) before the cut " +
		"where it matters, so the fault lands mid-upload, inside a hook, and between the other hosts' switch and " +
		"host2's. Recovery: the same deploy again."},
	{"Artifact store", "The stage of the sections above with `artifacts.store`: a SeaweedFS S3 server on loopback, " +
		"which this machine uploads the packs to and the hosts download them from (through a relay of the suite's). " +
		"First SIGKILL at every step of `deploy production --json`, as in the first section, the store's steps " +
		"(`store packs`, and the hosts' download inside `upload`) among them. Recovery: the same deploy again. Then " +
		"the relay is closed as `store packs` starts: this machine uploads the pack, and no host can download it."},
	{"Full disk", "host2's deploy path is a 4 MiB tmpfs, mounted inside host2 only. Recovery: a deploy of a " +
		"version that fits (the operator freed space where the disk was full before the deploy)."},
	{"Interrupted deploy (SSH)", "e2e/interrupts_test.go. slipway runs `deploy production --json` on the three hosts, " +
		"each deploy directory a tmpfs of its own, with a build on this machine and TMPDIR pointed at an empty " +
		"directory. The suite interrupts it with SIGINT, SIGTERM or SIGHUP, or closes its output (stdout and stderr " +
		"on one pipe, as `2>&1 | head` has them, whose reader goes away). All four come inside a slow `before_switch` " +
		"hook that left a background child, inside a slow build on this machine, mid-upload and inside the rollout; " +
		"one of them, in turn, at the start of every other step, the moment the --json stream says it started " +
		"(a fast run may be past that step when the signal lands: the checks follow where the fleet is). " +
		"Where the moment is a command at work on a host (the upload's `tar`, the copy of unchanged files, a removal), " +
		"the suite holds that process (SIGSTOP) until slipway has sent it SIGTERM, so the interrupt lands while it " +
		"works. Right after each: slipway exited with the interrupt's code (6 inside the rollout, see Known gaps) " +
		"and said so within a second of a signal; no process of the run is left on any host (none of the deploy " +
		"user's but sshd's) or on this machine (none in TMPDIR); a watcher polling every host's processes and lock " +
		"every 2 ms saw no lock go while a process of the run (in the deploy directory, on a release, or a hook's " +
		"sleep) still ran; TMPDIR is empty; every host serves its previous release byte for byte, the new release " +
		"is gone and recorded `interrupted` (after the rollout: every host on the new release, complete); no lock " +
		"or switch link is left. Recovery: the next plain deploy, with the checks of the sections above and no work " +
		"file of a stopped write left in `.slipway`."},
	{"Interrupted rollback (SSH)", "The same for `rollback production --json`, one interrupt at the start of " +
		"each step in turn. Right after: every host on the release rolled back from or every host on its rollback " +
		"target, byte for byte (never split), and an exit code that says which: the interrupt's before the switch; " +
		"after it 5 (a step after the switch was stopped), 0 if the interrupt came when nothing was left to stop, " +
		"or 141 all the same for a closed output. Recovery: a plain deploy of the next version."},
	{"Interrupted cleanup (SSH)", "The same for `slipway cleanup production`, which has no --json: the " +
		"moments are the lines of its text progress. A failed release of 10 000 files planted on host1 gives it " +
		"something to remove; all four interrupts come while its `rm` works (held there). Right after: the live " +
		"release intact, no lock, no process. Recovery: a plain deploy, whose cleanup removes what is left."},
	{"Interrupted deploy (local)", "e2e/interrupts_local_test.go: the same interrupts at the same moments on " +
		"`hosts: [local]`, where slipway stops its hooks and its build as process groups of this machine. The " +
		"project ships a git revision: each deploy exports it into TMPDIR (`slipway-export-*`) and builds there; " +
		"the deploy directory is on /dev/shm. The upload is of a 16 MiB file."},
	{"Interrupted rollback (local)", "`rollback demo --json` on the local host, one interrupt at the start of " +
		"each step in turn, checked as on SSH hosts."},
	{"Interrupted cleanup (local)", "`slipway cleanup demo` on the local host, with a failed release of 10 000 " +
		"files to remove, checked as on SSH hosts."},
	{"Forced unlock", "e2e/lockfence_test.go. `slipway unlock --force` removes the lock of a deploy that is " +
		"still running. That deploy must never switch (the switch renames a link kept inside the lock directory) " +
		"nor delete what another run made (every change it makes is fenced by its lock's token), and at any " +
		"moment at most one run can switch. A watcher polls `current` on every host every 2 ms: it must always " +
		"point at a complete release (its `before_switch` hook ran). For the storm, each run's span from its lock " +
		"(done on host1, the primary) to its last switch or switch back (the rename, by slipway's clock) is read from its --json " +
		"events; no two may overlap."},
}

// writeReliabilityDoc writes the matrix of rows when reliabilityEnv asks
// for it, and only from a run of the whole suite in which every case held.
func writeReliabilityDoc(t *testing.T, rows []matrixRow) {
	target := os.Getenv(reliabilityEnv)
	if target == "" {
		return
	}
	if t.Failed() {
		t.Errorf("%s is set, but docs/reliability.md is not written: a case failed", reliabilityEnv)
		return
	}
	ran := map[string]bool{}
	for _, r := range rows {
		ran[r.class] = true
	}
	for _, c := range faultClasses {
		if !ran[c.name] {
			t.Errorf("%s is set, but docs/reliability.md is not written: %q did not run (run the whole suite: make reliability)", reliabilityEnv, c.name)
			return
		}
	}
	if target == "1" {
		root, err := testutil.ModuleRoot()
		if err != nil {
			t.Fatal(err)
		}
		target = filepath.Join(root, "docs", "reliability.md")
	}
	if err := os.WriteFile(target, []byte(reliabilityDoc(rows, faultClasses)), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", target)
}

// matrixRow is one line of docs/reliability.md.
type matrixRow struct {
	class    string // the section: which fault
	where    string // the step (or moment) the fault hit
	run      string // how the faulty run ended
	after    string // the fleet right after
	recovery string // the next run
	verdict  string
}

// reliabilityDoc renders the matrix, with how it was produced.
func reliabilityDoc(rows []matrixRow, classes []struct{ name, intro string }) string {
	var b strings.Builder
	b.WriteString("# Reliability: the fault-injection matrix\n\n")
	b.WriteString("Written by the fault-injection suite, `e2e/faults_test.go` (with `e2e/interrupts_test.go`,\n")
	b.WriteString("`e2e/interrupts_local_test.go` and `e2e/lockfence_test.go`); do not edit it by hand.\n")
	fmt.Fprintf(&b, "This is the output of a real run on %s of `make reliability`, that is\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	b.WriteString("`SLIPWAY_WRITE_RELIABILITY=1 go test -count=1 -timeout 10m -run '^TestFaultInjection$' ./e2e/`")
	fmt.Fprintf(&b, "\n(%s, %s, %s).\n\n", runtime.Version(), sshdVersion(), kernelVersion())
	b.WriteString(strings.ReplaceAll(docIntro, "~", "`"))
	for _, c := range classes {
		fmt.Fprintf(&b, "## %s\n\n%s\n\n", c.name, c.intro)
		b.WriteString("| fault at | the faulty run | fleet right after | recovery | invariants |\n|---|---|---|---|---|\n")
		for _, r := range rows {
			if r.class == c.name {
				fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", r.where, r.run, r.after, r.recovery, r.verdict)
			}
		}
		b.WriteString("\n")
	}
	b.WriteString(strings.ReplaceAll(docOutro, "~", "`"))
	return b.String()
}

// docIntro and docOutro are the fixed text of docs/reliability.md, with ~
// for a backtick.
const docIntro = `Every fault hits a real deploy (or rollback) of the slipway binary against real OpenSSH
servers: three hosts on loopback, each in its own mount namespace with its own ~/srv~. The
stage has shared data (~storage/~, ~.env~), a ~before_switch~ hook that writes the release id
into the release, ~after_switch~ and ~after_rollback~ hooks, and a health check. It keeps three
releases (~keep_releases: 3~), so from its third deploy on every deploy makes its release in the
directory of the release cleanup would delete (~source.recycle~): a run that fails after that
leaves that one release fewer, never the live release or the rollback target, and the checks
allow exactly that. Right after every fault the suite checks on every host:

- ~current~ is a symlink to ~releases/<id>~ that resolves to a complete release: the one live
  before, byte for byte as it was, or the new one with every shipped file byte for byte, the
  shared links, ~REVISION~ and the before_switch hook's file (it passed every pre-switch step);
- ~shared/~ is byte for byte (content and modes) what it was.

Then it runs the next plain ~slipway deploy production~ (after a killed deploy, the same deploy
again, as a retried CI job does) and checks that it succeeds without manual steps, or that its
error names the single command to run, which then succeeds; and after it, on every host:

- every host is live on one complete release, recorded as deployed;
- no unfinished or failed release, switch link (~.current.slipway-*~), lock, or manifest of a
  release that is gone is left;
- the release the host served before the recovery is kept, recorded as deployed, and is what
  ~slipway rollback~ goes back to (~previous~ in ~slipway releases~);
- ~shared/~ is still unchanged, and a lock the dead run left was taken over with a warning.

A ✓ means every check held. "unfinished release ×N": N hosts kept a release directory the
faulty run did not finish (the recovery removes it). Each simulated host has its own mount and
PID namespace, so it sees only its own files and processes, as a real server does.

`

const docOutro = `## Known gaps

Every case above holds every check. What the interrupts showed that is not what one would wish,
all of it exercised above:

- A closed output is noticed at slipway's next write to it: the cases above go on a second,
  until the slow command's next line. A hook or a build that prints nothing while it runs is
  not stopped when ~| head~ goes away, but once it ends (a remote command held silent is let
  go 1.5 s on, "not stopped"); the run is then interrupted at its next line, and cleans up.
- An interrupt inside the rollout switches every host back, and the run exits 6 (~rolled_back~,
  "went live, failed, and every host it reached was switched back"), not the interrupt's code.
- An interrupt during the cleanup that ends a deploy, after the switch, stops the removal and
  warns; the deploy succeeded, so it exits 0 (141 for a closed output). The next cleanup ends
  the removal.
- A deploy that lost its lock reports its undo, refused by the fence, as "cleanup after the
  failure also failed"; its release stays ~preparing~ until a later deploy's cleanup deletes it
  (that deploy keeps it while a process still works in it).
- A deploy that starts just as another run lost its lock in the middle of its switch can lock
  the fleet while that run has switched some hosts and not yet switched them back: it stops
  with "hosts disagree on the live release" (exit 1), and its hint names ~--force~, though the
  other run puts the fleet right within a round trip or two of that (it waits for the lock
  to come back). The storm counts these as "refused: hosts mid-switch".

Not exercised here: a host that crashes or loses power (the order of syncs around the switch
is proven in ~internal/deploy/durability_test.go~); a connection lost after a host's rename
took effect but before its answer arrived, which leaves that host on the new release while the
others are switched back, a split fleet the next deploy refuses, naming
~slipway deploy production --force~ (the refusal is exercised above); and the lock's refresher
noticing a removed lock on its own
(~lock_ttl~ is a minute at least: the forced-unlock cases meet the fence at the run's next
change instead).
`

func sshdVersion() string {
	out, _ := exec.Command("/usr/sbin/sshd", "-V").CombinedOutput()
	v, _, _ := strings.Cut(strings.TrimSpace(string(out)), ",")
	if v == "" {
		return "OpenSSH (unknown version)"
	}
	return v
}

func kernelVersion() string {
	var u syscall.Utsname
	if err := syscall.Uname(&u); err != nil {
		return "Linux"
	}
	var b strings.Builder
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b.WriteByte(byte(c))
	}
	return "Linux " + b.String()
}
