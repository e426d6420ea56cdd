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

func newPlanCmd(g *globalOptions, streams IO) *cobra.Command {
	opts := &deployOptions{}
	cmd := &cobra.Command{
		Use:   "plan STAGE",
		Short: "Show what a deploy would do on each host, changing nothing anywhere",
		Long: `plan connects, reads every host's state and prints what slipway deploy would do on
each host: the release id, the files it would send (or copy on the host), the hooks in
order, and the releases cleanup would delete. It takes no lock and changes nothing on
any host: its connections refuse every write. deploy --dry-run is the same.`,
		Example: `  slipway plan production
  slipway plan production --tag v1.4.2 --json`,
		Args: stageArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runPlan(cmd.Context(), g, streams, args[0], opts)
		},
	}
	addRevisionFlags(cmd.Flags(), opts)
	cmd.Flags().BoolVar(&opts.json, "json", false, "print the plan as JSON")
	setExitStatus(cmd, ExitOK, ExitFailed, ExitUsage, ExitUnreachable, ExitInterrupted)
	return cmd
}

func runPlan(ctx context.Context, g *globalOptions, streams IO, stage string, opts *deployOptions) error {
	gq := *g
	gq.quiet = true
	dopts, src, made, err := loadDeploy(ctx, &gq, streams, stage, "plan "+stage, opts)
	if err != nil {
		return err
	}
	defer made.Remove()
	plan, err := deploy.PlanDeploy(ctx, dopts, src)
	if err != nil {
		return err
	}
	if opts.json {
		return writeJSON(streams.Out, plan)
	}
	printPlan(streams.Out, dopts, plan)
	return nil
}

func printPlan(w io.Writer, opts deploy.Options, plan *deploy.Plan) {
	fmt.Fprintf(w, "plan for stage %s: release %s, revision %s (nothing was changed)\n", opts.Stage.Name, plan.ReleaseID, ui.Short(plan.Revision))
	if plan.AlreadyLive {
		fmt.Fprintln(w, "this revision is already live on every host: deploy would do nothing (--force to deploy it again)")
	}
	if plan.Drift != "" {
		fmt.Fprintf(w, "deploy would refuse: %s\n", plan.Drift)
	}
	for _, h := range plan.Hosts {
		fmt.Fprintf(w, "\n%s (live: %s)\n", h.Host, orDash(h.Live))
		if h.Locked != "" {
			fmt.Fprintf(w, "  deploy would stop: locked by %s\n", h.Locked)
		}
		switch h.Upload {
		case "delta":
			fmt.Fprintf(w, "  upload: delta: %d sent (%s), %d unchanged on the host, %d removed\n", len(h.Send), ui.HumanBytes(h.SendBytes), h.Copy, h.Removed)
		case "full":
			fmt.Fprintf(w, "  upload: full: %d entries (%s)", len(h.Send), ui.HumanBytes(h.SendBytes))
			if !h.ManifestOK && h.Live != "" {
				fmt.Fprint(w, " (no readable manifest of the live release)")
			}
			fmt.Fprintln(w)
		default:
			fmt.Fprintf(w, "  upload: %s\n", h.Upload)
		}
		if h.Upload == "delta" {
			for i, f := range h.Send {
				if i == 20 {
					fmt.Fprintf(w, "    … and %d more\n", len(h.Send)-20)
					break
				}
				fmt.Fprintf(w, "    + %s\n", f)
			}
		}
		for _, hook := range h.Hooks {
			fmt.Fprintf(w, "  hook %s\n", hook)
		}
		if h.Recycle != "" {
			fmt.Fprintf(w, "  the new release would reuse the directory of %s (cleanup's to delete), brought up to date\n", h.Recycle)
		}
		if len(h.Cleanup) > 0 {
			fmt.Fprintf(w, "  cleanup would delete: %s\n", strings.Join(h.Cleanup, ", "))
		}
		for _, warn := range h.Warnings {
			fmt.Fprintf(w, "  warning: %s\n", warn)
		}
	}
}
