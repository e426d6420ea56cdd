package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/deploy"
	"github.com/slipway-deploy/slipway/internal/host"
)

// Exit codes, the one place they are decided; exitMeaning says what each
// means. Every command's help lists the codes it can return (setExitStatus);
// the README documents them. An interrupted run exits as a shell reports a
// process killed by the signal: 128 plus the signal's number.
const (
	ExitOK          = 0
	ExitFailed      = 1
	ExitUsage       = 2
	ExitLocked      = 3
	ExitUnreachable = 4
	ExitAfterSwitch = 5
	ExitRolledBack  = 6

	ExitHangup       = 129 // SIGHUP
	ExitInterrupted  = 130 // SIGINT
	ExitOutputClosed = 141 // SIGPIPE: stdout or stderr was closed
	ExitTerminated   = 143 // SIGTERM
)

// interruptCodes are the exit codes of an interrupted run, one per cause.
// A command's help lists them all where it lists ExitInterrupted.
func interruptCodes() []int {
	return []int{ExitHangup, ExitInterrupted, ExitOutputClosed, ExitTerminated}
}

// Interrupt is why a run was interrupted: the cause its context is
// cancelled with, and, once the run is over, part of its error.
type Interrupt struct {
	By   string // SIGINT, SIGTERM, SIGHUP, "stdout closed", "stderr closed"
	Code int    // the exit code
}

func (i *Interrupt) Error() string { return "interrupted (" + i.By + ")" }

// signalInterrupt is the interrupt a signal makes.
func signalInterrupt(sig os.Signal) *Interrupt {
	switch sig {
	case syscall.SIGTERM:
		return &Interrupt{By: "SIGTERM", Code: ExitTerminated}
	case syscall.SIGHUP:
		return &Interrupt{By: "SIGHUP", Code: ExitHangup}
	}
	return &Interrupt{By: "SIGINT", Code: ExitInterrupted}
}

// outputClosed is the interrupt a closed stdout or stderr makes: nobody
// reads what the run reports any more (`slipway deploy … | head -3`).
func outputClosed(stream string) *Interrupt {
	return &Interrupt{By: stream + " closed", Code: ExitOutputClosed}
}

// interruptedError is the error of an interrupted run: the interrupt, and
// what the run returned, whose cancellations the interrupt explains.
type interruptedError struct {
	interrupt *Interrupt
	err       error // nil when only the output was closed on a run that succeeded
}

// Error is the interrupt, then the run's failures that are not merely
// its cancellation (a failed cleanup, processes still running), one a
// line: never "context canceled".
func (e *interruptedError) Error() string {
	lines := []string{e.interrupt.Error()}
	for _, part := range deploy.Errors(e.err) {
		var stillRunning *host.StillRunningError
		if errors.Is(part, context.Canceled) && !errors.As(part, &stillRunning) {
			continue
		}
		lines = append(lines, "  "+strings.ReplaceAll(part.Error(), "\n", "\n    "))
	}
	if len(lines) > 1 {
		lines[0] += "; besides:"
	}
	return strings.Join(lines, "\n")
}

func (e *interruptedError) Unwrap() []error {
	if e.err == nil {
		return []error{e.interrupt}
	}
	return []error{e.interrupt, e.err}
}

// isInterrupt reports whether code is the exit code of an interrupted run.
func isInterrupt(code int) bool { return slices.Contains(interruptCodes(), code) }

// exitMeaning is what an exit code means, in words that hold for every
// command that can return it.
func exitMeaning(code int) string {
	switch code {
	case ExitOK:
		return "success"
	case ExitFailed:
		return "failed; no host was switched"
	case ExitUsage:
		return "bad flags, arguments or configuration; nothing was changed"
	case ExitLocked:
		return "another run holds the deploy lock; nothing was changed"
	case ExitUnreachable:
		return "a host could not be reached or its host key was refused; nothing was changed"
	case ExitAfterSwitch:
		return "the release went live, but a step after the switch failed"
	case ExitRolledBack:
		return "the new release went live, then failed (health check, a switch, a rolling batch), and every host was switched back"
	case ExitHangup:
		return "interrupted (SIGHUP: the terminal went away); cleanup ran, unless interrupted twice"
	case ExitInterrupted:
		return "interrupted (Ctrl-C, SIGINT); cleanup ran, unless interrupted twice"
	case ExitOutputClosed:
		return "interrupted (stdout or stderr closed: its reader went away); cleanup ran, unless interrupted twice"
	case ExitTerminated:
		return "interrupted (SIGTERM, as a CI cancel sends); cleanup ran, unless interrupted twice"
	}
	panic(fmt.Sprintf("exit code %d has no meaning: add it to exitMeaning", code))
}

// setExitStatus ends cmd's help with an EXIT STATUS section: the codes the
// command can return, each with its meaning. ExitInterrupted stands for
// every interrupt code.
func setExitStatus(cmd *cobra.Command, codes ...int) {
	if slices.Contains(codes, ExitInterrupted) {
		codes = append(slices.DeleteFunc(slices.Clone(codes), isInterrupt), interruptCodes()...)
	}
	var b strings.Builder
	b.WriteString(cmp.Or(cmd.Long, cmd.Short))
	b.WriteString("\n\nEXIT STATUS\n")
	for _, code := range slices.Sorted(slices.Values(codes)) {
		fmt.Fprintf(&b, "  %-4d %s\n", code, exitMeaning(code))
	}
	cmd.Long = b.String()
}

// UserError is a mistake in how slipway was called, printed as is.
type UserError struct{ Msg string }

func (e *UserError) Error() string { return e.Msg }

// exitCode maps an error to the process exit code.
func exitCode(err error) int {
	var (
		userErr     *UserError
		configErr   *config.Error
		lockedErr   *deploy.LockedError
		hostKeyErr  *host.HostKeyError
		switchedErr *deploy.SwitchedError
		rolledBack  *deploy.RolledBackError
		connectErr  *deploy.ConnectError
		interrupt   *Interrupt
	)
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &switchedErr):
		return ExitAfterSwitch
	case errors.As(err, &rolledBack):
		return ExitRolledBack
	case errors.As(err, &interrupt):
		return interrupt.Code
	case errors.Is(err, context.Canceled):
		// Cancelled without a known interrupt (a runX called directly).
		return ExitInterrupted
	case errors.As(err, &userErr), errors.As(err, &configErr):
		return ExitUsage
	case errors.As(err, &lockedErr):
		return ExitLocked
	case errors.As(err, &hostKeyErr):
		return ExitUnreachable
	case errors.As(err, &connectErr):
		return ExitUnreachable
	default:
		return ExitFailed
	}
}
