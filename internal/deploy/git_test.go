package deploy

import (
	"context"
	"strings"
	"testing"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/host"
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
