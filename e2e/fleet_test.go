package e2e

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slipway-deploy/slipway/internal/testutil"
)

// TestFleetSwitchSkewAndInjectedSwitchFailure: five hosts switch together
// and the summary reports the skew; then the switch fails on one host and
// every host that had switched is switched back.
func TestFleetSwitchSkewAndInjectedSwitchFailure(t *testing.T) {
	p := newProject(t, 5, testutil.Options{})
	p.config("")
	res := p.mustRun("deploy", "production")
	before := p.fleetLive()
	skew := regexp.MustCompile(`fleet skew: (\S+) from the first switch to the last`).FindStringSubmatch(res.stderr)
	if skew == nil {
		t.Fatalf("no fleet skew in the summary:\n%s", res.stderr)
	}
	d, err := time.ParseDuration(skew[1])
	if err != nil {
		t.Fatalf("skew %q: %v", skew[1], err)
	}
	t.Logf("fleet skew over 5 hosts on loopback: %s", d)
	if strings.Count(res.stderr, "switched from -") != 5 {
		t.Errorf("summary does not show 5 switched hosts:\n%s", res.stderr)
	}

	p.writeApp("v2")
	res = p.withEnv("SLIPWAY_TEST_FAULTS=rename@host3").expectCode(6, "deploy", "production")
	for _, want := range []string{"host3: switch", "injected", "switched, then back", "was switched back"} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("output lacks %q:\n%s", want, res.stderr)
		}
	}
	for _, h := range p.fleet.Hosts {
		if got := live(t, h); got != before {
			t.Errorf("%s: live = %s after the failed switch, want %s", h.Name, got, before)
		}
		if rs := releases(t, h); !slices.Equal(rs, []string{before}) {
			t.Errorf("%s: releases = %v, want the new one removed", h.Name, rs)
		}
	}
}

// startHealthServers runs a small HTTP server on each host's own loopback
// (the hosts have private networks), serving the live release.
func startHealthServers(t *testing.T, p *project) {
	t.Helper()
	for _, h := range p.fleet.Hosts {
		h.Run(t, "setsid python3 -m http.server 8080 --bind 127.0.0.1 --directory "+deployTo+"/current </dev/null >/dev/null 2>&1 &")
	}
}

func TestHealthCheckFailureRollsEveryHostBack(t *testing.T) {
	testutil.Require(t, "python3, for the hosts' health servers", fileExists("/usr/bin/python3"))
	p := newProject(t, 5, testutil.Options{PrivateNetwork: true})
	p.write("app/health.txt", "ok\n")
	health := "health: {url: http://127.0.0.1:8080/health.txt, body: ok, retries: 3, interval: 300ms, timeout: 2s}\n"
	p.config(health + "hooks:\n  after_rollback:\n    - echo \"$SLIPWAY_RELEASE_ID\" > /srv/after-rollback\n")
	p.mustRun("setup", "production")
	for _, h := range p.fleet.Hosts {
		h.Run(t, "mkdir -p "+deployTo+"/releases/20000101000000 && echo ok > "+deployTo+"/releases/20000101000000/health.txt && ln -sfn releases/20000101000000 "+deployTo+"/current")
	}
	startHealthServers(t, p)
	res := p.mustRun("deploy", "production", "--force")
	good := p.fleetLive()
	if strings.Count(res.stderr, "health") < 5 {
		t.Errorf("no health check lines:\n%s", res.stderr)
	}

	// The new release breaks on host4 only: its health URL answers 404.
	p.writeApp("v2")
	p.write("app/health.txt", "ok\n")
	p.config(health + "hooks:\n  before_switch:\n    - if [ \"$SLIPWAY_HOST\" = host4 ]; then rm health.txt; fi\n  after_rollback:\n    - echo \"$SLIPWAY_RELEASE_ID\" > /srv/after-rollback\n")
	res = p.expectCode(6, "deploy", "production")
	if !strings.Contains(res.stderr, "host4: health") || !strings.Contains(res.stderr, "status 404") {
		t.Errorf("health failure not reported:\n%s", res.stderr)
	}
	for _, h := range p.fleet.Hosts {
		if got := live(t, h); got != good {
			t.Errorf("%s: live = %s after the failed health check, want %s", h.Name, got, good)
		}
		if got := strings.TrimSpace(readFile(t, h.Path("/srv/after-rollback"))); got != good {
			t.Errorf("%s: after_rollback ran in %q, want %s", h.Name, got, good)
		}
	}
	res = p.mustRun("releases", "production")
	if !regexp.MustCompile(`\d{14}\s+failed`).MatchString(res.stdout) {
		t.Errorf("the release is not marked failed:\n%s", res.stdout)
	}

	// --no-rollback leaves it live (exit 5).
	p.expectCode(5, "deploy", "production", "--no-rollback")
	if got := live(t, p.fleet.Hosts[0]); got == good {
		t.Error("--no-rollback rolled back")
	}
}

