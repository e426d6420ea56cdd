package source

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestRunBuildStreamsInOrder(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	err := RunBuild(context.Background(), dir, []string{
		"echo one; echo two >&2; echo three",
		`printf '%s\n' "$SLIPWAY_BUILD_DIR"; pwd -P`,
	}, &out)
	if err != nil {
		t.Fatal(err)
	}
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := "$ echo one; echo two >&2; echo three\none\ntwo\nthree\n" +
		`$ printf '%s\n' "$SLIPWAY_BUILD_DIR"; pwd -P` + "\n" + dir + "\n" + real + "\n"
	if out.String() != want {
		t.Errorf("output:\n%s\nwant:\n%s", out.String(), want)
	}
}

// signalWriter creates a file once it has seen a word, so a command can
// wait for its earlier output to have arrived.
type signalWriter struct {
	mu   sync.Mutex
	buf  bytes.Buffer
	word string
	file string
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if strings.Contains(w.buf.String(), w.word) {
		if err := os.WriteFile(w.file, nil, 0o644); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func TestRunBuildStreamsAsItComes(t *testing.T) {
	dir := t.TempDir()
	out := &signalWriter{word: "first", file: filepath.Join(dir, "seen")}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The command goes on only once "first" has reached out: output
	// held back until the command ends would never get there.
	err := RunBuild(ctx, dir, []string{"echo first; while [ ! -e seen ]; do sleep 0.01; done; echo second"}, out)
	if err != nil {
		t.Fatalf("%v (output so far: %q)", err, out.buf.String())
	}
	if !strings.HasSuffix(out.buf.String(), "first\nsecond\n") {
		t.Errorf("output %q", out.buf.String())
	}
}

func TestRunBuildFailure(t *testing.T) {
	var out bytes.Buffer
	failing := "for i in $(seq 1 30); do echo line$i; done; echo oops >&2; exit 3"
	err := RunBuild(context.Background(), t.TempDir(), []string{"echo ok", failing, "echo never"}, &out)
	var buildErr *BuildError
	if !errors.As(err, &buildErr) {
		t.Fatalf("error %v, want a *BuildError", err)
	}
	if buildErr.Command != failing || buildErr.Status != "exit status 3" {
		t.Errorf("command %q status %q", buildErr.Command, buildErr.Status)
	}
	if len(buildErr.Tail) != buildTailLines || buildErr.Tail[0] != "line12" || buildErr.Tail[buildTailLines-1] != "oops" {
		t.Errorf("tail %q, want line12 … line30, oops", buildErr.Tail)
	}
	for _, part := range []string{failing, "exit status 3", "line30\n  oops"} {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not contain %q", err, part)
		}
	}
	if strings.Contains(out.String(), "never") {
		t.Error("the build went on after a failing command")
	}
}

func TestBuildTail(t *testing.T) {
	tail := &tailWriter{w: &bytes.Buffer{}}
	fmt.Fprintf(tail, "progress 10%%\rprogress 100%%\r\n%s\n", strings.Repeat("x", 1000))
	for range 20000 {
		fmt.Fprintln(tail, "noise")
	}
	fmt.Fprint(tail, "last line without newline")
	lines := tail.lines(3)
	if len(lines) != 3 || lines[0] != "noise" || lines[2] != "last line without newline" {
		t.Errorf("lines %q", lines)
	}
	tail = &tailWriter{w: &bytes.Buffer{}}
	fmt.Fprintf(tail, "progress 10%%\rprogress 100%%\r\n%s\n", strings.Repeat("x", 1000))
	lines = tail.lines(20)
	if len(lines) != 2 || lines[0] != "progress 100%" || lines[1] != strings.Repeat("x", 300)+"…" {
		t.Errorf("lines %q", lines)
	}
}

func TestRunBuildCancelKillsProcessGroup(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		// The child in the background stands for what npm starts.
		done <- RunBuild(ctx, dir, []string{"sleep 30 & echo $! > child.pid; sleep 30"}, &bytes.Buffer{})
	}()
	pidFile := filepath.Join(dir, "child.pid")
	var child int
	for deadline := time.Now().Add(5 * time.Second); child == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the build command did not start")
		}
		content, _ := os.ReadFile(pidFile)
		child, _ = strconv.Atoi(strings.TrimSpace(string(content)))
	}
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("error %v, want context.Canceled", err)
		}
		if !strings.Contains(err.Error(), "sleep 30") {
			t.Errorf("error %v does not name the command", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("RunBuild did not return promptly after cancel")
	}
	t.Logf("stopped in %v", time.Since(start))
	for deadline := time.Now().Add(2 * time.Second); alive(child); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			syscall.Kill(child, syscall.SIGKILL)
			t.Fatalf("the command's child %d survived the cancel", child)
		}
	}
	err := RunBuild(ctx, dir, []string{"echo never"}, &bytes.Buffer{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("build with a cancelled context: %v", err)
	}
}

// alive reports whether pid is a running process (zombies, which only
// wait for their parent to reap them, count as dead).
func alive(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return syscall.Kill(pid, 0) == nil
	}
	// The state follows the command name in parentheses.
	fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}
