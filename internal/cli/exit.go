package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/deploy"
	"github.com/slipway-deploy/slipway/internal/host"
)

// Exit codes, the one place they are decided; exitMeaning says what each
// means. Every command's help lists the codes it can return (setExitStatus);
// the README documents them.
const (
	ExitOK          = 0
	ExitFailed      = 1
	ExitUsage       = 2
	ExitLocked      = 3
	ExitUnreachable = 4
	ExitAfterSwitch = 5
	ExitRolledBack  = 6
	ExitInterrupted = 130
)

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
	case ExitInterrupted:
		return "interrupted (Ctrl-C); cleanup ran"
	}
	panic(fmt.Sprintf("exit code %d has no meaning: add it to exitMeaning", code))
}

// setExitStatus ends cmd's help with an EXIT STATUS section: the codes the
// command can return, each with its meaning.
func setExitStatus(cmd *cobra.Command, codes ...int) {
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
	)
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &switchedErr):
		return ExitAfterSwitch
	case errors.As(err, &rolledBack):
		return ExitRolledBack
	case errors.Is(err, context.Canceled):
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
