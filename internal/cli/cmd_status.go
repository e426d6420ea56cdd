package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway-deploy/slipway/internal/deploy"
	"github.com/slipway-deploy/slipway/internal/ui"
)

type statusOptions struct {
	json bool
}

func newStatusCmd(g *globalOptions, streams IO) *cobra.Command {
	opts := &statusOptions{}
	cmd := &cobra.Command{
		Use:   "status STAGE",
		Short: "Show what each host serves and whether the fleet agrees on the live release; changes nothing",
		Long: `Reads every host of the stage (no lock is taken, nothing is changed) and shows,
per host, the live release with its revision, when and by whom it was deployed,
the deploy lock and how many releases are present. Below the table it says
whether all hosts are live on the same release, which hosts differ, which
releases are only on some hosts, which shared files (shared.files) the hosts
hold different copies of (by checksum), and which hosts could not be read.

It succeeds when every host was read, all are live on the same release and hold
the same shared files; it fails (exit 1) when hosts disagree on the live release
or a shared file, or a host could not be reached or read. A held lock alone does
not fail it.`,
		Example: `  slipway status production
  slipway status production --hosts web1,web2
  slipway status production --json | jq '.groups'`,
		Args: stageArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runStatus(cmd.Context(), g, streams, args[0], opts)
		},
	}
	cmd.Flags().BoolVar(&opts.json, "json", false, "print JSON for machines")
	setExitStatus(cmd, ExitOK, ExitFailed, ExitUsage, ExitInterrupted)
	return cmd
}

func runStatus(ctx context.Context, g *globalOptions, streams IO, stage string, opts *statusOptions) error {
	gq := *g
	gq.quiet = true // the table is the output; step lines would only repeat it
	dopts, err := loadOptions(&gq, streams, stage, "status "+stage)
	if err != nil {
		return err
	}
	st, err := deploy.Status(ctx, dopts)
	if err != nil {
		return err
	}
	if opts.json {
		if err := writeJSON(streams.Out, st); err != nil {
			return err
		}
	} else {
		printStatus(streams.Out, st)
	}
	return statusProblem(st)
}

func printStatus(w io.Writer, st *deploy.FleetStatus) {
	var rows [][]string
	for _, h := range st.Hosts {
		if h.Error != "" {
			state := "unreachable"
			if h.Reachable {
				state = "unreadable"
			}
			rows = append(rows, []string{h.Host, state, "-", "-", "-", "-", "-"})
			continue
		}
		rev, when, by := "-", "-", "-"
		if m := h.LiveMeta; m != nil {
			rev = orDash(revisionText(m.Revision, m.Branch, m.Dirty))
			when = formatWhen(m.LiveAt, m.CreatedAt)
			by = orDash(m.User)
		}
		lock := "free"
		if h.Lock != nil {
			lock = "LOCKED by " + h.Lock.String()
			if h.LockStatus != "live" && h.LockStatus != "manual" {
				lock += " (" + h.LockStatus + ")"
			}
		}
		rows = append(rows, []string{h.Host, orDash(h.Live), rev, when, by, lock, fmt.Sprint(len(h.Releases))})
	}
	ui.Table(w, []string{"HOST", "LIVE", "REVISION", "DEPLOYED (UTC)", "BY", "LOCK", "RELEASES"}, rows)
	fmt.Fprintln(w)

	var read []string
	for _, h := range st.Hosts {
		if h.Error == "" {
			read = append(read, h.Host)
		}
	}
	switch {
	case len(read) == 0:
		fmt.Fprintln(w, "no host could be read")
	case !st.Agree:
		fmt.Fprintln(w, "hosts disagree on the live release:")
		for _, g := range st.Groups {
			fmt.Fprintf(w, "  %s\n", g)
		}
	case st.Live == "":
		fmt.Fprintf(w, "nothing is live yet on %s\n", hostCount(read, len(st.Hosts), "any of the"))
	case len(read) == 1:
		fmt.Fprintf(w, "%s is live on %s\n", read[0], st.Live)
	default:
		fmt.Fprintf(w, "%s live on %s\n", hostCount(read, len(st.Hosts), "all"), st.Live)
	}
	for _, p := range st.Partial {
		fmt.Fprintf(w, "%s only on %s (missing on %s)\n", p.ID, strings.Join(p.Hosts, ", "), strings.Join(p.Missing, ", "))
	}
	for _, d := range st.SharedDrift {
		var copies []string
		for _, c := range d.Copies {
			copies = append(copies, sharedCopyText(c))
		}
		fmt.Fprintf(w, "shared file %s differs between hosts: %s\n", d.Name, strings.Join(copies, "; "))
	}
	for _, h := range st.Hosts {
		switch {
		case h.Error == "":
		case h.Reachable:
			fmt.Fprintf(w, "%s could not be read: %s\n", h.Host, h.Error)
		default:
			fmt.Fprintf(w, "%s unreachable: %s\n", h.Host, h.Error)
		}
	}
}

// sharedCopyText says which hosts hold one copy of a shared file: "web1,
// web2 have 3f2a9c1b07d4", "web3 has none".
func sharedCopyText(c deploy.SharedCopies) string {
	verb := "have"
	if len(c.Hosts) == 1 {
		verb = "has"
	}
	which := ui.Short(c.Sum)
	switch c.Sum {
	case "":
		which = "none"
	case "?":
		which = "one it cannot read"
	}
	return strings.Join(c.Hosts, ", ") + " " + verb + " " + which
}

// hostCount names the hosts that were read for the summary line: "all 5
// hosts", "all 4 reachable hosts", or the host itself when it is the only one.
func hostCount(read []string, total int, quantifier string) string {
	switch {
	case len(read) == 1:
		return read[0]
	case len(read) < total:
		return fmt.Sprintf("%s %d reachable hosts", quantifier, len(read))
	default:
		return fmt.Sprintf("%s %d hosts", quantifier, len(read))
	}
}

// statusProblem makes status exit 1 when the fleet is not in one known
// state; the output above says the details.
func statusProblem(st *deploy.FleetStatus) error {
	if st.OK {
		return nil
	}
	var parts []string
	if !st.Agree {
		parts = append(parts, fmt.Sprintf("hosts are live on %d different releases", len(st.Groups)))
	}
	failed := 0
	for _, h := range st.Hosts {
		if h.Error != "" {
			failed++
		}
	}
	if len(st.SharedDrift) > 0 {
		var names []string
		for _, d := range st.SharedDrift {
			names = append(names, d.Name)
		}
		parts = append(parts, "the hosts' copies of shared "+strings.Join(names, ", ")+" differ")
	}
	if failed == 1 {
		parts = append(parts, "1 host could not be read")
	} else if failed > 1 {
		parts = append(parts, fmt.Sprintf("%d hosts could not be read", failed))
	}
	return fmt.Errorf("stage %s: %s", st.Stage, strings.Join(parts, "; "))
}

// revisionText is a revision as tables show it: short, with its branch.
func revisionText(revision, branch string, dirty bool) string {
	rev := ui.Short(revision)
	if branch != "" {
		rev += " " + branch
	}
	if dirty {
		rev += " (dirty)"
	}
	return strings.TrimSpace(rev)
}

// formatWhen is when a release went live, else when it was made.
func formatWhen(liveAt, createdAt time.Time) string {
	t := liveAt
	if t.IsZero() {
		t = createdAt
	}
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05")
}
