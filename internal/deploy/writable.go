package deploy

import (
	"context"
	"path"
	"strings"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/shell"
)

// writableStep lets the web server write the release's writable
// directories. Those inside shared directories are left alone: shared data
// is never changed by a deploy (slipway setup prepares them once).
type writableStep struct {
	releaseHosts
	d *deployRun
}

func (writableStep) Name() string { return "writable" }

func (s writableStep) Run(ctx context.Context, t *Target) error { return runScripted(ctx, s, t) }

func (writableStep) done(context.Context, *Target) error { return nil }

func (s writableStep) script(context.Context, *Target) (string, error) {
	w := s.d.opts.Config.Writable
	_, inRelease := splitWritable(s.d.opts.Config)
	var paths []string
	for _, dir := range inRelease {
		paths = append(paths, path.Join(s.d.layout.ReleaseDir(s.d.releaseID), dir))
	}
	return writableScript(w.Mode, w.User, paths), nil
}

func (writableStep) Plan(context.Context, *Target) error { return nil }

// splitWritable separates writable directories inside shared ones from the
// ones in the release itself.
func splitWritable(cfg *config.Config) (shared, inRelease []string) {
	for _, dir := range cfg.Writable.Dirs {
		if underAny(dir, cfg.Shared.Dirs) {
			shared = append(shared, dir)
		} else {
			inRelease = append(inRelease, dir)
		}
	}
	return shared, inRelease
}

func underAny(p string, dirs []string) bool {
	for _, d := range dirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

// writableScript makes dirs writable for the web server: group-writable
// with setgid directories (files made inside keep the group), or an ACL
// for the web server's user. chmod -R and setfacl -R do not follow
// symlinks, so nothing outside the directories changes.
func writableScript(mode, user string, dirs []string) string {
	if len(dirs) == 0 {
		return "true"
	}
	if mode == "acl" {
		return shell.Script(`command -v setfacl >/dev/null || { echo 'writable.mode acl needs setfacl on the host (apt-get install acl), or use writable.mode group' >&2; exit 1; }
mkdir -p -- {{dirs}} && setfacl -R -m {{acl}} -m {{default_acl}} -- {{dirs}}`, shell.Args{
			"dirs": dirs, "acl": "u:" + user + ":rwX", "default_acl": "d:u:" + user + ":rwX",
		})
	}
	return shell.Script("mkdir -p -- {{dirs}} && chmod -R g+w -- {{dirs}} && find {{dirs}} -type d -exec chmod g+s {} +", shell.Args{"dirs": dirs})
}
