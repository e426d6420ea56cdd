package cli

import (
	"context"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slipway-deploy/slipway/internal/deploy"
	"github.com/slipway-deploy/slipway/internal/ui"
)

type releasesOptions struct {
	json bool
}

func newReleasesCmd(g *globalOptions, streams IO) *cobra.Command {
	opts := &releasesOptions{}
	cmd := &cobra.Command{
		Use:   "releases STAGE",
		Short: "List the releases on the stage's hosts: live, previous, failed, rolled back",
		Example: `  slipway releases production
  slipway releases production --json | jq '.[0]'`,
		Args: stageArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runReleases(cmd.Context(), g, streams, args[0], opts)
		},
	}
	cmd.Flags().BoolVar(&opts.json, "json", false, "print JSON for machines")
	setExitStatus(cmd, ExitOK, ExitFailed, ExitUsage, ExitUnreachable, ExitInterrupted)
	return cmd
}

func runReleases(ctx context.Context, g *globalOptions, streams IO, stage string, opts *releasesOptions) error {
	gq := *g
	gq.quiet = true // the table is the output; step lines would only repeat it
	dopts, err := loadOptions(&gq, streams, stage, "releases "+stage)
	if err != nil {
		return err
	}
	rows, err := deploy.Releases(ctx, dopts)
	if err != nil {
		return err
	}
	if opts.json {
		if rows == nil {
			rows = []deploy.ReleaseRow{}
		}
		return writeJSON(streams.Out, rows)
	}
	var table [][]string
	for _, r := range rows {
		rev := ui.Short(r.Revision)
		if r.Branch != "" {
			rev += " " + r.Branch
		}
		if r.Dirty {
			rev += " (dirty)"
		}
		if r.PromotedFrom != "" {
			rev += " from " + r.PromotedFrom
		}
		when := ""
		if !r.Time.IsZero() {
			when = r.Time.UTC().Format("2006-01-02 15:04:05")
		}
		hosts := strings.Join(r.Hosts, ",")
		if r.Removed {
			hosts = "(removed)"
		}
		table = append(table, []string{r.ID, r.State, when, orDash(r.User), orDash(rev), hosts})
	}
	ui.Table(streams.Out, []string{"RELEASE", "STATE", "TIME (UTC)", "BY", "REVISION", "HOSTS"}, table)
	return nil
}
