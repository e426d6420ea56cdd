package deploy

import (
	"context"
	"path"
	"strings"

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
		res, err := t.Exec.Exec(ctx, host.Command{Script: script})
		if err != nil {
			return r.explainFailure(ctx, t, "creating the layout under "+l.DeployTo, err)
		}
		for _, line := range strings.Split(string(res.Stdout), "\n") {
			if rest, ok := strings.CutPrefix(line, "not-own "); ok {
				n, p, _ := strings.Cut(rest, " ")
				r.warn(t, "%s entries under %s belong to another user (the web server, most likely) and keep their permissions; the deploy user can only change its own. If the web server must write them and cannot: sudo chown -R %s %s, or writable.mode: acl", n, p, userOrDeploy(t), p)
			}
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

// setupWritableScript makes the shared writable directories (and the
// writable shared files) writable for the web server, as writableScript
// does in a release, but only what the deploy user owns: on a live host the
// web server has made files there, which only their owner may change, and
// setup must still succeed and can be run again. It prints "not-own N
// PATH" for each path holding N entries of another user.
func setupWritableScript(mode, user string, dirs, files []string) string {
	args := shell.Args{"dirs": dirs, "files": files, "acl": "u:" + user + ":rwX", "default_acl": "d:u:" + user + ":rwX"}
	var b strings.Builder
	b.WriteString("me=$(id -u)\n")
	if len(dirs) > 0 {
		b.WriteString("mkdir -p -- {{dirs}} || exit\n")
	}
	all := shell.Raw(shell.Script("{{dirs}} {{files}}", args))
	args["all"] = all
	if mode == "acl" {
		b.WriteString(`command -v setfacl >/dev/null || { echo 'writable.mode acl needs setfacl on the host (apt-get install acl), or use writable.mode group' >&2; exit 1; }
for p in {{all}}; do [ -e "$p" ] || continue
  find "$p" -user "$me" ! -type l -exec setfacl -m {{acl}} {} + || exit
  find "$p" -user "$me" -type d -exec setfacl -m {{default_acl}} {} + || exit
done
`)
	} else {
		b.WriteString(`for p in {{all}}; do [ -e "$p" ] || continue
  find "$p" -user "$me" -type d -exec chmod g+ws {} + || exit
  find "$p" -user "$me" ! -type d ! -type l -exec chmod g+w {} + || exit
done
`)
	}
	b.WriteString(`for p in {{all}}; do [ -e "$p" ] || continue
  n=$(find "$p" ! -user "$me" | wc -l); [ "$n" -eq 0 ] || printf 'not-own %s %s\n' "$n" "$p"
done
`)
	return shell.Script(b.String(), args)
}

func userOrDeploy(t *Target) string {
	if t.Host.User != "" {
		return t.Host.User
	}
	return "DEPLOY_USER"
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
	sharedWritable, _ := splitWritable(cfg)
	var paths []string
	for _, d := range sharedWritable {
		paths = append(paths, l.SharedPath(d))
	}
	var files []string
	for _, f := range cfg.Writable.Files {
		files = append(files, l.SharedPath(f))
	}
	if len(paths)+len(files) > 0 {
		script += "\n" + setupWritableScript(cfg.Writable.Mode, cfg.Writable.User, paths, files)
	}
	return script
}
