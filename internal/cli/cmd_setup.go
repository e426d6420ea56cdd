package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slipway-deploy/slipway/internal/deploy"
	"github.com/slipway-deploy/slipway/internal/ui"
)

// stageCommand builds the simple commands that take a stage and run one
// domain function.
func stageCommand(use, short, example string, run func(ctx context.Context, stage string) error) *cobra.Command {
	return &cobra.Command{
		Use:     use + " STAGE",
		Short:   short,
		Example: example,
		Args:    stageArgs,
		RunE:    func(cmd *cobra.Command, args []string) error { return run(cmd.Context(), args[0]) },
	}
}

func newSetupCmd(g *globalOptions, streams IO) *cobra.Command {
	return stageCommand("setup", "Create the deploy directory layout and shared directories on every host",
		"  slipway setup production",
		func(ctx context.Context, stage string) error {
			opts, err := loadOptions(g, streams, stage, "setup "+stage)
			if err != nil {
				return err
			}
			if err := deploy.Setup(ctx, opts); err != nil {
				return err
			}
			fmt.Fprintf(streams.Err, "setup done: %s is ready on %d host(s)\n", opts.Stage.DeployTo, len(opts.Hosts))
			return nil
		})
}

func newCheckCmd(g *globalOptions, streams IO) *cobra.Command {
	return stageCommand("check", "Preflight: reach every host, check tools, layout, shared files and disk; changes nothing",
		"  slipway check production",
		func(ctx context.Context, stage string) error {
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
		})
}

func newUnlockCmd(g *globalOptions, streams IO) *cobra.Command {
	return stageCommand("unlock", "Remove a deploy lock left by a run that died (check nobody is deploying first)",
		"  slipway unlock production",
		func(ctx context.Context, stage string) error {
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
		})
}

func newCleanupCmd(g *globalOptions, streams IO) *cobra.Command {
	return stageCommand("cleanup", "Delete old and failed releases, keeping keep_releases, the live one and the rollback target",
		"  slipway cleanup production",
		func(ctx context.Context, stage string) error {
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
		})
}
