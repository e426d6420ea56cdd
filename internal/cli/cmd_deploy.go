package cli

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway-deploy/slipway/internal/deploy"
	"github.com/slipway-deploy/slipway/internal/ui"
)

// deployOptions are the flags of deploy; plan takes the ones that pick the
// revision (addRevisionFlags) and --json.
type deployOptions struct {
	revision   string
	branch     string
	tag        string
	allowDirty bool
	force      bool
	canary     int
	noRollback bool
	json       bool
	dryRun     bool
	from       string // promote the tree live on this stage
	rebuild    bool   // build even when the artifact cache has the build
}

func newDeployCmd(g *globalOptions, streams IO) *cobra.Command {
	opts := &deployOptions{}
	cmd := &cobra.Command{
		Use:   "deploy STAGE",
		Short: "Ship a new release to every host of the stage and switch to it",
		Example: `  slipway deploy production
  slipway deploy production --tag v1.4.2
  slipway deploy staging --branch feature/cart --hosts web1,web2
  slipway deploy production --from staging
  slipway -c deploy/slipway.yml deploy demo`,
		Args: stageArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDeploy(cmd.Context(), g, streams, args[0], opts)
		},
	}
	f := cmd.Flags()
	addRevisionFlags(f, opts)
	f.BoolVar(&opts.force, "force", false, "deploy even if the revision is already live on every host, or the hosts disagree on the live release")
	f.BoolVar(&opts.dryRun, "dry-run", false, "show what the deploy would do on each host and change nothing (same as slipway plan)")
	f.IntVar(&opts.canary, "canary", 0, "switch this many hosts first and check their health before the rest")
	f.BoolVar(&opts.noRollback, "no-rollback", false, "leave the release live when its health check fails")
	f.BoolVar(&opts.json, "json", false, "print NDJSON events on stdout (schema: docs/json-events.md); progress on stderr shows only errors")
	setExitStatus(cmd, ExitOK, ExitFailed, ExitUsage, ExitLocked, ExitUnreachable, ExitAfterSwitch, ExitRolledBack, ExitInterrupted)
	return cmd
}

func runDeploy(ctx context.Context, g *globalOptions, streams IO, stage string, opts *deployOptions) error {
	if opts.dryRun {
		return runPlan(ctx, g, streams, stage, opts)
	}
	dopts, src, made, err := loadDeploy(ctx, g, streams, stage, "deploy "+stage, opts)
	if err != nil {
		return err
	}
	defer made.Remove()
	if opts.canary < 0 {
		return &UserError{Msg: "--canary: give a number of hosts, e.g. --canary 1"}
	}
	dopts.Canary, dopts.NoRollback = opts.canary, opts.noRollback
	events := jsonEvents(&dopts, streams, opts.json, "deploy")
	made.reportTo(dopts.Events)
	started := time.Now()
	res, err := deploy.Deploy(ctx, dopts, src)
	made.wait()
	made.deployed(stage, res, err)
	endProgress(dopts.Events)
	events.finished(res, err)
	if res != nil {
		res.Revision = cmp.Or(res.Revision, src.Revision)
		res.Duration = time.Since(started)
	}
	notifyOutcome(ctx, dopts, "deploy", started, res, err, streams)
	if err == nil && res.AlreadyLive {
		fmt.Fprintf(streams.Err, "revision %s is already live on every host; nothing to do (deploy it again with --force)\n", ui.Short(res.Revision))
		return nil
	}
	printDeployResult(streams.Err, "deploy", res, err)
	return err
}
