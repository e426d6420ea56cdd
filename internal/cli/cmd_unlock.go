package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/slipway-deploy/slipway/internal/deploy"
)

type unlockOptions struct {
	force bool
}

func newUnlockCmd(g *globalOptions, streams IO) *cobra.Command {
	opts := &unlockOptions{}
	cmd := &cobra.Command{
		Use:   "unlock STAGE",
		Short: "Remove a deploy lock left by a run that died, or a manual lock (slipway lock)",
		Long: `unlock removes the deploy lock on every host of the stage: a lock whose holder is
gone (a process of this machine that no longer runs), one that lapsed (not refreshed
within lock_ttl), or a manual one taken with slipway lock. A lock a run may still hold
is refused on every host, naming its holder, unless --force: a run whose lock is
removed stops before its switch and never deletes another run's release.`,
		Example: `  slipway unlock production
  slipway unlock production --force`,
		Args: stageArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runUnlock(cmd.Context(), g, streams, args[0], opts)
		},
	}
	cmd.Flags().BoolVar(&opts.force, "force", false, "remove the lock even if its holder may still be running")
	setExitStatus(cmd, ExitOK, ExitFailed, ExitUsage, ExitLocked, ExitUnreachable, ExitInterrupted)
	return cmd
}

func runUnlock(ctx context.Context, g *globalOptions, streams IO, stage string, uopts *unlockOptions) error {
	opts, err := loadOptions(g, streams, stage, "unlock "+stage)
	if err != nil {
		return err
	}
	holders, err := deploy.Unlock(ctx, opts, uopts.force)
	for _, h := range opts.Hosts {
		if owner := holders[h.Name]; owner != nil {
			fmt.Fprintf(streams.Err, "%s: removed the lock held by %s\n", h.Name, owner)
		} else if err == nil {
			fmt.Fprintf(streams.Err, "%s: was not locked\n", h.Name)
		}
	}
	return err
}
