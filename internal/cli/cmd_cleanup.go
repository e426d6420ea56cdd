package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slipway-deploy/slipway/internal/deploy"
)

func newCleanupCmd(g *globalOptions, streams IO) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "cleanup STAGE",
		Short:   "Delete old and failed releases, keeping keep_releases, the live one and the rollback target",
		Example: "  slipway cleanup production",
		Args:    stageArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCleanup(cmd.Context(), g, streams, args[0])
		},
	}
	setExitStatus(cmd, ExitOK, ExitFailed, ExitUsage, ExitLocked, ExitUnreachable, ExitInterrupted)
	return cmd
}

func runCleanup(ctx context.Context, g *globalOptions, streams IO, stage string) error {
	opts, err := loadOptions(g, streams, stage, "cleanup "+stage)
	if err != nil {
		return err
	}
	results, err := deploy.Cleanup(ctx, opts)
	for _, h := range opts.Hosts {
		res := results[h.Name]
		if len(res.Deleted) == 0 {
			fmt.Fprintf(streams.Err, "%s: nothing deleted\n", h.Name)
		} else {
			fmt.Fprintf(streams.Err, "%s: deleted %s\n", h.Name, strings.Join(res.Deleted, ", "))
		}
	}
	return err
}
