package e2e

// The machinery of the interrupt suite (interrupts_test.go): a slipway run
// interrupted the way a person, a CI runner or a pipe does it, a watcher
// that holds the deploy lock against the processes of the run while it
// stops, and what a run may leave running on the hosts and on this
// machine.

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-deploy/slipway/internal/testutil"
	"github.com/slipway-deploy/slipway/internal/ui"
)

// interruptKind is one way a run is interrupted from outside.
type interruptKind struct {
	name string         // for the matrix
	by   string         // how slipway names it ("" for a closed output: stdout or stderr, whichever it writes first)
	code int            // the exit code it ends with
	sig  syscall.Signal // 0: the reader of slipway's output goes away
}

// interruptKinds are the four: Ctrl-C, a CI cancel, a closed terminal,
// and `slipway … 2>&1 | head -3` once head has its lines.
var interruptKinds = []interruptKind{
	{name: "SIGINT", by: "SIGINT", code: 130, sig: syscall.SIGINT},
	{name: "SIGTERM", by: "SIGTERM", code: 143, sig: syscall.SIGTERM},
	{name: "SIGHUP", by: "SIGHUP", code: 129, sig: syscall.SIGHUP},
	{name: "closed output", code: 141},
}

// interruptedRun is a slipway run the test interrupted.
type interruptedRun struct {
	code   int
	output string // stdout and stderr as read: up to the interrupt only, for a closed output
	events []ui.JSONEvent
	sent   bool          // the interrupt was sent
	took   time.Duration // from the interrupt to slipway's exit
	notice time.Duration // from the interrupt to slipway's notice of it; -1 if not seen
	// late: slipway had written its run_finished event, or had exited,
	// before the interrupt was sent (its lines are read after it writes
	// them, and a local run's last steps take milliseconds), so there was
	// nothing left to interrupt.
	late bool
}

func (r interruptedRun) String() string {
	return fmt.Sprintf("exit %d\noutput:\n%s", r.code, r.output)
}

// finished is the run's run_finished event, or nil.
func (r interruptedRun) finished() *ui.JSONEvent {
	for i := len(r.events) - 1; i >= 0; i-- {
		if r.events[i].Type == "run_finished" {
			return &r.events[i]
		}
	}
	return nil
}

// runInterrupted runs cmd (slipway) with its stdout and stderr on one pipe
// (`2>&1`), and hands each line to on as it is read, with its event when
// it is one (--json), and a function that interrupts the run as kind does:
// it sends kind's signal, or it closes the pipe, as `| head` does once it
// has its lines. on runs in the test's goroutine. runInterrupted returns
// once slipway has exited.
func runInterrupted(t *testing.T, cmd *exec.Cmd, kind interruptKind, on func(line string, e *ui.JSONEvent, interrupt func())) interruptedRun {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	// Signals reach slipway only as the test sends them.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start slipway: %v", err)
	}
	w.Close()
	exited := make(chan struct{})
	var exitedAt time.Time
	go func() {
		_ = cmd.Wait()
		exitedAt = time.Now()
		close(exited)
	}()
	// A failing test must not leave slipway running.
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	run := interruptedRun{notice: -1}
	var sentAt time.Time
	interrupt := func() {
		if run.sent {
			return
		}
		run.sent, sentAt = true, time.Now()
		if kind.sig != 0 {
			switch err := cmd.Process.Signal(kind.sig); {
			case errors.Is(err, os.ErrProcessDone):
				// slipway ended before the signal could be sent (its
				// last lines still in the pipe): nothing to interrupt.
				run.late = true
			case err != nil:
				t.Errorf("send %v to slipway: %v", kind.sig, err)
			}
			return
		}
		r.Close()
	}
	// Lines are read, and timed, as slipway writes them, while on runs.
	type timedLine struct {
		text string
		at   time.Time
	}
	lines := make(chan timedLine, 4096)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
		for sc.Scan() {
			lines <- timedLine{sc.Text(), time.Now()}
		}
	}()
	var out strings.Builder
	for l := range lines {
		out.WriteString(l.text + "\n")
		if strings.Contains(l.text, `"type":"run_finished"`) && (!run.sent || l.at.Before(sentAt)) {
			run.late = true
		}
		if run.sent && run.notice < 0 && strings.Contains(l.text, "stopping every command this run started") {
			run.notice = l.at.Sub(sentAt)
		}
		var e *ui.JSONEvent
		if strings.HasPrefix(l.text, "{") {
			e = new(ui.JSONEvent)
			if err := json.Unmarshal([]byte(l.text), e); err != nil {
				t.Errorf("slipway printed a line that is not a JSON event: %v\n%s", err, l.text)
				e = nil
			} else {
				run.events = append(run.events, *e)
			}
		}
		on(l.text, e, interrupt)
		if run.sent && kind.sig == 0 {
			// The pipe is closed: what is left to read is dropped.
			go func() {
				for range lines {
				}
			}()
			break
		}
	}
	r.Close()
	select {
	case <-exited:
	case <-time.After(2 * time.Minute):
		t.Fatalf("slipway did not exit within 2 minutes\n%s", out.String())
	}
	if run.sent {
		run.took = exitedAt.Sub(sentAt)
	}
	run.code, run.output = cmd.ProcessState.ExitCode(), out.String()
	return run
}

// runProcesses says which processes of a host (or, for testutil.Here,
// of this machine) belong to the run under test.
type runProcesses func(site string, p testutil.Process) bool

// lockWatch watches, while a run lasts, every host's deploy lock and the
// processes of the run: once the run has held a host's lock, that lock
// must not be gone while any process of the run is left, on any host or
// on this machine (its build, its local hooks).
type lockWatch struct {
	stop chan struct{}
	done chan struct{}

	mu         sync.Mutex
	violations []string
	errs       []string
	under      int // polls that saw processes of the run under a held lock
	seen       map[string]bool
	// releasing: the run's last script on a host, seen once after the
	// lock it releases was gone (see poll).
	releasing map[string]bool
}

