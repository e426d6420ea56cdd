package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
)

// Local runs on this machine, without SSH: the embedded default for
// `hosts: [local]`. It runs the same sh scripts an SSH host would, so a local
// deploy exercises the same code as a remote one. It needs a POSIX system:
// on Windows every effect fails with a message saying so.
type Local struct{}

// NewLocal returns the executor for this machine.
func NewLocal() *Local { return &Local{} }

func (*Local) Name() string { return "local" }

// Loopback is true: this machine is reached without a network.
func (*Local) Loopback() bool { return true }

func (l *Local) Query(ctx context.Context, cmd Command) (Result, error) { return l.run(ctx, cmd) }

func (l *Local) Exec(ctx context.Context, cmd Command) (Result, error) { return l.run(ctx, cmd) }

// run runs cmd.Script with /bin/sh in a process group of its own
// (RunGroup): a cancelled script is stopped whole, background processes
// included, before run returns.
func (l *Local) run(ctx context.Context, cmd Command) (Result, error) {
	if err := posixOnly(); err != nil {
		return Result{}, err
	}
	c := exec.Command("/bin/sh", "-c", cmd.Script)
	c.Stdin = cmd.Stdin
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	if cmd.Stdout != nil {
		c.Stdout = cmd.Stdout
	}
	if cmd.Stderr != nil {
		c.Stderr = cmd.Stderr
	}
	err := RunGroup(ctx, c)
	res := Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	var stillRunning *StillRunningError
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return res, nil
	case errors.As(err, &stillRunning):
		stillRunning.Host = l.Name()
		return res, stillRunning
	case ctx.Err() != nil:
		return res, ctx.Err()
	case errors.As(err, &exitErr):
		return res, &ExitError{Host: l.Name(), Script: cmd.Script, Code: exitErr.ExitCode(), Stderr: res.Stderr}
	default:
		return res, fmt.Errorf("run %s: %w", cmd.Script, err)
	}
}

func (*Local) Rename(ctx context.Context, oldpath, newpath string) error {
	if err := posixOnly(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return os.Rename(oldpath, newpath)
}

// RenamePath is "local": Rename is this machine's rename(2).
func (*Local) RenamePath() string { return "local" }

// PrepareRename has nothing to prepare: Rename is a local rename(2).
func (*Local) PrepareRename(context.Context) error { return nil }

// DialTCP connects from this machine, which is the host.
func (*Local) DialTCP(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

func (*Local) Close() error { return nil }