func TestRollingDeployWithFailingSecondBatch(t *testing.T) {
	p := newProject(t, 5, testutil.Options{})
	check := "health: {command: 'test ! -e /srv/unhealthy', retries: 1}\nrollout: {strategy: rolling, batch: 2}\n"
	record := "hooks:\n  after_switch:\n    - echo \"$SLIPWAY_HOST $SLIPWAY_RELEASE_ID\" >> /srv/switched\n"
	p.config(check + record)
	res := p.mustRun("deploy", "production")
	first := p.fleetLive()
	if strings.Count(res.stderr, "switched 2 hosts within") != 2 {
		t.Errorf("want two batches of 2 (and one of 1):\n%s", res.stderr)
	}

	// host3 is in the second batch and fails its health check: batches 1
	// and 2 go back, batch 3 never switches.
	p.writeApp("v2")
	p.fleet.Hosts[2].Run(t, "touch /srv/unhealthy")
	p.expectCode(6, "deploy", "production")
	for i, h := range p.fleet.Hosts {
		if got := live(t, h); got != first {
			t.Errorf("%s: live = %s, want %s", h.Name, got, first)
		}
		switched := strings.Count(readFile(t, h.Path("/srv/switched")), "\n")
		if want := map[bool]int{true: 2, false: 1}[i < 4]; switched != want {
			t.Errorf("%s: switched %d times, want %d (batch 3 must not switch)", h.Name, switched, want)
		}
	}
}

func TestCanary(t *testing.T) {
	p := newProject(t, 5, testutil.Options{})
	p.config("health: {command: 'test ! -e /srv/unhealthy', retries: 1}\nhooks:\n  after_switch:\n    - echo \"$SLIPWAY_RELEASE_ID\" >> /srv/switched\n")
	p.mustRun("deploy", "production")
	first := p.fleetLive()
	p.writeApp("v2")
	p.fleet.Hosts[0].Run(t, "touch /srv/unhealthy")
	p.expectCode(6, "deploy", "production", "--canary", "1")
	for i, h := range p.fleet.Hosts {
		if got := live(t, h); got != first {
			t.Errorf("%s: live = %s", h.Name, got)
		}
		if n := strings.Count(readFile(t, h.Path("/srv/switched")), "\n"); n != map[bool]int{true: 2, false: 1}[i == 0] {
			t.Errorf("%s: switched %d times; only the canary may have tried the new release", h.Name, n)
		}
	}
	p.fleet.Hosts[0].Run(t, "rm /srv/unhealthy")
	p.mustRun("deploy", "production", "--canary", "1")
	if p.fleetLive() == first {
		t.Error("a healthy canary did not lead to the whole fleet switching")
	}
}

