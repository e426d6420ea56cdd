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
	{"Full disk", "host2's deploy path is a 4 MiB tmpfs, mounted inside host2 only. Recovery: a deploy of a " +
		"version that fits (the operator freed space where the disk was full before the deploy)."},
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
	b.WriteString("Written by the fault-injection suite, `e2e/faults_test.go`; do not edit it by hand.\n")
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
into the release, ~after_switch~ and ~after_rollback~ hooks, and a health check. Right after
every fault the suite checks on every host:

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
faulty run did not finish (the recovery removes it). Recovery runs use ~--parallel 1~: the
simulated hosts share this machine's ~/proc~, so in parallel the cleanup on one host would
see another host's ~rm -rf~ of the same release path as a process using the release and keep
it; one host at a time, each sees only its own processes, as on real servers.

`

const docOutro = `## Known gaps

None: every case above holds every check.

Not exercised here: a host that crashes or loses power (the order of syncs around the switch
is proven in ~internal/deploy/durability_test.go~); and a connection lost after a host's rename
took effect but before its answer arrived, which leaves that host on the new release while the
others are switched back, a split fleet the next deploy refuses, naming
~slipway deploy production --force~ (the refusal is exercised above).
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
