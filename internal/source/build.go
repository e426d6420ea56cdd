package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/slipway-deploy/slipway/internal/host"
)

// buildTailLines is how much of a failed command's output its error keeps.
const buildTailLines = 20

// BuildError is a build command that failed.
type BuildError struct {
	Command string
	Status  string   // "exit status 2", "signal: killed"
	Tail    []string // its last lines of output (stdout and stderr)
}

func (e *BuildError) Error() string {
	msg := fmt.Sprintf("build command %q failed (%s)", e.Command, e.Status)
	if len(e.Tail) == 0 {
		return msg + " without output"
	}
	return msg + "; its last lines of output:\n  " + strings.Join(e.Tail, "\n  ")
}

// RunBuild runs each command with the shell (sh -c; cmd.exe /C on Windows)
// in dir, one after another, with the environment of slipway plus
// SLIPWAY_BUILD_DIR=dir. Each command is announced on out as "$ command",
// then its stdout and stderr are written there as they come. The first
// failing command stops the build with a *BuildError. Cancelling ctx
// stops the running command and every process it started (its process
// group: SIGTERM, then SIGKILL), so a cancelled npm run build stops whole,
// and RunBuild returns once they are gone (host.RunGroup); on Windows only
// the command's own process is killed.
func RunBuild(ctx context.Context, dir string, commands []string, out io.Writer) error {
	if out == nil {
		out = io.Discard
	}
	env := append(os.Environ(), "SLIPWAY_BUILD_DIR="+dir)
	for _, command := range commands {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("build stopped before %q: %w", command, err)
		}
		if err := runBuildCommand(ctx, dir, env, command, out); err != nil {
			return err
		}
	}
	return nil
}

func runBuildCommand(ctx context.Context, dir string, env []string, command string, out io.Writer) error {
	if _, err := fmt.Fprintf(out, "$ %s\n", command); err != nil {
		return fmt.Errorf("build command %q: output: %w", command, err)
	}
	tail := &tailWriter{w: out}
	cmd := shellCommand(command)
	cmd.Dir, cmd.Env = dir, env
	// One writer for both streams: they then share one pipe, so their
	// lines stay in the order the command wrote them.
	cmd.Stdout, cmd.Stderr = tail, tail
	// A background process left by the command (a build server) may
	// keep the output open; do not wait for it forever.
	cmd.WaitDelay = 5 * time.Second
	// Cancelling stops the command and what it started (host.RunGroup).
	err := host.RunGroup(ctx, cmd)
	switch {
	case err == nil, errors.Is(err, exec.ErrWaitDelay):
		return nil
	case errors.As(err, new(*host.StillRunningError)):
		return fmt.Errorf("build command %q stopped: %w", command, err)
	case ctx.Err() != nil:
		return fmt.Errorf("build command %q stopped: %w", command, ctx.Err())
	}
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		return fmt.Errorf("build command %q: %w", command, err)
	}
	return &BuildError{Command: command, Status: exitErr.ProcessState.String(), Tail: tail.lines(buildTailLines)}
}

// tailWriter passes writes on and remembers the last output.
type tailWriter struct {
	w   io.Writer
	buf []byte
}

// tailKeep bytes are plenty for the tail lines, long lines included.
const tailKeep = 32 << 10

func (t *tailWriter) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2*tailKeep {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailKeep:]...)
	}
	return t.w.Write(p)
}

// lines returns the last n lines, each shortened to what a terminal
// would show of it: the text after its last carriage return (progress
// bars), at most 300 characters.
func (t *tailWriter) lines(n int) []string {
	text := strings.TrimRight(string(t.buf), "\r\n")
	if text == "" {
		return nil
	}
	lines := strings.Split(text, "\n")
	lines = lines[max(0, len(lines)-n):]
	for i, line := range lines {
		line = strings.TrimRight(line, "\r")
		if j := strings.LastIndexByte(line, '\r'); j >= 0 {
			line = line[j+1:]
		}
		if r := []rune(line); len(r) > 300 {
			line = string(r[:300]) + "…"
		}
		lines[i] = line
	}
	return lines
}
