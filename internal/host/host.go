// Package host runs effects on the machines slipway deploys to. Every remote
// effect of slipway goes through the Executor interface, implemented for
// this machine (Local) and for SSH hosts (SSH), and wrapped for dry runs
// (ReadOnly, which refuses every change), -v (Verbose) and the test
// suites' fault injection (WithFaults).
package host

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
)

// Executor runs shell scripts on one host.
//
// Scripts are POSIX sh, run by /bin/sh whatever the user's login shell is;
// every variable part of a script must have gone through shell.Quote or
// shell.Script. Query is for scripts that only read state and runs in dry
// runs too; Exec and Rename change the host, and a dry run refuses them. A cancelled
// command is stopped whole (its process group) before Query or Exec
// returns, or they return a *StillRunningError.
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
	// PrepareRename opens in advance what the next Rename needs (the SFTP
	// channel), so the switch itself is one round trip.
	PrepareRename(ctx context.Context) error
	// RenamePath says how Rename renames on this host: "sftp" (SFTP's
	// posix-rename), "exec" (mv -T, where the server has no SFTP) or
	// "local" (rename(2) on this machine).
	RenamePath() string
	// DialTCP opens a TCP connection from the host itself, for health
	// checks of the host's own 127.0.0.1.
	DialTCP(ctx context.Context, addr string) (net.Conn, error)
	// DialUnix connects to a unix socket of the host as the deploy user
	// (php-fpm's pool, to reset its OPcache).
	DialUnix(ctx context.Context, path string) (net.Conn, error)
	// Loopback reports whether the host is reached without a network link
	// (this machine, or SSH to a loopback address): compressing an upload
	// saves nothing there and costs CPU on both ends.
	Loopback() bool
	// RoundTrips is how many round trips the connection has taken so far
	// (handshake included); 0 where there is no network between.
	RoundTrips() int64
	// Close ends the connection, if there is one.
	Close() error
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
// Its message is the status and what the script printed last on stderr,
// not the script: that is slipway's own text, which says nothing to the
// reader of an error (-v shows every script as it runs).
type ExitError struct {
	Host   string
	Script string
	Code   int
	Stderr []byte
}

func (e *ExitError) Error() string {
	msg := fmt.Sprintf("command exited with status %d", e.Code)
	switch tail := Tail(e.Stderr, 10); {
	case tail == "":
		return msg
	case strings.Contains(tail, "\n"):
		return msg + ":\n" + tail
	default:
		return msg + ": " + tail
	}
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
