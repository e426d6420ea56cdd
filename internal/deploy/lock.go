package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/layout"
	"github.com/slipway-deploy/slipway/internal/shell"
)

// LockOwner says who holds a deploy lock, so a refused run can name them.
type LockOwner struct {
	User    string    `json:"user"`
	Machine string    `json:"machine"`
	PID     int       `json:"pid"`
	Command string    `json:"command"`
	Stage   string    `json:"stage"`
	Started time.Time `json:"started"`
}

func (o LockOwner) String() string {
	if o.User == "" && o.Machine == "" {
		return "an unknown holder (the lock has no owner details)"
	}
	return fmt.Sprintf("%s@%s (pid %d, %q, since %s)", o.User, o.Machine, o.PID, o.Command, o.Started.UTC().Format(time.RFC3339))
}

// LockedError reports a deploy directory locked by another run.
type LockedError struct {
	Host  string
	Owner LockOwner
}

func (e *LockedError) Error() string {
	return fmt.Sprintf("deploy directory is locked by %s", e.Owner)
}

// lockedStatus is the exit status the lock script uses to say "held by
// someone else", distinct from any failure of mkdir itself.
const lockedStatus = 75

// Acquire takes the lock on one host. mkdir is atomic on every filesystem,
// so of two runs racing for the lock exactly one creates the directory.
func Acquire(ctx context.Context, ex host.Executor, l layout.Layout, owner LockOwner) error {
	body, err := json.Marshal(owner)
	if err != nil {
		return err
	}
	script := fmt.Sprintf(`umask 022 && mkdir -p -- %[1]s && if mkdir -- %[2]s 2>/dev/null; then printf '%%s\n' %[3]s > %[4]s; else head -c 65536 -- %[4]s 2>/dev/null; exit %[5]d; fi`,
		shell.Quote(l.MetaDir()), shell.Quote(l.LockDir()), shell.Quote(string(body)), shell.Quote(l.LockOwnerFile()), lockedStatus)
	res, err := ex.Exec(ctx, host.Command{Script: script})
	var exitErr *host.ExitError
	if errors.As(err, &exitErr) && exitErr.Code == lockedStatus {
		var holder LockOwner
		_ = json.Unmarshal([]byte(strings.TrimSpace(string(res.Stdout))), &holder)
		return &LockedError{Host: ex.Name(), Owner: holder}
	}
	return err
}

// Release removes the lock on one host.
func Release(ctx context.Context, ex host.Executor, l layout.Layout) error {
	_, err := ex.Exec(ctx, host.Command{Script: "rm -rf -- " + shell.Quote(l.LockDir())})
	return err
}
