package deploy

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/shell"
)

// The server-side flow (strategy git): each host keeps a bare mirror of the
// repository in <deploy_to>/repo, fetched on every deploy; the revision is
// resolved once, on the primary host, and every host exports that commit.

// fetchStep clones the mirror on first use (or when the repository URL
// changed) and fetches it otherwise. At most GitSource.Parallel hosts fetch
// at once, so a fleet does not overload the git server.
type fetchStep struct{ d *deployRun }

func (fetchStep) Name() string { return "git fetch" }

func (s fetchStep) Limit() int { return s.d.src.Git.Parallel }

func (s fetchStep) Run(ctx context.Context, t *Target) error {
	repo := shell.Quote(s.d.layout.RepoDir())
	url := shell.Quote(s.d.src.Git.URL)
	// GIT_TERMINAL_PROMPT=0: a repository that asks for a password fails
	// instead of hanging the deploy. Host key checking stays whatever the
	// host's ssh does: slipway never turns it off.
	script := fmt.Sprintf(`export GIT_TERMINAL_PROMPT=0
if [ -d %[1]s ] && [ "$(git --git-dir=%[1]s config --get remote.origin.url)" = %[2]s ]; then
  git --git-dir=%[1]s remote update --prune
else
  rm -rf -- %[1]s && umask 022 && git clone --quiet --mirror -- %[2]s %[1]s
fi`, repo, url)
	res, err := t.Exec.Exec(ctx, host.Command{Script: script})
	if err != nil {
		return gitError(err, res.Stderr, s.d.src.Git.URL)
	}
	return nil
}

// gitError explains the usual reasons a fetch fails on a host.
func gitError(err error, stderr []byte, url string) error {
	msg := string(stderr)
	switch {
	case strings.Contains(msg, "Host key verification failed"):
		return fmt.Errorf("%w\nthe host does not know the git server's host key; on the host, verify its fingerprint and add it to the deploy user's ~/.ssh/known_hosts (slipway never turns this check off)", err)
	case strings.Contains(msg, "Permission denied") || strings.Contains(msg, "Could not read from remote repository"):
		return fmt.Errorf("%w\nthe host cannot read %s: give it a deploy key, or set forward_agent: true and load your key in ssh-agent", err, url)
	case strings.Contains(msg, "command not found") || strings.Contains(msg, "git: not found"):
		return fmt.Errorf("%w\ngit is not installed on the host (strategy git builds on the server)", err)
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
	primary := withState(targets)[0]
	script := fmt.Sprintf("git --git-dir=%s rev-parse --verify --quiet --end-of-options %s",
		shell.Quote(s.d.layout.RepoDir()), shell.Quote(want+"^{commit}"))
	res, err := primary.Exec.Query(ctx, host.Command{Script: script})
	sha := strings.TrimSpace(string(res.Stdout))
	if err != nil || !shaPattern.MatchString(sha) {
		return fmt.Errorf("unknown revision %q in %s (resolved on %s); check the name, or list them with: git ls-remote %s",
			strings.TrimPrefix(strings.TrimPrefix(want, "refs/heads/"), "refs/tags/"), s.d.src.Git.URL, primary.Name(), s.d.src.Git.URL)
	}
	s.d.src.Revision = sha
	return nil
}

// exportStep writes the commit into the new release directory with
// git archive, and the REVISION file beside it.
type exportStep struct{ d *deployRun }

func (exportStep) Name() string { return "git export" }

func (s exportStep) Run(ctx context.Context, t *Target) error {
	l := s.d.layout
	git := s.d.src.Git
	treeish := s.d.src.Revision
	if git.Subdir != "" {
		treeish += ":" + git.Subdir
	}
	release := shell.Quote(l.ReleaseDir(s.d.releaseID))
	repo := shell.Quote(l.RepoDir())
	// A host that fetched before a push the primary saw lacks the commit:
	// fetch once more. The archive goes to a file first so a failing git
	// cannot pass for an empty tar stream.
	script := fmt.Sprintf(`set -e
git --git-dir=%[1]s cat-file -e %[2]s 2>/dev/null || GIT_TERMINAL_PROMPT=0 git --git-dir=%[1]s remote update --prune
git --git-dir=%[1]s cat-file -e %[3]s 2>/dev/null || { printf '%%s is not in the repository\n' %[4]s >&2; exit 1; }
umask 022
git --git-dir=%[1]s archive --format=tar -o %[5]s %[3]s
tar -x -p --no-same-owner -f %[5]s -C %[6]s
rm -f -- %[5]s
[ -n "$(ls -A %[6]s)" ] || { echo "the export is empty" >&2; exit 1; }
%[7]s`,
		repo, shell.Quote(s.d.src.Revision+"^{commit}"), shell.Quote(treeish), shell.Quote(treeish),
		shell.Quote(l.ReleaseDir(s.d.releaseID)+".tar"), release, revisionScript(l, s.d.releaseID, s.d.src.Revision))
	_, err := t.Exec.Exec(ctx, host.Command{Script: script})
	return err
}
