package deploy

import (
	"context"
	"path"
	"slices"
	"strings"

	"github.com/slipway-deploy/slipway/internal/layout"
	"github.com/slipway-deploy/slipway/internal/shell"
)

// linkSharedStep links each shared path into the release, replacing what the
// release shipped there. A shared directory that does not exist yet, or is
// empty (made by slipway setup, or new in the config), is first seeded
// from the release's copy (as Deployer does), so a fresh host gets the
// data the app expects (storage/framework/..., a wiki's pages); one with
// anything in it is never touched. Hosts whose shared directories hold
// data are not even sent the release's copy (see sharedShipping).
type linkSharedStep struct {
	releaseHosts
	d *deployRun
}

func (linkSharedStep) Name() string { return "link shared" }

func (s linkSharedStep) Run(ctx context.Context, t *Target) error { return runScripted(ctx, s, t) }

func (s linkSharedStep) script(context.Context, *Target) (string, error) {
	shared := s.d.opts.Config.Shared
	return linkSharedScript(s.d.layout, s.d.releaseID, shared.Dirs, shared.Files), nil
}

func (linkSharedStep) done(context.Context, *Target) error { return nil }

func (linkSharedStep) Plan(context.Context, *Target) error { return nil }

// seedTempPrefix names the directory beside a shared directory that its
// seed is copied into before it moves in: a copy that fails (a full
// disk, a run killed) leaves the shared directory empty, so the next
// deploy seeds it again, instead of a part of the seed that no deploy
// would complete.
const seedTempPrefix = ".slipway-seed-"

// linkSharedScript seeds the shared directories that need it and links
// the shared paths into the release. A shared directory that is no
// directory fails it (inspect refuses such a host before any change; this
// is for one that changed since); one the user cannot list is not seeded.
// It stops at the first command that fails, with its status, by an
// explicit exit after each: not by set -e, which a shell ignores in a
// subshell whose status is tested, as a folded script's is (fold.go), and
// in every command of an && list but the last.
func linkSharedScript(l layout.Layout, id string, dirs, files []string) string {
	release := l.ReleaseDir(id)
	var b strings.Builder
	b.WriteString("umask 022\n")
	// The shared directory's own modes stay as setup made them (writable
	// for the web server): only what is inside it is copied.
	for _, dir := range dirs {
		b.WriteString(shell.Script(`if [ ! -e {{shared}} ] && [ ! -L {{shared}} ]; then mkdir -p -- {{parent}} && mkdir -- {{shared}} || exit; fi
[ -d {{shared}} ] || { printf '%s is not a directory (a symlink to a path that does not exist? a volume not mounted?)\n' {{shared}} >&2; exit 1; }
if [ -d {{seed}} ] && [ ! -L {{seed}} ] && [ -r {{shared}} ] && slipway_ls=$(ls -A -- {{shared}}) && [ -z "$slipway_ls" ]; then
  rm -rf -- {{temp}} && mkdir -- {{temp}} || exit
  for f in {{seed}}/* {{seed}}/.[!.]* {{seed}}/..?*; do if [ -e "$f" ] || [ -L "$f" ]; then cp -Rp -- "$f" {{temp}}/ || { s=$?; rm -rf -- {{temp}}; exit $s; }; fi; done
  for f in {{temp}}/* {{temp}}/.[!.]* {{temp}}/..?*; do if [ -e "$f" ] || [ -L "$f" ]; then mv -- "$f" {{shared}}/ || exit; fi; done
  rmdir -- {{temp}} || exit
fi`+"\n", shell.Args{
			"shared": l.SharedPath(dir), "parent": path.Dir(l.SharedPath(dir)), "seed": path.Join(release, dir),
			"temp": path.Join(path.Dir(l.SharedPath(dir)), seedTempPrefix+path.Base(dir)),
		}))
		b.WriteString(linkScript(l, release, dir))
	}
	for _, file := range files {
		b.WriteString(linkScript(l, release, file))
	}
	return b.String()
}

// sharedShipping is what an upload to t leaves out: the entries under
// shared paths, which the link step replaces with links, except under the
// shared directories t still has to seed (missing or empty there).
func (d *deployRun) sharedShipping(t *Target) (keepOut []string) {
	shared := d.opts.Config.Shared
	for _, dir := range shared.Dirs {
		if !slices.Contains(t.State.SeedShared, dir) {
			keepOut = append(keepOut, dir)
		}
	}
	return append(keepOut, shared.Files...)
}

// linkScript replaces rel in the release with a link to its shared copy.
func linkScript(l layout.Layout, release, rel string) string {
	inRelease := path.Join(release, rel)
	return shell.Script("rm -rf -- {{path}} || exit\nmkdir -p -- {{parent}} || exit\nln -s -- {{target}} {{path}} || exit\n", shell.Args{
		"path": inRelease, "parent": path.Dir(inRelease), "target": l.SharedLinkTarget(rel),
	})
}
