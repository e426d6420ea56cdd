package cli

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// Version is set at build time: -ldflags "-X github.com/slipway-deploy/slipway/internal/cli.Version=v1.2.3".
var Version = "dev"

func newVersionCmd(streams IO) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "version",
		Short:   "Print slipway's version and commit",
		Example: "  slipway version",
		Args:    cobra.NoArgs,
		Run:     func(*cobra.Command, []string) { runVersion(streams) },
	}
	setExitStatus(cmd, ExitOK, ExitUsage)
	return cmd
}

func runVersion(streams IO) {
	commit := "unknown"
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				commit = s.Value
			}
		}
	}
	fmt.Fprintf(streams.Out, "slipway %s (commit %s)\n", Version, commit)
}
