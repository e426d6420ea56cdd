package cli

import (
	"fmt"
	"runtime/debug"

	"github.com/spf13/cobra"
)

// DefaultParallel is --parallel's default: a step's round trips overlap
// across this many hosts, and each costs a connection and a few kB, so a
// fleet of dozens works in one wave (16, the default before, made 50
// hosts wait four times for each round trip). The bench reports it.
const DefaultParallel = 64

// Version is set at build time: -ldflags "-X github.com/slipway-deploy/slipway/internal/cli.Version=v1.2.3"
// (make build and make dist do). Left empty, the version is the module's,
// which go install ...@v1.2.3 records in the binary; see versionLine.
var Version string

func newVersionCmd(streams IO) *cobra.Command {
	cmd := &cobra.Command{
		Use:     "version",
		Short:   "Print slipway's version and commit",
		Example: "  slipway version\n  slipway --version",
		Args:    cobra.NoArgs,
		Run:     func(*cobra.Command, []string) { runVersion(streams) },
	}
	setExitStatus(cmd, ExitOK, ExitUsage)
	return cmd
}

func runVersion(streams IO) {
	fmt.Fprintln(streams.Out, versionLine())
}

// versionLine is what slipway version and slipway --version print:
// "slipway v1.2.3 (commit 0123abc…)", the commit when the build recorded
// one.
func versionLine() string {
	info, _ := debug.ReadBuildInfo()
	line := "slipway " + version(Version, info)
	if info != nil {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" {
				line += " (commit " + s.Value + ")"
			}
		}
	}
	return line
}

// version is the stamped version; else the main module's version, which
// go install records (a plain go build in a git checkout records a
// pseudo-version; with -buildvcs=false or outside git, "(devel)"); else
// "dev".
func version(stamped string, info *debug.BuildInfo) string {
	if stamped != "" {
		return stamped
	}
	if info != nil && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "dev"
}
