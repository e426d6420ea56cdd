package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/slipway-deploy/slipway/internal/deploy"
)

func newSetupCmd(g *globalOptions, streams IO) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "setup STAGE",
		Short:   "Create the deploy directory layout and shared directories on every host",
		Example: "  slipway setup production",
		Args:    stageArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSetup(cmd.Context(), g, streams, args[0])
		},
	}
	setExitStatus(cmd, ExitOK, ExitFailed, ExitUsage, ExitUnreachable, ExitInterrupted)
	return cmd
}

func runSetup(ctx context.Context, g *globalOptions, streams IO, stage string) error {
	opts, err := loadOptions(g, streams, stage, "setup "+stage)
	if err != nil {
		return err
	}
	if err := deploy.Setup(ctx, opts); err != nil {
		return err
	}
	fmt.Fprintf(streams.Err, "setup done: %s is ready on %d host(s)\n", opts.Stage.DeployTo, len(opts.Hosts))
	return nil
}
