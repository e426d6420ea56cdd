package cli

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/user"
	"time"

	"github.com/slipway-deploy/slipway/internal/deploy"
	"github.com/slipway-deploy/slipway/internal/notify"
)

// outcomeOf names how a deploy or rollback ended, for --json and webhooks.
func outcomeOf(res *deploy.Result, err error) string {
	code := exitCode(err)
	switch {
	case err == nil && res != nil && res.AlreadyLive:
		return "already_live"
	case code == ExitOK:
		return "ok"
	case code == ExitRolledBack:
		return "rolled_back"
	case code == ExitAfterSwitch:
		return "live_with_errors"
	case isInterrupt(code):
		return "interrupted"
	}
	return "failed"
}

// notifyOutcome tells the configured webhooks how the run ended. A failing
// webhook is a warning on stderr, never a failed deploy.
func notifyOutcome(ctx context.Context, opts deploy.Options, command string, started time.Time, res *deploy.Result, err error, streams IO) {
	hooks := opts.Config.Notify
	if len(hooks) == 0 {
		return
	}
	o := notify.Outcome{Command: command, Stage: opts.Stage.Name, App: opts.Config.App, Result: outcomeOf(res, err), Duration: time.Since(started)}
	if u, uerr := user.Current(); uerr == nil {
		o.User = u.Username
	}
	o.Machine, _ = os.Hostname()
	for _, h := range opts.Hosts {
		o.Hosts = append(o.Hosts, h.Name)
	}
	if res != nil {
		o.Release, o.Revision = res.ReleaseID, res.Revision
	}
	if err != nil {
		o.Failure = err.Error()
	}
	var targets []notify.Hook
	for _, h := range hooks {
		targets = append(targets, notify.Hook{URL: h.URL, Format: h.Format, On: h.On})
	}
	// Ctrl-C must not stop the message that says the run was interrupted.
	ctx = context.WithoutCancel(ctx)
	for _, e := range notify.Send(ctx, &http.Client{Timeout: 10 * time.Second}, targets, o) {
		fmt.Fprintf(streams.Err, "warning: %v (the %s itself is not affected)\n", e, command)
	}
}
