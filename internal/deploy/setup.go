package deploy

import (
	"context"
	"path"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/layout"
	"github.com/slipway-deploy/slipway/internal/shell"
)

// Setup creates the deploy directory layout and the shared directories on
// every selected host. Shared files are not created (their content is the
// user's), but missing ones are reported with how to create them.
func Setup(ctx context.Context, opts Options) error {
	r := newRun(ctx, opts)
	l := r.layout
	shared := opts.Config.Shared
	setup := stepFunc{name: "setup", fn: func(ctx context.Context, t *Target) error {
		script := setupScript(l, opts.Config)
		if _, err := t.Exec.Exec(ctx, host.Command{Script: script}); err != nil {
			return r.explainFailure(ctx, t, "creating the layout under "+l.DeployTo, err)
		}
		return nil
	}}
	check := stepFunc{name: "check shared", fn: func(ctx context.Context, t *Target) error {
		for _, f := range t.State.MissingShared {
			r.warn(t, "shared file %s does not exist yet; create it before deploying: %s", l.SharedPath(f), copyCommand(t.Host, l.SharedPath(f)))
		}
		return nil
	}}
	return r.pipeline([]Step{perHost(connectStep{r: r}), perHost(setup), perHost(inspectStep{r: r, sharedFiles: shared.Files}), perHost(check)})
}

// setupScript creates the layout: the releases, shared and history
// directories, each shared directory and the parents of shared files, and
// makes the writable directories inside shared ones writable.
func setupScript(l layout.Layout, cfg *config.Config) string {
	dirs := []string{l.ReleasesDir(), l.SharedDir(), l.HistoryDir()}
	for _, d := range cfg.Shared.Dirs {
		dirs = append(dirs, l.SharedPath(d))
	}
	for _, f := range cfg.Shared.Files {
		dirs = append(dirs, path.Dir(l.SharedPath(f)))
	}
	script := shell.Script(`umask 022 && mkdir -p -- {{dirs}} || exit
[ -w {{deploy_to}} ] || { printf 'cannot write in %s: Permission denied\n' {{deploy_to}} >&2; exit 1; }`, shell.Args{"dirs": dirs, "deploy_to": l.DeployTo})
	if sharedWritable, _ := splitWritable(cfg); len(sharedWritable) > 0 {
		var paths []string
		for _, d := range sharedWritable {
			paths = append(paths, l.SharedPath(d))
		}
		script += "\n" + writableScript(cfg.Writable.Mode, cfg.Writable.User, paths)
	}
	return script
}
