//go:build unix

package host

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// startCancellable runs script on the local host in the background. The
// script writes the pid of each process it starts, then its own, one a
// line, to the file $pids; startCancellable waits for want of them and
// returns them, the cancel function and where the run's error arrives.
func startCancellable(t *testing.T, script string, want int) ([]int, context.CancelFunc, <-chan error) {
	t.Helper()
	pidFile := filepath.Join(t.TempDir(), "pids")
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	done := make(chan error, 1)
	go func() {
		_, err := NewLocal().Exec(ctx, Command{Script: "pids=" + pidFile + "\n" + script})
		done <- err
	}()
	pids := readPIDs(t, pidFile, want)
	t.Cleanup(func() {
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	return pids, cancel, done
}

// readPIDs waits for a script to write want pids to path.
func readPIDs(t *testing.T, path string, want int) []int {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		content, _ := os.ReadFile(path)
		var pids []int
		for _, line := range strings.SplitAfter(string(content), "\n") {
			if pid, err := strconv.Atoi(strings.TrimSuffix(line, "\n")); err == nil && strings.HasSuffix(line, "\n") {
				pids = append(pids, pid)
			}
		}
		if len(pids) >= want {
			return pids
		}
		if time.Now().After(deadline) {
			t.Fatalf("the script wrote %v to %s, want %d pids", pids, path, want)
		}
	}
}

// awaitStop cancels and returns the run's error and how long it took,
// failing the test when the run does not return within limit.
func awaitStop(t *testing.T, cancel context.CancelFunc, done <-chan error, limit time.Duration) (error, time.Duration) {
	t.Helper()
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		return err, time.Since(start)
	case <-time.After(limit):
		t.Fatalf("the cancelled script did not return within %v", limit)
		return nil, 0
	}
}

// requireGone fails the test for each of pids still alive (a zombie is
// dead: it waits for its parent, or a container's init, to reap it), and
// for each live process of their process group, where /proc tells.
func requireGone(t *testing.T, pids []int) {
	t.Helper()
	for _, pid := range pids {
		if processAlive(pid) {
			t.Errorf("process %d is still running after the cancelled script returned", pid)
		}
	}
	if members, err := liveMembers(pids[len(pids)-1]); err == nil && len(members) > 0 {
		t.Errorf("the script's process group still has %v", members)
	}
}

// processAlive reports whether pid runs and is not a zombie.
func processAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return !errors.Is(err, os.ErrNotExist) && runtime.GOOS != "linux"
	}
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z" && fields[0] != "X"
}

// TestLocalCancelStopsTheWholeGroup is the CI cancel of a hook: the
// script's background processes hold its output open, so stopping only sh
// would leave the run waiting for them.
func TestLocalCancelStopsTheWholeGroup(t *testing.T) {
	pids, cancel, done := startCancellable(t, "sleep 60 & echo $! >> $pids; sleep 60 & echo $! >> $pids; echo $$ >> $pids; wait", 3)
	err, took := awaitStop(t, cancel, done, 4*time.Second)
	t.Logf("stopped in %v", took)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want context.Canceled", err)
	}
	requireGone(t, pids)
}

// TestLocalCancelKillsWhatIgnoresTERM: a script that ignores SIGTERM (and
// so do the processes it starts) gets SIGKILL after StopGrace.
func TestLocalCancelKillsWhatIgnoresTERM(t *testing.T) {
	pids, cancel, done := startCancellable(t, "trap '' TERM; sleep 60 & echo $! >> $pids; echo $$ >> $pids; wait", 2)
	err, took := awaitStop(t, cancel, done, StopGrace+4*time.Second)
	t.Logf("stopped in %v", took)
	if took < StopGrace-time.Second {
		t.Errorf("stopped in %v: SIGTERM should not have stopped it before StopGrace (%v)", took, StopGrace)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want context.Canceled", err)
	}
	requireGone(t, pids)
}

// TestLocalCancelReportsWhatStillRuns: a process that left the script's
// process group (setsid) and holds its output cannot be stopped by the
// group's SIGKILL; the run says so, with a *StillRunningError, rather than
// wait for it or pretend it is gone.
func TestLocalCancelReportsWhatStillRuns(t *testing.T) {
	if _, err := exec.LookPath("setsid"); err != nil {
		t.Skip("no setsid command")
	}
	script := "setsid sh -c 'echo $$ >> $0; exec sleep 60' $pids & sleep 60 & wait"
	_, cancel, done := startCancellable(t, script, 1)
	err, took := awaitStop(t, cancel, done, 2*killWait+3*time.Second)
	t.Logf("returned in %v: %v", took, err)
	var stillRunning *StillRunningError
	if !errors.As(err, &stillRunning) {
		t.Fatalf("error %v, want a *StillRunningError", err)
	}
	if stillRunning.Host != "local" || !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "left its process group") {
		t.Errorf("error %q (host %q), want one of host local that names what still runs and is a context.Canceled", err, stillRunning.Host)
	}
}

func TestLocalRunsScriptsAsBefore(t *testing.T) {
	l := NewLocal()
	res, err := l.Query(context.Background(), Command{Script: "cat; echo out; echo err >&2", Stdin: strings.NewReader("in\n")})
	if err != nil || string(res.Stdout) != "in\nout\n" || string(res.Stderr) != "err\n" {
		t.Errorf("stdout %q, stderr %q, error %v", res.Stdout, res.Stderr, err)
	}
	var both bytes.Buffer
	if _, err := l.Exec(context.Background(), Command{Script: "echo 1; echo 2 >&2; echo 3", Stdout: &both, Stderr: &both}); err != nil || both.String() != "1\n2\n3\n" {
		t.Errorf("one writer for both streams got %q (error %v), want the lines in order", both.String(), err)
	}
	_, err = l.Exec(context.Background(), Command{Script: "echo bad >&2; exit 7"})
	var exitErr *ExitError
	if !errors.As(err, &exitErr) || exitErr.Code != 7 || exitErr.Host != "local" || string(exitErr.Stderr) != "bad\n" {
		t.Errorf("error %#v, want an *ExitError with code 7", err)
	}
	// A script that does not read its input still finishes.
	big := strings.NewReader(strings.Repeat("x", 1<<20))
	if _, err := l.Exec(context.Background(), Command{Script: "exit 0", Stdin: big}); err != nil {
		t.Errorf("a script that ignores its input: %v", err)
	}
}
