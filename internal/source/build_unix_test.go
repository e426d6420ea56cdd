//go:build unix

package source

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-deploy/slipway/internal/host"
)

// cancelBuild runs command as a build, waits until it has written want
// pids to the file pids in the build directory, cancels, and returns the
// pids, the build's error and how long it took to return.
func cancelBuild(t *testing.T, command string, want int, limit time.Duration) ([]int, error, time.Duration) {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- RunBuild(ctx, dir, []string{command}, &bytes.Buffer{}) }()
	var pids []int
	for deadline := time.Now().Add(5 * time.Second); len(pids) < want; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the build command wrote pids %v, want %d", pids, want)
		}
		content, _ := os.ReadFile(filepath.Join(dir, "pids"))
		pids = nil
		for _, line := range strings.SplitAfter(string(content), "\n") {
			if pid, err := strconv.Atoi(strings.TrimSuffix(line, "\n")); err == nil && strings.HasSuffix(line, "\n") {
				pids = append(pids, pid)
			}
		}
	}
	t.Cleanup(func() {
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		took := time.Since(start)
		t.Logf("stopped in %v", took)
		for _, pid := range pids {
			if alive(pid) {
				t.Errorf("process %d of the build survived its return", pid)
			}
		}
		return pids, err, took
	case <-time.After(limit):
		t.Fatalf("RunBuild did not return within %v of the cancel", limit)
		return nil, nil, 0
	}
}

func TestRunBuildCancelStopsEveryProcessAtOnce(t *testing.T) {
	_, err, _ := cancelBuild(t, "sleep 60 & echo $! >> pids; sleep 60 & echo $! >> pids; echo $$ >> pids; wait", 3, 3*time.Second)
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "stopped") {
		t.Errorf("error %v, want a stopped build command and context.Canceled", err)
	}
}

func TestRunBuildCancelKillsWhatIgnoresTERM(t *testing.T) {
	_, err, took := cancelBuild(t, "trap '' TERM; sleep 60 & echo $! >> pids; echo $$ >> pids; wait", 2, host.StopGrace+4*time.Second)
	if took < host.StopGrace-time.Second {
		t.Errorf("stopped in %v, before SIGKILL was due (%v)", took, host.StopGrace)
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want context.Canceled", err)
	}
}

// TestRunBuildDoesNotWaitForABuildServer: a command that succeeds but
// leaves a process holding its output (a build server) ends the build step
// after the wait delay, successfully, with its output.
func TestRunBuildDoesNotWaitForABuildServer(t *testing.T) {
	var out bytes.Buffer
	dir := t.TempDir()
	start := time.Now()
	err := RunBuild(context.Background(), dir, []string{"sleep 30 & echo $! > server.pid; echo built"}, &out)
	took := time.Since(start)
	if content, _ := os.ReadFile(filepath.Join(dir, "server.pid")); len(content) > 0 {
		if pid, _ := strconv.Atoi(strings.TrimSpace(string(content))); pid > 0 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	if err != nil || !strings.Contains(out.String(), "built\n") || took > 15*time.Second {
		t.Errorf("error %v after %v, output %q", err, took, out.String())
	}
}