func TestRolesOnceAndNoRelease(t *testing.T) {
	p := newProject(t, 5, testutil.Options{})
	stage := `stages:
  production:
    hosts:
      - {host: host1, roles: [web]}
      - {host: host2, roles: [web, worker]}
      - {host: host3, roles: [worker]}
      - {host: host4, roles: [web]}
      - {host: host5, roles: [db], no_release: true}
`
	p.write("slipway.yml", `app: shop
deploy_to: /srv/app
source: {path: app}
hooks:
  before_switch:
    - run: echo "$SLIPWAY_HOST" >> /srv/migrate
      once: true
      roles: [worker]
    - run: echo "$SLIPWAY_HOST" >> /srv/backup
      roles: [db]
    - echo "$SLIPWAY_HOST" >> /srv/every
  after_switch:
    - run: echo "$SLIPWAY_HOST" >> /srv/workers
      roles: [worker]
`+stage)
	p.mustRun("deploy", "production")
	ran := func(file string) []string {
		var hosts []string
		for _, h := range p.fleet.Hosts {
			if b, err := os.ReadFile(h.Path(file)); err == nil {
				hosts = append(hosts, strings.Fields(string(b))...)
			}
		}
		return hosts
	}
	if got := ran("/srv/migrate"); !slices.Equal(got, []string{"host2"}) {
		t.Errorf("once hook for role worker ran on %v, want the first worker, host2", got)
	}
	if got := ran("/srv/backup"); !slices.Equal(got, []string{"host5"}) {
		t.Errorf("db hook ran on %v, want host5", got)
	}
	if got := ran("/srv/every"); !slices.Equal(got, []string{"host1", "host2", "host3", "host4"}) {
		t.Errorf("hook without roles ran on %v, want the four release hosts", got)
	}
	if got := ran("/srv/workers"); !slices.Equal(got, []string{"host2", "host3"}) {
		t.Errorf("worker hook ran on %v", got)
	}
	if _, err := os.Stat(p.fleet.Hosts[4].Path(deployTo)); !os.IsNotExist(err) {
		t.Error("the no_release host got a deploy directory")
	}
	// --roles selects hosts.
	p.writeApp("v2")
	p.mustRun("deploy", "production", "--roles", "worker", "--force")
	if live(t, p.fleet.Hosts[0]) == live(t, p.fleet.Hosts[1]) || live(t, p.fleet.Hosts[1]) != live(t, p.fleet.Hosts[2]) {
		t.Error("--roles worker did not deploy exactly the worker hosts")
	}
}

func TestDeployRefusesADriftedFleet(t *testing.T) {
	p := newProject(t, 5, testutil.Options{})
	p.config("")
	p.mustRun("deploy", "production")
	p.writeApp("v2")
	p.mustRun("deploy", "production")
	p.mustRun("rollback", "production", "--hosts", "host4,host5")
	p.writeApp("v3")
	res := p.expectCode(1, "deploy", "production")
	if !strings.Contains(res.stderr, "hosts disagree on the live release") || !strings.Contains(res.stderr, "host4, host5") || !strings.Contains(res.stderr, "--force") {
		t.Errorf("drift refusal:\n%s", res.stderr)
	}
	p.mustRun("deploy", "production", "--force")
	p.fleetLive()
}

// TestRollbackFailingOnOneHostSwitchesTheOthersBack: a rollback whose
// switch fails on one host switches the hosts that did switch back to
// the release they left, as a deploy's rollout does: the fleet is never
// left half rolled back. The failure here is the one a forced unlock
// makes between two hosts' switches: host2's lock goes, and its switch
// link with it, just before its mv. Without it, the rollback goes through.
func TestRollbackFailingOnOneHostSwitchesTheOthersBack(t *testing.T) {
	p := newProject(t, 3, testutil.Options{})
	p.config("")
	p.mustRun("deploy", "production")
	first := p.fleetLive()
	p.writeApp("v2")
	p.mustRun("deploy", "production")
	second := p.fleetLive()

	h2 := p.fleet.Hosts[1]
	gate := filepath.Join(h2.UserHome, "break-switch")
	h2.Shim(t, "mv", `case " $* " in *" -T "*) if [ -e "$HOME/break-switch" ]; then rm -rf `+deployTo+`/.slipway/lock; fi;; esac
exec /usr/bin/mv "$@"`)
	if err := os.WriteFile(gate, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	res := p.run("rollback", "production")
	t.Logf("the failed rollback:\n%s", res.stderr)
	if res.code == 0 || !strings.Contains(res.stderr, "host2: switch") || strings.Count(res.stderr, "switched, then back") != 2 || !strings.Contains(res.stderr, "were switched back") {
		t.Errorf("rollback with host2's switch broken: exit %d, want a failure naming host2's switch, host1 and host3 switched, then back:\n%s", res.code, res.stderr)
	}
	for _, h := range p.fleet.Hosts {
		if got := live(t, h); got != second {
			t.Errorf("%s: live = %s after the failed rollback, want %s (where it was)", h.Name, got, second)
		}
		if _, err := os.Stat(h.Path(deployTo + "/.slipway/lock")); !os.IsNotExist(err) {
			t.Errorf("%s: a lock is left (%v)", h.Name, err)
		}
	}
	if err := os.Remove(gate); err != nil {
		t.Fatal(err)
	}
	p.mustRun("rollback", "production")
	for _, h := range p.fleet.Hosts {
		if got := live(t, h); got != first {
			t.Errorf("%s: live = %s after the rollback, want %s", h.Name, got, first)
		}
	}
}
