package deploy

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/layout"
	"github.com/slipway-deploy/slipway/internal/shell"
	"github.com/slipway-deploy/slipway/internal/source"
)

// The server-side flow (strategy git): each host keeps a bare mirror of the
// repository in <deploy_to>/repo, fetched on every deploy; the revision is
// resolved once, on the primary host, and every host exports that commit.

// fetchStep clones the mirror on first use (or when the repository URL
// changed) and fetches it otherwise. At most GitSource.Parallel hosts fetch
// at once, so a fleet does not overload the git server.
type fetchStep struct {
	releaseHosts
	d *deployRun
}

func (fetchStep) Name() string { return "git fetch" }

func (s fetchStep) Limit() int { return s.d.src.Git.Parallel }

func (s fetchStep) Run(ctx context.Context, t *Target) error {
	res, err := t.Exec.Exec(ctx, host.Command{Script: fetchScript(s.d.layout.RepoDir(), s.d.src.Git.URL)})
	if err == nil {
		return nil
	}
	if deniedWrite(res.Stderr) {
		// The mirror lives in the deploy directory: when check finds a
		// directory there the deploy user may not write, that is the cause.
		var cause *CauseError
		if explained := s.d.explainFailure(ctx, t, "updating the git mirror "+s.d.layout.RepoDir(), err); errors.As(explained, &cause) {
			return explained
		}
	}
	return gitError(err, res.Stderr, s.d.src.Git.URL)
}

// Plan: a dry run does not fetch.
func (fetchStep) Plan(context.Context, *Target) error { return nil }

// fetchScript updates the mirror at repo, or clones it from url where it
// is missing or mirrors another URL. GIT_TERMINAL_PROMPT=0: a repository
// that asks for a password fails instead of hanging the deploy. Host key
// checking stays whatever the host's ssh does: slipway never turns it off.
func fetchScript(repo, url string) string {
	return shell.Script(`export GIT_TERMINAL_PROMPT=0
if [ -d {{repo}} ] && [ "$(git --git-dir={{repo}} config --get remote.origin.url)" = {{url}} ]; then
  git --git-dir={{repo}} remote update --prune
else
  rm -rf -- {{repo}} && umask 022 && git clone --quiet --mirror -- {{url}} {{repo}}
fi`, shell.Args{"repo": repo, "url": url})
}

// gitError says what to do about a failed fetch, from git's own words
// (source.GitAdvice); a failure they do not explain is git's message
// alone, never a guess.
func gitError(err error, stderr []byte, url string) error {
	if advice := source.GitAdvice(string(stderr), source.GitOnHost, url); advice != "" {
		return fmt.Errorf("%w\n%s", err, advice)
	}
	return err
}

// shaPattern is a full commit id as git prints it.
var shaPattern = regexp.MustCompile(`^[0-9a-f]{40}([0-9a-f]{24})?$`)

// resolveStep turns the wanted revision into a commit id once, on the
// primary host, so every host deploys the same commit even if the branch
// moves during the run.
type resolveStep struct{ d *deployRun }

func (resolveStep) Name() string { return "resolve revision" }

func (s resolveStep) RunFleet(ctx context.Context, targets []*Target) error {
	want := s.d.src.Git.Want
	if want == "" {
		want = "HEAD"
	}
	primary := s.d.primary()
	res, err := primary.Exec.Query(ctx, host.Command{Script: resolveScript(s.d.layout.RepoDir(), want)})
	sha := strings.TrimSpace(string(res.Stdout))
	if err != nil || !shaPattern.MatchString(sha) {
		return fmt.Errorf("unknown revision %q in %s (resolved on %s); check the name, or list them with: git ls-remote %s",
			strings.TrimPrefix(strings.TrimPrefix(want, "refs/heads/"), "refs/tags/"), s.d.src.Git.URL, primary.Name(), s.d.src.Git.URL)
	}
	s.d.src.Revision = sha
	return nil
}

// resolveScript prints the commit id want names in the mirror at repo.
func resolveScript(repo, want string) string {
	return shell.Script("git --git-dir={{repo}} rev-parse --verify --quiet --end-of-options {{want}}", shell.Args{
		"repo": repo, "want": want + "^{commit}",
	})
}

// PlanFleet: a dry run does not fetch, so the mirror may be behind; the
// revision is resolved when the deploy runs.
func (resolveStep) PlanFleet(context.Context, []*Target) error { return nil }

// exportStep writes the commit into the new release directory with
// git archive, and the REVISION file beside it.
type exportStep struct {
	releaseHosts
	d *deployRun
}

func (exportStep) Name() string { return "git export" }

func (s exportStep) Run(ctx context.Context, t *Target) error {
	script := exportScript(s.d.layout, s.d.releaseID, s.d.src.Revision, s.d.src.Git.Subdir, t.State.Tar, s.d.opts.Config.Migrations.Path)
	res, err := t.Exec.Exec(ctx, host.Command{Script: script})
	if err == nil && s.d.opts.Config.Migrations.Path != "" {
		// Every host exports the same commit: one listing is the release's.
		s.d.mu.Lock()
		if s.d.gitMigrations == nil {
			names := parseMigrations(string(res.Stdout))
			s.d.gitMigrations = &names
		}
		s.d.mu.Unlock()
	}
	return err
}

func (s exportStep) Plan(_ context.Context, t *Target) error {
	s.d.plan.host(t).Upload = "git export"
	return nil
}

// exportScript writes commit revision (its subdir, if given) into release
// id. A host that fetched before a push the primary saw lacks the commit:
// it fetches once more. The archive goes to a file first so a failing git
// cannot pass for an empty tar stream; it goes whatever happens (it is
// beside the release, where nothing else would remove it).
// With migrations (migrations.path), it then lists the migration files of
// the release, one name a line.
func exportScript(l layout.Layout, id, revision, subdir, tar, migrations string) string {
	treeish := revision
	if subdir != "" {
		treeish += ":" + subdir
	}
	return shell.Script(`set -e
git --git-dir={{repo}} cat-file -e {{commit}} 2>/dev/null || GIT_TERMINAL_PROMPT=0 git --git-dir={{repo}} remote update --prune
git --git-dir={{repo}} cat-file -e {{treeish}} 2>/dev/null || { printf '%s is not in the repository\n' {{treeish}} >&2; exit 1; }
umask 022
git --git-dir={{repo}} archive --format=tar -o {{archive}} {{treeish}} || { rm -f -- {{archive}}; exit 1; }
tar -x {{extract}} -f {{archive}} -C {{release}} || { rm -f -- {{archive}}; exit 1; }
rm -f -- {{archive}}
[ -n "$(ls -A {{release}})" ] || { echo "the export is empty" >&2; exit 1; }
{{revision_file}}
{{list_migrations}}`, shell.Args{
		"extract": tarExtractFlags(tar), "list_migrations": listMigrationsScript(l.ReleaseDir(id), migrations),
		"repo": l.RepoDir(), "commit": revision + "^{commit}", "treeish": treeish,
		"archive": l.ReleaseDir(id) + ".tar", "release": l.ReleaseDir(id),
		"revision_file": shell.Raw(revisionScript(l, id, revision)),
	})
}
