package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/slipway-deploy/slipway/internal/deploy"
	"github.com/slipway-deploy/slipway/internal/ui"
)

// printDeployResult prints the final summary: which host is on what.
func printDeployResult(w io.Writer, verb string, res *deploy.Result, err error) {
	if res == nil {
		return
	}
	var rows [][]string
	for _, h := range res.Hosts {
		live := h.Live
		switch {
		case !h.Known:
			live = "(not read)"
		case live == "":
			live = "(none)"
		}
		outcome := "unchanged"
		switch {
		case h.RolledBack:
			outcome = "switched, then back"
		case h.MovedOn:
			outcome = "switched, then on by another run"
		case h.Switched:
			outcome = "switched from " + orDash(h.Previous)
		}
		at := ""
		if st, ok := res.Switches[h.Host]; ok {
			at = st.Local.UTC().Format("15:04:05.000000")
		}
		rows = append(rows, []string{h.Host, live, outcome, at})
	}
	fmt.Fprintln(w)
	ui.Table(w, []string{"HOST", "LIVE", "RESULT", "SWITCHED AT (UTC)"}, rows)
	if res.SkewHosts > 1 {
		fmt.Fprintf(w, "fleet skew: %s from the first switch to the last\n", res.Skew.Round(time.Microsecond))
	}
	var switched *deploy.SwitchedError
	var rolledBack *deploy.RolledBackError
	switch {
	case err == nil:
		fmt.Fprintf(w, "%s done: release %s is live on %d host(s)", verb, res.ReleaseID, len(res.Hosts))
		if res.Duration > 0 {
			fmt.Fprintf(w, " in %s", res.Duration.Round(10*time.Millisecond))
		}
		fmt.Fprintln(w)
	case errors.As(err, &rolledBack) && len(rolledBack.MovedOn) > 0:
		fmt.Fprintf(w, "%s: release %s went live and failed; it is live on no host: switched back where it had gone live, except on %d host(s) another run switched on while this run's lock was gone (left on that run's release)\n", verb, rolledBack.ReleaseID, len(rolledBack.MovedOn))
	case errors.As(err, &rolledBack):
		fmt.Fprintf(w, "%s: release %s went live, failed, and every host it reached was switched back to its previous release\n", verb, rolledBack.ReleaseID)
	case errors.As(err, &switched):
		fmt.Fprintf(w, "%s: release %s went live, but a later step failed (see below)\n", verb, switched.ReleaseID)
	case errors.Is(err, context.Canceled):
		fmt.Fprintf(w, "%s interrupted: no host was switched; every host stays on its previous release\n", verb)
	case slices.ContainsFunc(res.Hosts, func(h deploy.HostResult) bool { return h.MovedOn }):
		fmt.Fprintf(w, "%s failed: the hosts that had switched were switched back, except those another run switched on while this run's lock was gone (see LIVE)\n", verb)
	case slices.ContainsFunc(res.Hosts, func(h deploy.HostResult) bool { return h.RolledBack }):
		fmt.Fprintf(w, "%s failed: the hosts that had switched were switched back; every host stays on its previous release\n", verb)
	default:
		fmt.Fprintf(w, "%s failed: no host was switched; every host stays on its previous release\n", verb)
	}
}

// jsonStream is the --json output of a deploy or rollback, or nothing.
type jsonStream struct {
	j          *ui.JSON
	interrupts *interrupts
}

// jsonEvents switches a run to --json output: NDJSON events on stdout, and
// on stderr only what a person must see (errors, warnings).
func jsonEvents(opts *deploy.Options, streams IO, enabled bool, command string) jsonStream {
	if !enabled {
		return jsonStream{}
	}
	j := ui.NewJSON(streams.Out)
	var hosts []string
	for _, h := range opts.Hosts {
		hosts = append(hosts, h.Name)
	}
	opts.Events = ui.Fanout{ui.NewProgress(streams.Err, hosts, true), j}
	j.Write(ui.JSONEvent{Type: "run_started", Command: command, Stage: opts.Stage.Name, Hosts: hosts})
	return jsonStream{j: j, interrupts: streams.interrupts}
}

// finished emits run_finished. An interrupted run's error is the interrupt
// (never "context canceled"), with its exit code.
func (s jsonStream) finished(res *deploy.Result, err error) {
	if s.j == nil {
		return
	}
	outcome := outcomeOf(res, err)
	err = s.interrupts.explain(err)
	code := exitCode(err)
	if isInterrupt(code) {
		outcome = "interrupted"
	}
	s.j.Finished(outcome, code, res, err)
}
