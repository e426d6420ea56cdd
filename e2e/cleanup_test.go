package e2e

import (
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slipway-deploy/slipway/internal/testutil"
)

// TestCleanupNeverBreaksRunningWork: a release a process still uses is
// kept, one with files the deploy user cannot delete is reported (never a
// failed deploy), and a symlink out of a release is never followed.
func TestCleanupNeverBreaksRunningWork(t *testing.T) {
	p := newProject(t, 1, testutil.Options{})
	p.config("keep_releases: 1\n")
	h := p.fleet.Hosts[0]
	var ids []string
	deploy := func(v string) string {
		p.writeApp(v)
		res := p.mustRun("deploy", "production")
		ids = append(ids, p.fleetLive())
		return res.stderr
	}
	deploy("v1")
	// A long job started in release 1 (a queue worker, an import).
	h.Run(t, "cd "+deployTo+"/releases/"+ids[0]+" && setsid sleep 300 </dev/null >/dev/null 2>&1 &")
	deploy("v2")
	// Release 2 gets a directory the deploy user cannot empty, as a web
	// server running as another user would leave, and a link out of it.
	rel2 := h.Path(deployTo + "/releases/" + ids[1])
	for _, cmd := range [][]string{
		{"mkdir", "-p", rel2 + "/cache/by-root"},
		{"touch", rel2 + "/cache/by-root/page.html"},
		{"chown", "-R", "root:root", rel2 + "/cache/by-root"},
		{"chmod", "755", rel2 + "/cache/by-root"},
	} {
		if out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput(); err != nil {
			t.Fatalf("%v: %v %s", cmd, err, out)
		}
	}
	h.Run(t, "mkdir -p /srv/outside && echo precious > /srv/outside/data && ln -s /srv/outside "+deployTo+"/releases/"+ids[1]+"/escape")

	deploy("v3")
	stderr := deploy("v4")
	if !strings.Contains(stderr, "kept "+ids[0]+": a running process still uses it") {
		t.Errorf("the release in use was not reported as kept:\n%s", stderr)
	}
	if !strings.Contains(stderr, "could not delete "+ids[1]) || !strings.Contains(stderr, "cleanup: {sudo: true}") {
		t.Errorf("the undeletable release was not reported with the fix:\n%s", stderr)
	}
	rs := releases(t, h)
	if !slices.Contains(rs, ids[0]) {
		t.Errorf("the release in use was deleted: %v", rs)
	}
	if got := readFile(t, h.Path("/srv/outside/data")); got != "precious\n" {
		t.Errorf("cleanup followed a symlink out of the release: data = %q", got)
	}
	if _, err := os.Stat(h.Path(deployTo + "/current/VERSION")); err != nil {
		t.Errorf("current broken after cleanup: %v", err)
	}
	// Once the job is gone, the next cleanup deletes the release.
	h.Run(t, "pkill -u "+testutil.DeployUser+" -x sleep || true")
	waitFor(t, time.Minute, "the job gone", func() bool {
		_, _, err := h.TryRun("pgrep -u " + testutil.DeployUser + " -x sleep")
		return err != nil
	})
	res := p.mustRun("cleanup", "production")
	if !strings.Contains(res.stderr, "deleted "+ids[0]) {
		t.Errorf("cleanup did not delete the release once free:\n%s", res.stderr)
	}
}
