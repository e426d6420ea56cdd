// Package cli is slipway's command line: one options struct and one runX
// function per command over the domain packages. No deploy logic lives here.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/deploy"
	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/ui"
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

// globalOptions are the flags every command accepts, before or after its name.
type globalOptions struct {
	configFile        string
	acceptNewHostKeys bool
	hosts             []string
	roles             []string
	parallel          int
	quiet             bool
	verbose           bool
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

// stageArgs accepts exactly one stage name.
func stageArgs(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return &UserError{Msg: fmt.Sprintf("%s needs one stage name, e.g. slipway %s production", cmd.Name(), cmd.Name())}
	}
	return nil
}

// loadOptions loads the config, picks the stage and hosts, and wires the
// executors and progress output: what every stage command starts with.
func loadOptions(g *globalOptions, streams IO, stageName, command string) (deploy.Options, error) {
	if g.parallel < 1 {
		return deploy.Options{}, &UserError{Msg: fmt.Sprintf("--parallel %d: must be at least 1", g.parallel)}
	}
	if _, err := os.Stat(g.configFile); errors.Is(err, os.ErrNotExist) {
		return deploy.Options{}, &UserError{Msg: fmt.Sprintf("no configuration file %s here; write one (see README) or pass -c FILE", g.configFile)}
	}
	cfg, err := config.Load(g.configFile)
	if err != nil {
		return deploy.Options{}, err
	}
	stage, err := cfg.Stage(stageName)
	if err != nil {
		return deploy.Options{}, &UserError{Msg: err.Error()}
	}
	hosts, err := selectHosts(stage, g.hosts)
	if err != nil {
		return deploy.Options{}, err
	}
	if hosts, err = selectRoles(stage, hosts, g.roles); err != nil {
		return deploy.Options{}, err
	}
	names := make([]string, len(hosts))
	for i, h := range hosts {
		names[i] = h.Name
	}
	var events deploy.Observer = ui.NewProgress(streams.Err, names, g.quiet)
	if streams.ErrTerminal && !g.quiet && !g.verbose {
		events = ui.NewLive(streams.Err, names, os.Getenv("NO_COLOR") == "")
	}
	faults := host.Faults()
	wrap := func(ex host.Executor) host.Executor {
		ex = host.WithFaults(ex, faults)
		if g.verbose {
			name := ex.Name()
			ex = host.Verbose(ex, func(line string) {
				events.Event(deploy.Event{Kind: deploy.Output, Host: name, Step: "-v", Line: line})
			})
		}
		return ex
	}
	sshOpts := host.SSHOptions{AcceptNewHostKeys: g.acceptNewHostKeys, ForwardAgent: cfg.ForwardAgent}
	return deploy.Options{
		Config:   cfg,
		Stage:    stage,
		Hosts:    hosts,
		Parallel: g.parallel,
		LockTTL:  cfg.LockTTL,
		Events:   events,
		Command:  command,
		Dial: func(ctx context.Context, h config.Host) (host.Executor, error) {
			if h.Local {
				return wrap(host.NewLocal()), nil
			}
			ex, err := host.DialSSH(ctx, host.SSHTarget{Name: h.Name, Host: h.Host, User: h.User, Port: h.Port}, sshOpts)
			if err != nil {
				return nil, err
			}
			return wrap(ex), nil
		},
	}, nil
}

// selectHosts keeps the stage's hosts named in --hosts, in stage order.
func selectHosts(stage *config.Stage, only []string) ([]config.Host, error) {
	if len(only) == 0 {
		return stage.Hosts, nil
	}
	var out []config.Host
	for _, name := range only {
		found := false
		for _, h := range stage.Hosts {
			if h.Name == name || h.Host == name {
				found = true
			}
		}
		if !found {
			var names []string
			for _, h := range stage.Hosts {
				names = append(names, h.Name)
			}
			return nil, &UserError{Msg: fmt.Sprintf("--hosts: %q is not a host of stage %s; its hosts are: %s", name, stage.Name, strings.Join(names, ", "))}
		}
	}
	for _, h := range stage.Hosts {
		for _, name := range only {
			if h.Name == name || h.Host == name {
				out = append(out, h)
				break
			}
		}
	}
	return out, nil
}

// endProgress leaves a live progress view's last state on screen, before
// the summary is printed under it.
func endProgress(o deploy.Observer) {
	if c, ok := o.(interface{ Close() }); ok {
		c.Close()
	}
}

// selectRoles keeps the hosts with one of roles.
func selectRoles(stage *config.Stage, hosts []config.Host, roles []string) ([]config.Host, error) {
	if len(roles) == 0 {
		return hosts, nil
	}
	var out []config.Host
	for _, h := range hosts {
		for _, r := range roles {
			if slices.Contains(h.Roles, r) {
				out = append(out, h)
				break
			}
		}
	}
	if len(out) == 0 {
		return nil, &UserError{Msg: fmt.Sprintf("--roles %s: no host of stage %s has one of these roles", strings.Join(roles, ","), stage.Name)}
	}
	return out, nil
}

// printError prints a failure: each host's error on its own line.
func printError(w io.Writer, err error) {
	var configErr *config.Error
	if errors.As(err, &configErr) {
		fmt.Fprintf(w, "error: %v\n", err)
		return
	}
	parts := deploy.Errors(err)
	if len(parts) == 1 {
		fmt.Fprintf(w, "error: %v\n", err)
		return
	}
	fmt.Fprintln(w, "errors:")
	for _, e := range parts {
		fmt.Fprintf(w, "  %v\n", strings.ReplaceAll(e.Error(), "\n", "\n    "))
	}
}
