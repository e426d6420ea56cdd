package deploy

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/shell"
)

// hookStep runs one hook command in the release directory of each host it
// is for.
type hookStep struct {
	r          *run
	phase      string
	hook       config.Hook
	releaseFor func(*Target) string // the release directory the hook runs in
	// tolerate turns the hook's failure into a warning (before_rollback
	// hooks of a rollback --force).
	tolerate bool
	env      []string // more environment, NAME=value
}

// hookSteps makes one step of each hook of a phase.
func hookSteps(r *run, phase string, hooks []config.Hook, releaseFor func(*Target) string) []Step {
	var steps []Step
	for _, h := range hooks {
		steps = append(steps, perHost(hookStep{r: r, phase: phase, hook: h, releaseFor: releaseFor}))
	}
	return steps
}

// beforeRollbackHooks are the before_rollback hooks, run in the release a
// rollback leaves (still live), before any host switches back.
func beforeRollbackHooks(r *run, tolerate bool) []Step {
	var steps []Step
	for _, h := range r.opts.Config.Hooks.BeforeRollback {
		steps = append(steps, perHost(hookStep{r: r, phase: "before_rollback", hook: h, releaseFor: currentRelease, tolerate: tolerate}))
	}
	return steps
}

// afterRollbackHooks are the after_rollback hooks, run in the release each
// host went back to: by a rollback, and by a deploy that switched back.
func afterRollbackHooks(r *run) []hookStep {
	var steps []hookStep
	for _, h := range r.opts.Config.Hooks.AfterRollback {
		steps = append(steps, hookStep{r: r, phase: "after_rollback", hook: h, releaseFor: currentRelease})
	}
	return steps
}

// currentRelease is the release live on t.
func currentRelease(t *Target) string {
	if t.State == nil {
		return ""
	}
	return t.State.Current
}

func commandsAsHooks(commands []string) []config.Hook {
	hooks := make([]config.Hook, len(commands))
	for i, c := range commands {
		hooks[i] = config.Hook{Run: c}
	}
	return hooks
}

func (s hookStep) Name() string {
	const width = 40
	command := strings.Join(strings.Fields(s.hook.Run), " ")
	if len(command) > width {
		command = command[:width-1] + "…"
	}
	return s.phase + ": " + command
}

// Where keeps a hook to the hosts it is for: those with one of its roles
// (no roles: every host that takes releases; a no_release host only
// through its roles), and of those only the primary for a `once` hook.
func (s hookStep) Where(t *Target) Selection {
	switch {
	case !hasRole(t, s.hook.Roles):
		return SkipHere
	case s.hook.Once && t != s.r.primary(s.hook.Roles...):
		return SkipHere
	}
	return RunHere
}

func (s hookStep) Run(ctx context.Context, t *Target) error {
	err := runHook(ctx, s.r, t, s.hook.Run, s.releaseFor(t), s.env...)
	if err != nil && s.tolerate && ctx.Err() == nil {
		s.r.warn(t, "%s failed, and --force goes on: %v", s.phase, err)
		return nil
	}
	return err
}

// Plan lists the hook among those that would run on t.
func (s hookStep) Plan(_ context.Context, t *Target) error {
	hp := s.r.plan.host(t)
	hp.Hooks = append(hp.Hooks, s.phase+": "+s.hook.Run)
	return nil
}

// runHook runs a user's command on a host in the release directory, its
// output streamed as events. The command is one quoted argument to sh -c,
// so it is parsed by sh whatever the login shell is, and every value in its
// environment is quoted.
func runHook(ctx context.Context, r *run, t *Target, command, releaseID string, extraEnv ...string) error {
	l := r.layout
	env := append([]string{
		"SLIPWAY_RELEASE_ID=" + releaseID,
		"SLIPWAY_RELEASE_PATH=" + l.ReleaseDir(releaseID),
		"SLIPWAY_DEPLOY_PATH=" + l.DeployTo,
		"SLIPWAY_SHARED_PATH=" + l.SharedDir(),
		"SLIPWAY_PREVIOUS_RELEASE=" + previousOf(t),
		"SLIPWAY_STAGE=" + r.opts.Stage.Name,
		"SLIPWAY_HOST=" + t.Name(),
	}, extraEnv...)
	// Secrets come on standard input as quoted assignments: a command
	// line is visible to every user of the host (ps, /proc).
	var secrets strings.Builder
	for _, v := range r.opts.Config.Env {
		if v.Secret {
			secrets.WriteString(shell.Script("export {{name}}={{value}}\n", shell.Args{"name": v.Name, "value": v.Value}))
		} else {
			env = append(env, v.Name+"="+v.Value)
		}
	}
	var stdin io.Reader
	if secrets.Len() > 0 {
		stdin = strings.NewReader(secrets.String())
	}
	dir := l.ReleaseDir(releaseID)
	if t.Host.NoRelease {
		dir = "" // no release here: the hook runs in the deploy user's home
	}
	out := &lineWriter{mask: r.mask, emit: func(line string) {
		r.emit(Event{Kind: Output, Host: t.Name(), Step: command, Line: line})
	}}
	_, err := t.Exec.Exec(ctx, host.Command{Script: hookScript(dir, env, stdin != nil, command), Stdin: stdin, Stdout: out, Stderr: out})
	out.Flush()
	if ee, ok := err.(*host.ExitError); ok {
		return fmt.Errorf("%q exited with status %d\n%s", command, ee.Code, out.Tail())
	}
	return err
}

// hookScript runs command with sh in dir ("" for the login directory),
// with env, after reading secret assignments from stdin if withSecrets.
func hookScript(dir string, env []string, withSecrets bool, command string) string {
	script := shell.Script("exec env {{env}} sh -c {{command}} </dev/null", shell.Args{"env": env, "command": command})
	if withSecrets {
		script = `eval "$(cat)" && ` + script
	}
	if dir != "" {
		script = shell.Script("cd -- {{dir}} && ", shell.Args{"dir": dir}) + script
	}
	return script
}

// mask hides the values of secret variables in text that leaves the run
// (hook output, errors).
func (r *run) mask(s string) string {
	for _, v := range r.opts.Config.Env {
		if v.Secret && len(v.Value) >= 3 {
			s = strings.ReplaceAll(s, v.Value, "***")
		}
	}
	return s
}

func previousOf(t *Target) string {
	if t.State == nil {
		return ""
	}
	return t.State.Previous
}
