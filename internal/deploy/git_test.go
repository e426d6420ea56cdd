package deploy

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/layout"
)

// TestFetchAdviceFollowsGit: the server-side fetch's advice is the cause
// git names; a repository git refuses for its owner gets safe.directory,
// not the deploy key.
func TestFetchAdviceFollowsGit(t *testing.T) {
	exit := &host.ExitError{Code: 128}
	dubious := "fatal: detected dubious ownership in repository at '/srv/git/app.git'\nTo add an exception for this directory, call:\n\n\tgit config --global --add safe.directory /srv/git/app.git\nfatal: Could not read from remote repository.\n\nPlease make sure you have the correct access rights\nand the repository exists.\n"
	msg := gitError(exit, []byte(dubious), "file:///srv/git/app.git").Error()
	if !strings.Contains(msg, "git config --global --add safe.directory /srv/git/app.git") || strings.Contains(msg, "deploy key") {
		t.Errorf("dubious ownership: %s", msg)
	}
	unknown := gitError(exit, []byte("fatal: the remote end hung up unexpectedly\n"), "ssh://git@example.com/app.git")
	if unknown != error(exit) {
		t.Errorf("a failure git does not explain got advice: %v", unknown)
	}
}

// TestFetchIntoADirectoryTheUserCannotWrite: a fetch that git cannot
// write is explained as check explains it: the directory, the user and
// the fix; without such a directory in the layout, git's own words.
func TestFetchIntoADirectoryTheUserCannotWrite(t *testing.T) {
	opts := checkConfig("/srv/app", localHost, func(c *config.Config) { c.Source.Strategy = "git" })
	d := &deployRun{run: newRun(context.Background(), opts), src: Source{Git: &GitSource{URL: "ssh://git@example.com/app.git"}}}
	const denied = "/srv/app/repo: Permission denied\n"
	for probe, want := range map[string]string{
		"user deploy\nnot-writable /srv/app\n": "/srv/app is not writable by deploy\nfix: on the host: sudo chown deploy /srv/app",
		"user deploy\n":                        "the deploy user may not write (or read) /srv/app/repo on the host",
	} {
		target := &Target{Host: localHost[0], Exec: &cannedHost{probe: probe, stderr: denied}}
		msg := fetchStep{d: d}.Run(context.Background(), target).Error()
		if !strings.Contains(msg, want) || strings.Contains(msg, "deploy key") {
			t.Errorf("host showing %q: %s\nwant %q", probe, msg, want)
		}
	}
}

// TestExportLeavesNoArchive: an export that fails (here its tar) removes
// the archive it wrote beside the release, where nothing else would.
func TestExportLeavesNoArchive(t *testing.T) {
	dir := t.TempDir()
	l := layout.Layout{DeployTo: filepath.Join(dir, "app"), Releases: "releases", Shared: "shared", Current: "current", Repo: "repo"}
	work := filepath.Join(dir, "work")
	writeFile(t, filepath.Join(work, "index.html"), "v1")
	git := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("git", args...)
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=t", "GIT_AUTHOR_EMAIL=t@example.com", "GIT_COMMITTER_NAME=t", "GIT_COMMITTER_EMAIL=t@example.com")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v %s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	git("-C", work, "init", "-q")
	git("-C", work, "add", ".")
	git("-C", work, "commit", "-q", "-m", "v1")
	git("clone", "-q", "--mirror", work, l.RepoDir())
	commit := git("-C", work, "rev-parse", "HEAD")
	const id = "20261130000001"
	if err := os.MkdirAll(l.ReleaseDir(id), 0o755); err != nil {
		t.Fatal(err)
	}
	shimOnPath(t, "tar", "#!/bin/sh\necho 'tar: write error: No space left on device' >&2\nexit 2\n")
	_, err := host.NewLocal().Exec(context.Background(), host.Command{Script: exportScript(l, id, commit, "", tarGNU, "")})
	if err == nil {
		t.Fatal("the export succeeded with its tar failing")
	}
	if _, err := os.Stat(l.ReleaseDir(id) + ".tar"); !os.IsNotExist(err) {
		t.Errorf("the archive %s.tar is there after the failed export (%v)", l.ReleaseDir(id), err)
	}
}
