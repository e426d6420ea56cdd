package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/slipway-deploy/slipway/internal/deploy"
	"github.com/slipway-deploy/slipway/internal/source"
	"github.com/slipway-deploy/slipway/internal/ui"
)

type deployOptions struct {
	stage string
}

func newDeployCmd(g *globalOptions, streams IO) *cobra.Command {
	opts := &deployOptions{}
	return &cobra.Command{
		Use:   "deploy STAGE",
		Short: "Ship a new release to every host of the stage and switch to it",
		Example: `  slipway deploy production
  slipway deploy staging --hosts web1,web2
  slipway -c deploy/slipway.yml deploy demo`,
		Args: stageArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.stage = args[0]
			return runDeploy(cmd.Context(), g, streams, opts)
		},
	}
}

func runDeploy(ctx context.Context, g *globalOptions, streams IO, opts *deployOptions) error {
	dopts, err := loadOptions(g, streams, opts.stage, "deploy "+opts.stage)
	if err != nil {
		return err
	}
	cfg := dopts.Config
	tree, err := source.Scan(cfg.Source.Path, cfg.Source.Exclude)
	if err != nil {
		return &UserError{Msg: fmt.Sprintf("%s: source: %v", cfg.Source.Where, err)}
	}
	src := deploy.Source{Tree: tree, Revision: tree.Digest, Branch: cfg.Source.Branch}
	res, err := deploy.Deploy(ctx, dopts, src)
	printDeployResult(streams.Err, "deploy", res, err)
	return err
}

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
		if h.Switched {
			outcome = "switched from " + orDash(h.Previous)
		}
		rows = append(rows, []string{h.Host, live, outcome})
	}
	fmt.Fprintln(w)
	ui.Table(w, []string{"HOST", "LIVE", "RESULT"}, rows)
	var switched *deploy.SwitchedError
	switch {
	case err == nil:
		fmt.Fprintf(w, "%s done: release %s is live on %d host(s)\n", verb, res.ReleaseID, len(res.Hosts))
	case errors.As(err, &switched):
		fmt.Fprintf(w, "%s: release %s went live, but a later step failed (see below)\n", verb, switched.ReleaseID)
	default:
		fmt.Fprintf(w, "%s failed: no host was switched; every host stays on its previous release\n", verb)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
