package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
	// configFile is -c's file, or the name looked for without -c
	// (configPath finds it).
	configFile        string
	configGiven       bool
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
	file, err := g.configPath()
	if err != nil {
		return deploy.Options{}, err
	}
	cfg, err := config.Load(file)
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
	progress := ui.NewProgress(streams.Err, names, g.quiet)
	progress.RoundTrips = g.verbose
	var events deploy.Observer = progress
	if streams.ErrTerminal && !g.quiet && !g.verbose {
		events = ui.NewLive(streams.Err, names, os.Getenv("NO_COLOR") == "")
		streams.interrupts.drawnBy(events)
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
	sshOpts := host.SSHOptions{
		AcceptNewHostKeys: g.acceptNewHostKeys, ForwardAgent: cfg.ForwardAgent,
		RenameAhead: strings.HasPrefix(command, "deploy "), // its rollout renames over SFTP
	}
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

// configFlag is -c/--config. It records that the flag was given, since only
// without it does slipway look for slipway.yml in parent directories.
type configFlag struct{ g *globalOptions }

func (f configFlag) Set(file string) error {
	f.g.configFile, f.g.configGiven = file, true
	return nil
}

func (f configFlag) String() string { return f.g.configFile }
func (f configFlag) Type() string   { return "file" }

// configPath is the configuration file to load: -c's, else the nearest
// slipway.yml from the working directory up to the repository root.
func (g *globalOptions) configPath() (string, error) {
	if g.configGiven {
		if _, err := os.Stat(g.configFile); errors.Is(err, os.ErrNotExist) {
			return "", &UserError{Msg: fmt.Sprintf("-c %s: no such file; create it with: slipway init -c %s", g.configFile, g.configFile)}
		}
		return g.configFile, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("finding %s: %w", g.configFile, err)
	}
	return findConfig(wd, g.configFile)
}

// findConfig looks for the file name in dir, then in its parents up to the
// root of the git repository holding dir (the first directory with a
// .git), as git finds its repository. Outside a repository it looks in dir
// only: a stray ~/slipway.yml must not apply to every directory below it.
// The path found is relative to dir, as the user would type it.
func findConfig(dir, name string) (string, error) {
	dirs, repoRoot := configDirs(dir)
	for _, d := range dirs {
		path := filepath.Join(d, name)
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			continue
		}
		// Whatever is there (a directory, a file we may not read) is what
		// the user meant: config.Load says what is wrong with it.
		if rel, err := filepath.Rel(dir, path); err == nil {
			return rel, nil
		}
		return path, nil
	}
	var msg string
	switch repoRoot {
	case "":
		msg = fmt.Sprintf("no %s in %s (not in a git repository, so its parents were not searched); create one with: slipway init", name, dir)
	case dir:
		msg = fmt.Sprintf("no %s in %s (the repository root); create one with: slipway init", name, dir)
	default:
		msg = fmt.Sprintf("no %s in %s or its parents up to the repository root %s; create one with: cd %s && slipway init", name, dir, repoRoot, repoRoot)
	}
	return "", &UserError{Msg: msg + "; or pass -c FILE"}
}

// configDirs lists dir and its parents up to the repository root, nearest
// first, and returns that root; outside a repository, only dir and "".
func configDirs(dir string) (dirs []string, repoRoot string) {
	for d := dir; ; d = filepath.Dir(d) {
		dirs = append(dirs, d)
		if _, err := os.Lstat(filepath.Join(d, ".git")); err == nil {
			return dirs, d
		}
		if filepath.Dir(d) == d {
			return []string{dir}, ""
		}
	}
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
