// Package host runs effects on the machines slipway deploys to. Every remote
// effect of slipway goes through the Executor interface, implemented for
// this machine (Local), for SSH hosts (SSH), and as a recorder for dry runs
// and tests.
package host

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
)

// Executor runs shell scripts and renames on one host.
//
// Scripts are POSIX sh; every variable part of a script must have gone
// through shell.Quote. Query is for scripts that only read state and runs in
// dry runs too; Exec and Rename change the host and are only recorded there.
type Executor interface {
	// Name is the host as the user named it; errors and output carry it.
	Name() string
	// Query runs a script that changes nothing on the host.
	Query(ctx context.Context, cmd Command) (Result, error)
	// Exec runs a script that may change the host.
	Exec(ctx context.Context, cmd Command) (Result, error)
	// Rename renames oldpath to newpath with one rename(2), replacing
	// newpath atomically if it exists (a symlink switch).
	Rename(ctx context.Context, oldpath, newpath string) error
	// Close ends the connection, if there is one.
	Close() error
}

// RenamePreparer is an Executor that can make its next Rename cheaper by
// opening what it needs in advance (the SFTP channel).
type RenamePreparer interface {
	PrepareRename(ctx context.Context) error
}

// TCPDialer is an Executor that can open TCP connections from the host
// itself, for health checks of the host's own 127.0.0.1.
type TCPDialer interface {
	DialTCP(ctx context.Context, addr string) (net.Conn, error)
}

// prepareRename is what a wrapper's PrepareRename does: ex's, if it has one.
func prepareRename(ctx context.Context, ex Executor) error {
	if p, ok := ex.(RenamePreparer); ok {
		return p.PrepareRename(ctx)
	}
	return nil
}

// dialTCP is what a wrapper's DialTCP does: ex's, if it has one.
func dialTCP(ctx context.Context, ex Executor, addr string) (net.Conn, error) {
	if d, ok := ex.(TCPDialer); ok {
		return d.DialTCP(ctx, addr)
	}
	return nil, fmt.Errorf("%s: cannot open connections from the host", ex.Name())
}

// LoopbackReporter is an Executor that knows whether it reaches its host
// without a network link: this machine itself, or an SSH connection to a
// loopback address. Compressing an upload saves nothing there and costs
// CPU on both ends.
type LoopbackReporter interface {
	Loopback() bool
}

// OnLoopback reports whether ex reaches its host without a network link;
// false when ex cannot tell.
func OnLoopback(ex Executor) bool {
	l, ok := ex.(LoopbackReporter)
	return ok && l.Loopback()
}

// Command is one script to run.
type Command struct {
	Script string
	// Stdin, if set, is copied to the script's standard input.
	Stdin io.Reader
	// Stdout and Stderr, if set, receive the output as it comes instead of
	// it being collected in the Result.
	Stdout io.Writer
	Stderr io.Writer
}

// Result is what a finished script printed.
type Result struct {
	Stdout []byte
	Stderr []byte
}

// ExitError reports a script that ran and exited with a non-zero status.
type ExitError struct {
	Host   string
	Script string
	Code   int
	Stderr []byte
}

func (e *ExitError) Error() string {
	msg := fmt.Sprintf("command exited with status %d: %s", e.Code, e.Script)
	if tail := Tail(e.Stderr, 10); tail != "" {
		msg += "\n" + tail
	}
	return msg
}

// Tail returns the last n non-empty lines of out, trimmed, for error
// messages that show what a failed command printed.
func Tail(out []byte, n int) string {
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	s := strings.Join(lines, "\n")
	return strings.TrimSpace(s)
}
