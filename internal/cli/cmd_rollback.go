package cli

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway-deploy/slipway/internal/deploy"
	"github.com/slipway-deploy/slipway/internal/layout"
)

type rollbackOptions struct {
	to   string
	json bool
}

func newRollbackCmd(g *globalOptions, streams IO) *cobra.Command {
	opts := &rollbackOptions{}
	cmd := &cobra.Command{
		Use:   "rollback STAGE",
		Short: "Switch every host back to the previous release (or --to one)",
		Example: `  slipway rollback production
  slipway rollback production --to 20261122103015`,
		Args: stageArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRollback(cmd.Context(), g, streams, args[0], opts)
		},
	}
	cmd.Flags().StringVar(&opts.to, "to", "", "release id to switch to (see slipway releases STAGE)")
	cmd.Flags().BoolVar(&opts.json, "json", false, "print NDJSON events on stdout (schema: docs/json-events.md)")
	setExitStatus(cmd, ExitOK, ExitFailed, ExitUsage, ExitLocked, ExitUnreachable, ExitAfterSwitch, ExitInterrupted)
	return cmd
}

func runRollback(ctx context.Context, g *globalOptions, streams IO, stage string, opts *rollbackOptions) error {
	if opts.to != "" && !layout.IsReleaseID(opts.to) {
		return &UserError{Msg: "--to " + opts.to + ": a release id is 14 digits, UTC YYYYMMDDHHMMSS; list them with: slipway releases " + stage}
	}
	dopts, err := loadOptions(g, streams, stage, "rollback "+stage)
	if err != nil {
		return err
	}
	events := jsonEvents(&dopts, streams, opts.json, "rollback")
	started := time.Now()
	res, err := deploy.Rollback(ctx, dopts, opts.to)
	endProgress(dopts.Events)
	events.finished(res, err)
	if res != nil {
		res.Duration = time.Since(started)
	}
	notifyOutcome(ctx, dopts, "rollback", started, res, err, streams)
	printDeployResult(streams.Err, "rollback", res, err)
	return err
}
