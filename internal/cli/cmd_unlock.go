package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/slipway-deploy/slipway/internal/deploy"
)

func newUnlockCmd(g *globalOptions, streams IO) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "unlock STAGE",
		Short:   "Remove a deploy lock left by a run that died (check nobody is deploying first)",
		Example: "  slipway unlock production",
		Args:    stageArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runUnlock(cmd.Context(), g, streams, args[0])
		},
	}
	setExitStatus(cmd, ExitOK, ExitFailed, ExitUsage, ExitUnreachable, ExitInterrupted)
	return cmd
}

func runUnlock(ctx context.Context, g *globalOptions, streams IO, stage string) error {
	opts, err := loadOptions(g, streams, stage, "unlock "+stage)
	if err != nil {
		return err
	}
	holders, err := deploy.Unlock(ctx, opts)
	for _, h := range opts.Hosts {
		if owner := holders[h.Name]; owner != nil {
			fmt.Fprintf(streams.Err, "%s: removed the lock held by %s\n", h.Name, owner)
		} else if err == nil {
			fmt.Fprintf(streams.Err, "%s: was not locked\n", h.Name)
		}
	}
	return err
}
