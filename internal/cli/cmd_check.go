package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slipway-deploy/slipway/internal/deploy"
	"github.com/slipway-deploy/slipway/internal/ui"
)

func newCheckCmd(g *globalOptions, streams IO) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "check STAGE",
		Short:   "Preflight: reach every host, check tools, layout, shared files and disk; changes nothing",
		Example: "  slipway check production",
		Args:    stageArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runCheck(cmd.Context(), g, streams, args[0])
		},
	}
	setExitStatus(cmd, ExitOK, ExitFailed, ExitUsage, ExitUnreachable, ExitInterrupted)
	return cmd
}

func runCheck(ctx context.Context, g *globalOptions, streams IO, stage string) error {
	opts, err := loadOptions(g, streams, stage, "check "+stage)
	if err != nil {
		return err
	}
	reports, err := deploy.Check(ctx, opts)
	var rows [][]string
	for _, r := range reports {
		lock := "free"
		if r.Lock != nil {
			lock = "LOCKED by " + r.Lock.String()
		}
		status := "ok"
		if len(r.Warnings) > 0 {
			status = fmt.Sprintf("ok, %d warning(s) above", len(r.Warnings))
		}
		if len(r.Problems) > 0 {
			status = strings.Join(r.Problems, "; ")
		}
		rows = append(rows, []string{r.Host, orDash(r.Current), fmt.Sprint(r.Releases), fmt.Sprintf("%.1f GB", float64(r.FreeKB)/1e6), lock, status})
	}
	ui.Table(streams.Out, []string{"HOST", "LIVE", "RELEASES", "FREE", "LOCK", "STATUS"}, rows)
	return err
}
