package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/deploy"
	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/ui"
)

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