// watchLocks starts watching: locks maps a site's name to its lock
// directory as this machine sees it.
func watchLocks(hosts []*testutil.Host, locks map[string]string, ofRun runProcesses) *lockWatch {
	w := &lockWatch{stop: make(chan struct{}), done: make(chan struct{}), seen: map[string]bool{}, releasing: map[string]bool{}}
	go func() {
		defer close(w.done)
		for {
			select {
			case <-w.stop:
				return
			default:
			}
			w.poll(hosts, locks, ofRun)
			time.Sleep(5 * time.Millisecond)
		}
	}()
	return w
}

// poll looks at the locks first, then at the processes: a process seen
// on a host after that host's lock was seen gone lived on after the lock
// went (no run but the one watched takes the lock meanwhile). A lock
// guards its own host: a run releases each host's lock with its last work
// there (cleanup, record), while other hosts may still be at theirs, and
// a new run can take only the locks of hosts this one is done with. That
// last script removes the lock itself, as its last command: it may still
// be exiting when a look at the processes comes right after the lock's
// removal, so it is let go once; seen again, it lived on.
func (w *lockWatch) poll(hosts []*testutil.Host, locks map[string]string, ofRun runProcesses) {
	gone := map[string]bool{}
	var held []string
	for site, dir := range locks {
		if _, err := os.Lstat(dir); err == nil {
			w.seen[site] = true
			held = append(held, site)
		} else if w.seen[site] {
			gone[site] = true
		}
	}
	procs, err := testutil.ProcessesOf(hosts)
	w.mu.Lock()
	defer w.mu.Unlock()
	if err != nil {
		w.errs = append(w.errs, err.Error())
		return
	}
	var left, orphaned []string
	for site, ps := range procs {
		for _, p := range ps {
			if ofRun(site, p) {
				left = append(left, siteName(site)+": "+p.Describe())
				// This machine's processes (a build, a local host's
				// commands) belong to the whole run: orphaned once no
				// lock is held anywhere.
				if gone[site] || site == testutil.Here && len(gone) > 0 && len(held) == 0 {
					key := fmt.Sprintf("%s/%d", site, p.PID)
					if gone[site] && strings.Contains(p.Cmdline(), "rm -rf -- "+deployTo+"/.slipway/lock") && !w.releasing[key] {
						w.releasing[key] = true
						continue
					}
					orphaned = append(orphaned, siteName(site)+": "+p.Describe())
				}
			}
		}
	}
	switch {
	case len(orphaned) > 0:
		slices.Sort(orphaned)
		w.violations = append(w.violations, fmt.Sprintf("a host's lock was gone while the run's %s still ran there", strings.Join(orphaned, "; ")))
	case len(left) > 0 && len(held) > 0:
		w.under++
	}
}

// finish stops watching and fails t for every lock released too early.
func (w *lockWatch) finish(t *testing.T) (under int) {
	t.Helper()
	close(w.stop)
	<-w.done
	for i, v := range w.violations {
		if i == 5 {
			t.Errorf("… and %d more", len(w.violations)-5)
			break
		}
		t.Error(v)
	}
	if len(w.errs) > 0 {
		t.Errorf("watching the hosts' processes: %s", w.errs[0])
	}
	return w.under
}

func siteName(site string) string {
	if site == testutil.Here {
		return "this machine"
	}
	return site
}

// leftRunning lists what of the run still runs: on the hosts, any process
// of the deploy user but sshd's (once slipway has exited, nothing of its
// own may run there); on this machine, what ofRun says is the run's.
func leftRunning(t *testing.T, fleet *testutil.Fleet, ofRun runProcesses) []string {
	t.Helper()
	var hosts []*testutil.Host
	if fleet != nil {
		hosts = fleet.Hosts
	}
	procs, err := testutil.ProcessesOf(hosts)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for site, ps := range procs {
		for _, p := range ps {
			remote := fleet != nil && site != testutil.Here && !p.IsSSHD() && p.UID() == fleet.UID()
			if remote || ofRun(site, p) {
				left = append(left, siteName(site)+": "+p.Describe())
			}
		}
	}
	slices.Sort(left)
	return left
}

// under reports whether path is dir or inside it.
func under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, strings.TrimSuffix(dir, "/")+"/")
}

// emptyDir fails t for each entry left in dir (slipway's TMPDIR), and
// removes it so the next case starts clean.
func emptyDir(t *testing.T, dir string) int {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("left in TMPDIR: %s", e.Name())
		_ = os.RemoveAll(filepath.Join(dir, e.Name()))
	}
	return len(entries)
}

// slowCommand is a hook or build command that does nothing unless switch
// (a shell test) holds; then it starts a background sleep, prints a line,
// and sleeps until it is stopped, printing one more line a second in: a
// closed output is noticed at slipway's next write, and this is one.
func slowCommand(what, when string) string {
	return fmt.Sprintf(`if %s; then echo %s started; sleep 31 & sleep 1; echo %s still running; sleep 30; fi`, when, what, what)
}

// isSlowSleep reports whether p is one of slowCommand's sleeps.
func isSlowSleep(p testutil.Process) bool {
	switch p.Cmdline() {
	case "sleep 31", "sleep 1", "sleep 30":
		return true
	}
	return false
}

// duration prints a duration for the matrix.
func duration(d time.Duration) string {
	if d < time.Second {
		return fmt.Sprintf("%d ms", d.Milliseconds())
	}
	return fmt.Sprintf("%.1f s", d.Seconds())
}
