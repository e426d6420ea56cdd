// Package cli is slipway's command line: one file per command
// (cmd_<name>.go) with its options and its runX function over the domain
// packages, and shared files for what several commands use. No deploy logic
// lives here.
package cli

import (
	"context"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/slipway-deploy/slipway/internal/config"
)

// IO is where a command reads and writes; tests capture it.
type IO struct {
	In  io.Reader
	Out io.Writer // results: tables, JSON
	Err io.Writer // progress, warnings, errors
	// ErrTerminal says Err is a terminal: progress is then drawn live,
	// in colour unless NO_COLOR is set.
	ErrTerminal bool
}

// Main runs slipway with args and returns the exit code.
func Main(ctx context.Context, args []string, streams IO) int {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if f, ok := streams.Err.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		streams.ErrTerminal = true
	}
	root := newRootCmd(streams)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err != nil {
		printError(streams.Err, err)
	}
	return exitCode(err)
}

func newRootCmd(streams IO) *cobra.Command {
	g := &globalOptions{}
	root := &cobra.Command{
		Use:   "slipway",
		Short: "Atomic, zero-downtime releases to one server or a fleet over SSH",
		Long: `slipway ships a web application to one server or a fleet over SSH. Each deploy
builds a complete release beside the live one, links shared data into it, and goes
live by one atomic rename of the current symlink; rollback is the same switch back.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.Err)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &UserError{Msg: err.Error()} })
	pf := root.PersistentFlags()
	pf.StringVarP(&g.configFile, "config", "c", "slipway.yml", "configuration file")
	pf.BoolVar(&g.acceptNewHostKeys, "accept-new-host-keys", false, "record host keys not yet in known_hosts (a changed key is always refused)")
	pf.StringSliceVar(&g.hosts, "hosts", nil, "only these hosts of the stage (comma-separated names as written in the config)")
	pf.StringSliceVar(&g.roles, "roles", nil, "only the hosts with one of these roles (comma-separated)")
	pf.IntVar(&g.parallel, "parallel", 16, "hosts worked on at once")
	pf.BoolVarP(&g.quiet, "quiet", "q", false, "print only errors, warnings and the result")
	pf.BoolVarP(&g.verbose, "verbose", "v", false, "show each remote command and what it printed")
	root.AddCommand(
		newDeployCmd(g, streams),
		newRollbackCmd(g, streams),
		newReleasesCmd(g, streams),
		newStatusCmd(g, streams),
		newSetupCmd(g, streams),
		newCheckCmd(g, streams),
		newUnlockCmd(g, streams),
		newCleanupCmd(g, streams),
		newVersionCmd(streams),
		newInitCmd(g, streams),
		newPlanCmd(g, streams),
		newExecCmd(g, streams),
		newSSHCmd(g, streams),
	)
	for _, cmd := range root.Commands() {
		if strings.Contains(cmd.Use, "STAGE") {
			cmd.ValidArgsFunction = completeStages(g)
		}
	}
	return root
}

// completeStages completes a stage name from the configuration file.
func completeStages(g *globalOptions) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		cfg, err := config.Load(g.configFile)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return cfg.StageNames(), cobra.ShellCompDirectiveNoFileComp
	}
}
