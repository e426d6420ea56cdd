package cli

import (
	"context"
	"errors"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/deploy"
	"github.com/slipway-deploy/slipway/internal/host"
)

// Exit codes, the one place they are decided. The README documents them.
const (
	ExitOK          = 0   // every selected host is live on the new release
	ExitFailed      = 1   // the run failed; every host stays on its previous release
	ExitUsage       = 2   // bad flags, arguments or configuration; nothing was changed
	ExitLocked      = 3   // another run holds the lock; nothing was changed
	ExitUnreachable = 4   // a host could not be reached or its host key was refused; nothing was changed
	ExitAfterSwitch = 5   // the new release went live, but a step after the switch failed
	ExitRolledBack  = 6   // the new release went live, failed its health check (or a rolling batch failed), and every host was switched back
	ExitInterrupted = 130 // stopped by Ctrl-C; cleanup ran
)

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
