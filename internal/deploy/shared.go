package deploy

import (
	"context"
	"path"
	"strings"

	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/layout"
	"github.com/slipway-deploy/slipway/internal/shell"
)

// linkSharedStep links each shared path into the release, replacing what the
// release shipped there. A shared directory that does not exist yet is
// seeded from the release (as Deployer does), so a fresh host gets the
// skeleton the app expects (storage/framework/...); an existing one is
// never touched.
type linkSharedStep struct {
	releaseHosts
	d *deployRun
}

func (linkSharedStep) Name() string { return "link shared" }

func (s linkSharedStep) Run(ctx context.Context, t *Target) error {
	shared := s.d.opts.Config.Shared
	script := linkSharedScript(s.d.layout, s.d.releaseID, shared.Dirs, shared.Files)
	_, err := t.Exec.Exec(ctx, host.Command{Script: script})
	return err
}

func (linkSharedStep) Plan(context.Context, *Target) error { return nil }

func linkSharedScript(l layout.Layout, id string, dirs, files []string) string {
	release := l.ReleaseDir(id)
	var b strings.Builder
	b.WriteString("set -e\numask 022\n")
	for _, dir := range dirs {
		b.WriteString(shell.Script(`if [ ! -e {{shared}} ] && [ ! -L {{shared}} ]; then mkdir -p -- {{parent}}; if [ -d {{seed}} ] && [ ! -L {{seed}} ]; then cp -Rp -- {{seed}} {{shared}}; else mkdir -- {{shared}}; fi; fi`+"\n", shell.Args{
			"shared": l.SharedPath(dir), "parent": path.Dir(l.SharedPath(dir)), "seed": path.Join(release, dir),
		}))
		b.WriteString(linkScript(l, release, dir))
	}
	for _, file := range files {
		b.WriteString(linkScript(l, release, file))
	}
	return b.String()
}

// linkScript replaces rel in the release with a link to its shared copy.
func linkScript(l layout.Layout, release, rel string) string {
	inRelease := path.Join(release, rel)
	return shell.Script("rm -rf -- {{path}}\nmkdir -p -- {{parent}}\nln -s -- {{target}} {{path}}\n", shell.Args{
		"path": inRelease, "parent": path.Dir(inRelease), "target": l.SharedLinkTarget(rel),
	})
}
