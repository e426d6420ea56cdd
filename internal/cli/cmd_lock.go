package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slipway-deploy/slipway/internal/deploy"
)

type lockOptions struct {
	message string
}

func newLockCmd(g *globalOptions, streams IO) *cobra.Command {
	opts := &lockOptions{}
	cmd := &cobra.Command{
		Use:   "lock STAGE -m REASON",
		Short: "Hold the deploy lock of a stage until slipway unlock (a freeze, a migration by hand)",
		Long: `lock takes the deploy lock on every host of the stage and keeps it: deploys,
rollbacks and cleanups are refused, naming you and the reason, until slipway unlock
STAGE. A manual lock never lapses and is never taken over.`,
		Example: `  slipway lock production -m "Black Friday freeze"
  slipway unlock production`,
		Args: stageArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runLock(cmd.Context(), g, streams, args[0], opts)
		},
	}
	cmd.Flags().StringVarP(&opts.message, "message", "m", "", "why the stage is locked (shown to whoever is refused)")
	setExitStatus(cmd, ExitOK, ExitFailed, ExitUsage, ExitLocked, ExitUnreachable, ExitInterrupted)
	return cmd
}

func runLock(ctx context.Context, g *globalOptions, streams IO, stage string, lopts *lockOptions) error {
	if strings.TrimSpace(lopts.message) == "" {
		return &UserError{Msg: "slipway lock needs a reason: -m \"why the stage is locked\""}
	}
	opts, err := loadOptions(g, streams, stage, "lock "+stage)
	if err != nil {
		return err
	}
	opts.LockMessage = lopts.message
	if err := deploy.HoldLock(ctx, opts); err != nil {
		return err
	}
	endProgress(opts.Events)
	fmt.Fprintf(streams.Err, "stage %s is locked on %d host(s): %q; slipway unlock %s releases it\n", stage, len(opts.Hosts), lopts.message, stage)
	return nil
}
