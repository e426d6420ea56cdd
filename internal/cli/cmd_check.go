package cli

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slipway-deploy/slipway/internal/deploy"
	"github.com/slipway-deploy/slipway/internal/ui"
)

func newCheckCmd(g *globalOptions, streams IO) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "check STAGE",
		Short:   "Preflight: on every host, what a deploy of this configuration would fail on, each with its fix; changes nothing",
		Example: "  slipway check production",
		Args:    stageArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCheck(cmd.Context(), g, streams, args[0])
		},
	}
	setExitStatus(cmd, ExitOK, ExitFailed, ExitUsage, ExitUnreachable, ExitInterrupted)
	return cmd
}

func runCheck(ctx context.Context, g *globalOptions, streams IO, stage string) error {
	gq := *g
	gq.quiet = true // the table is the output; step lines would only repeat it
	opts, err := loadOptions(&gq, streams, stage, "check "+stage)
	if err != nil {
		return err
	}
	reports, err := deploy.Check(ctx, opts)
	printCheck(streams.Out, reports)
	if err == nil {
		return nil
	}
	return &checkFailed{summary: checkSummary(stage, reports), err: err}
}

// printCheck prints check's table and, under it, each host's problem with
// its fix, and why a host was not reached or read. What check did not
// measure on a host shows as "-", never as a value.
func printCheck(w io.Writer, reports []deploy.CheckReport) {
	var rows [][]string
	for _, r := range reports {
		rows = append(rows, checkRow(r))
	}
	ui.Table(w, []string{"HOST", "USER", "LIVE", "RELEASES", "FREE", "SWITCH", "LOCK", "STATUS"}, rows)
	var details []string
	for _, r := range reports {
		var why string
		if r.Err != nil {
			// Executor errors start with the host's name; say it once.
			why = strings.TrimPrefix(r.Err.Error(), r.Host+": ")
		}
		switch {
		case !r.Reached && r.Err != nil:
			details = append(details, fmt.Sprintf("%s unreachable: %s", r.Host, why))
		case !r.Read && r.Err != nil:
			details = append(details, fmt.Sprintf("%s could not be read: %s", r.Host, why))
		}
		for _, p := range r.Problems {
			details = append(details, fmt.Sprintf("%s: %s\n  fix: %s", r.Host, p.What, p.Fix))
		}
	}
	if len(details) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, strings.Join(details, "\n"))
	}
}

func checkRow(r deploy.CheckReport) []string {
	switch {
	case !r.Reached && r.NoRelease:
		return []string{r.Host, "-", "-", "-", "-", "-", "-", "unreachable (no_release host)"}
	case !r.Reached:
		return []string{r.Host, "-", "-", "-", "-", "-", "-", "unreachable"}
	case r.NoRelease:
		return []string{r.Host, "-", "-", "-", "-", "-", "-", "reachable (no_release host)"}
	case !r.Read:
		return []string{r.Host, "-", "-", "-", "-", "-", "-", "could not be read"}
	}
	lock := "free"
	if r.Lock != nil {
		lock = "LOCKED by " + r.Lock.String()
	}
	free := "-"
	if r.FreeKB >= 0 {
		free = fmt.Sprintf("%.1f GB", float64(r.FreeKB)/(1<<20))
	}
	status := "ok"
	switch {
	case len(r.Problems) == 1:
		status = "1 problem"
	case len(r.Problems) > 1:
		status = fmt.Sprintf("%d problems", len(r.Problems))
	case len(r.Warnings) > 0:
		status = fmt.Sprintf("ok, %d warning(s)", len(r.Warnings))
	}
	return []string{r.Host, orDash(r.User), orDash(r.Current), fmt.Sprint(r.Releases), free, orDash(r.Switch), lock, status}
}

// checkSummary is check's error line: how many problems on how many
// hosts, how many hosts unreachable or unread; the details are above.
func checkSummary(stage string, reports []deploy.CheckReport) string {
	var problems, withProblems, unreachable, unread int
	for _, r := range reports {
		switch {
		case !r.Reached && r.Err != nil:
			unreachable++
		case !r.Read && r.Err != nil:
			unread++
		}
		if len(r.Problems) > 0 {
			problems += len(r.Problems)
			withProblems++
		}
	}
	var parts []string
	if problems > 0 {
		parts = append(parts, fmt.Sprintf("%s on %s", plural(problems, "problem"), plural(withProblems, "host")))
	}
	if unreachable > 0 {
		parts = append(parts, plural(unreachable, "host")+" unreachable")
	}
	if unread > 0 {
		parts = append(parts, plural(unread, "host")+" could not be read")
	}
	if len(parts) == 0 {
		return "check " + stage + " failed"
	}
	return "check " + stage + ": " + strings.Join(parts, ", ") + " (listed above)"
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

// checkFailed is check's failure: printed as its summary (the details are
// in the output above it), and exiting by the errors under it: 4 for an
// unreachable host, 1 for problems.
type checkFailed struct {
	summary string
	err     error
}

func (e *checkFailed) Error() string { return e.summary }
func (e *checkFailed) Unwrap() error { return e.err }
