package e2e

import (
	"os"
	"os/exec"
	"regexp"
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

// TestCleanupKeepsAReleaseOnlyOnTheHostWhereItIsInUse: a process running
// in releases/X on host1 makes cleanup keep X on host1, and only there:
// with a PID namespace per host, as real servers have, host2's cleanup
// does not see host1's processes and deletes its X. All hosts clean up at
// once (no --parallel 1).
func TestCleanupKeepsAReleaseOnlyOnTheHostWhereItIsInUse(t *testing.T) {
	p := newProject(t, 2, testutil.Options{})
	p.config("keep_releases: 1\n")
	busy, idle := p.fleet.Hosts[0], p.fleet.Hosts[1]
	p.mustRun("deploy", "production")
	first := p.fleetLive()
	busy.Run(t, "cd "+deployTo+"/releases/"+first+" && setsid sleep 300 </dev/null >/dev/null 2>&1 &")
	// Two more deploys: the first release is then neither live nor the
	// rollback target, which cleanup keeps whatever runs.
	var res result
	for _, v := range []string{"v2", "v3"} {
		p.writeApp(v)
		res = p.mustRun("deploy", "production")
	}
	third := p.fleetLive()
	if rs := releases(t, busy); len(rs) != 3 || rs[0] != first || rs[2] != third {
		t.Errorf("%s, where a process runs in %s: releases = %v, want %s kept beside the rollback target and %s", busy.Name, first, rs, first, third)
	}
	if rs := releases(t, idle); len(rs) != 2 || slices.Contains(rs, first) {
		t.Errorf("%s, where nothing runs in %s: releases = %v, want it deleted, the rollback target and %s left (another host's process kept it)", idle.Name, first, rs, third)
	}
	kept := regexp.MustCompile(`(?m)^(host\d+)\s.*kept `+first+`: a running process still uses it`).FindAllStringSubmatch(res.stderr, -1)
	if len(kept) != 1 || kept[0][1] != busy.Name {
		t.Errorf("want %s alone to say it kept %s for a running process:\n%s", busy.Name, first, res.stderr)
	}
}
