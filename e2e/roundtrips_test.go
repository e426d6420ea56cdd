package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/slipway-deploy/slipway/internal/testutil"
	"github.com/slipway-deploy/slipway/internal/ui"
)

// roundTrips is each host's round trips in a --json run's run_finished
// results (handshake to unlock), and the steps' on the first host.
func roundTrips(t *testing.T, out string, first string) (map[string]int64, string) {
	t.Helper()
	total := map[string]int64{}
	var steps []string
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "{") {
			continue
		}
		var e ui.JSONEvent
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("not a JSON event: %v\n%s", err, line)
		}
		switch {
		case e.Type == "step_finished" && e.RoundTrips > 0 && (e.Host == first || e.Host == ""):
			steps = append(steps, fmt.Sprintf("%s %d", e.Step, e.RoundTrips))
		case e.Type == "run_finished":
			for _, h := range e.Results {
				total[h.Host] = h.RoundTrips
			}
		}
	}
	return total, strings.Join(steps, ", ")
}

// TestRoundTrips: every step over SSH reports the network round trips it
// took on its host (--json round_trips, -v), the SSH handshake's under
// connect; a rollback and a one-file redeploy stay within the budgets
// docs/benchmarks.md states, so a change that adds a round trip to every
// deploy shows here.
func TestRoundTrips(t *testing.T) {
	p := newProject(t, 2, testutil.Options{})
	hosts := []string{p.fleet.Hosts[0].Name, p.fleet.Hosts[1].Name}
	p.config("shared:\n  dirs: [storage]\n")
	p.mustRun("deploy", "production")
	p.writeApp("v2")
	redeploy := p.mustRun("deploy", "production", "--json")
	rollback := p.mustRun("rollback", "production", "--json")

	for _, c := range []struct {
		what   string
		out    string
		budget int64
	}{
		{"one-file redeploy", redeploy.stdout, redeployTripBudget},
		{"rollback", rollback.stdout, rollbackTripBudget},
	} {
		total, steps := roundTrips(t, c.out, hosts[0])
		t.Logf("%s: round trips per host %v; by step on %s:\n%s", c.what, total, hosts[0], steps)
		for _, h := range hosts {
			if total[h] == 0 {
				t.Errorf("%s: no round trips reported for %s", c.what, h)
			}
			if total[h] > c.budget {
				t.Errorf("%s: %d round trips on %s, over the budget of %d", c.what, total[h], h, c.budget)
			}
		}
		if want := fmt.Sprintf("connect %d,", handshakeTrips); !strings.HasPrefix(steps, want) {
			t.Errorf("%s: the connect step's round trips on %s are not the handshake's %d: %s", c.what, hosts[0], handshakeTrips, steps)
		}
	}
	p.writeApp("v3")
	verbose := p.mustRun("-v", "deploy", "production")
	if !strings.Contains(verbose.stderr, "round trips)") {
		t.Errorf("-v shows no round trips:\n%s", verbose.stderr)
	}
}

// The round trips per host a rollback and a one-file redeploy may take,
// from the SSH handshake (6 with x/crypto/ssh: the banner, which the
// server's KEXINIT comes with, the key exchange, new keys and service,
// then auth none, key query, signature) to the unlock, as measured on 2
// loopback hosts: handshake 6, lock and inspect 2 (the first command
// waits for its channel), then one per command: rollback's switch (with
// the mark of the release left), and record with the unlock; a
// redeploy's manifest, upload with
// create, link shared and sync folded in (two: its input waits for sshd
// to open the session's window), rollout (rename, read back), and record
// with cleanup and the unlock. With the TCP connect's, a rollback is 11.
// One more is allowed: on a loaded machine a command may find the
// channel opened ahead of it not yet confirmed, and count the wait.
const (
	rollbackTripBudget = 10 + 1
	redeployTripBudget = 14 + 1
	handshakeTrips     = 6
)
