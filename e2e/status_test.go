package e2e

import (
	"encoding/json"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/slipway-deploy/slipway/internal/testutil"
)

func TestStatusAgreementDriftPartialReleasesLocksAndUnreachableHosts(t *testing.T) {
	p := newProject(t, 5, testutil.Options{})
	p.config("")

	res := p.mustRun("status", "production")
	expectLines(t, res, "nothing is live yet on any of the 5 hosts")

	p.mustRun("deploy", "production")
	first := p.fleetLive()
	p.writeApp("v2")
	p.mustRun("deploy", "production")
	second := p.fleetLive()

	res = p.mustRun("status", "production")
	expectLines(t, res, "all 5 hosts live on "+second)
	for _, h := range p.fleet.Hosts {
		row := statusRow(t, res, h.Name)
		if row[1] != second || !strings.Contains(strings.Join(row, " "), " free 2") {
			t.Errorf("%s row = %q, want live on %s, free, 2 releases", h.Name, row, second)
		}
		// Status reads; it takes no lock and leaves none.
		if _, err := os.Stat(h.Path(deployTo + "/.slipway/lock")); !os.IsNotExist(err) {
			t.Errorf("%s: status left a lock", h.Name)
		}
	}

	// A held lock is shown with its holder; it does not make the fleet
	// disagree.
	locked := p.fleet.Hosts[1]
	locked.Run(t, "mkdir -p "+deployTo+"/.slipway/lock && echo '{\"user\":\"ghost\",\"machine\":\"ci-7\",\"pid\":4242,\"command\":\"deploy production\"}' > "+deployTo+"/.slipway/lock/owner.json")
	res = p.mustRun("status", "production")
	if row := strings.Join(statusRow(t, res, locked.Name), " "); !strings.Contains(row, "LOCKED by ghost@ci-7 (pid 4242") {
		t.Errorf("the lock's holder is not shown: %s\n%s", row, res)
	}
	if row := strings.Join(statusRow(t, res, "host1"), " "); strings.Contains(row, "LOCKED") {
		t.Errorf("host1 is shown locked: %s", row)
	}
	locked.Run(t, "rm -rf "+deployTo+"/.slipway/lock")

	// Drift: two hosts rolled back on their own.
	p.mustRun("rollback", "production", "--hosts", "host4,host5")
	res = p.expectCode(1, "status", "production")
	expectLines(t, res,
		"hosts disagree on the live release:",
		"  "+second+" on host1, host2, host3",
		"  "+first+" on host4, host5")
	if !strings.Contains(res.stderr, "hosts are live on 2 different releases") {
		t.Errorf("stderr does not say why status failed:\n%s", res)
	}
	if row := statusRow(t, res, "host4"); row[1] != first {
		t.Errorf("host4 row = %q, want live on %s", row, first)
	}

	// A release shipped to one host only is listed as partial.
	p.writeApp("v9")
	p.mustRun("deploy", "production", "--hosts", "host1")
	third := live(t, p.fleet.Hosts[0])
	if third == second {
		t.Fatal("the deploy to host1 did not switch it")
	}
	res = p.expectCode(1, "status", "production")
	expectLines(t, res,
		"  "+second+" on host2, host3",
		"  "+first+" on host4, host5",
		"  "+third+" on host1",
		third+" only on host1 (missing on host2, host3, host4, host5)")

	var st struct {
		OK     bool `json:"ok"`
		Agree  bool `json:"agree"`
		Groups []struct {
			Release string
			Hosts   []string
		}
		Partial []struct {
			ID      string
			Hosts   []string
			Missing []string
		}
		Hosts []struct {
			Host      string
			Reachable bool
			Live      string
			LiveMeta  *struct{ User, Revision string } `json:"live_meta"`
			Releases  []string
		}
	}
	res = p.expectCode(1, "status", "production", "--json")
	if err := json.Unmarshal([]byte(res.stdout), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, res.stdout)
	}
	if st.OK || st.Agree || len(st.Groups) != 3 || st.Groups[0].Release != second || !reflect.DeepEqual(st.Groups[0].Hosts, []string{"host2", "host3"}) {
		t.Errorf("status --json fleet summary = %+v", st)
	}
	if len(st.Partial) != 1 || st.Partial[0].ID != third || !reflect.DeepEqual(st.Partial[0].Missing, []string{"host2", "host3", "host4", "host5"}) {
		t.Errorf("status --json partial = %+v", st.Partial)
	}
	if h := st.Hosts[0]; h.Host != "host1" || !h.Reachable || h.Live != third || h.LiveMeta == nil || h.LiveMeta.User == "" || h.LiveMeta.Revision == "" || len(h.Releases) != 3 {
		t.Errorf("status --json host1 = %+v", h)
	}

	// A stopped host is reported; the others are still shown.
	p.fleet.Hosts[2].Stop(t)
	res = p.expectCode(1, "status", "production")
	expectLines(t, res,
		"  "+first+" on host4, host5",
		"  "+second+" on host2",
		"  "+third+" on host1",
		third+" only on host1 (missing on host2, host4, host5)")
	if !strings.Contains(res.stdout, "\nhost3 unreachable: connect: ") {
		t.Errorf("the stopped host is not reported unreachable:\n%s", res)
	}
	if row := statusRow(t, res, "host3"); row[1] != "unreachable" {
		t.Errorf("host3 row = %q", row)
	}
	for name, want := range map[string]string{"host1": third, "host2": second, "host4": first, "host5": first} {
		if row := statusRow(t, res, name); row[1] != want {
			t.Errorf("%s row = %q, want live on %s", name, row, want)
		}
	}
	if !strings.Contains(res.stderr, "1 host could not be read") {
		t.Errorf("stderr does not count the unreachable host:\n%s", res)
	}
}

// statusRow returns the fields of host's row in the status table.
func statusRow(t *testing.T, res result, host string) []string {
	t.Helper()
	for _, line := range strings.Split(res.stdout, "\n") {
		if fields := strings.Fields(line); len(fields) > 1 && fields[0] == host {
			return fields
		}
	}
	t.Fatalf("no row for %s in the status table:\n%s", host, res)
	return nil
}

// expectLines fails the test unless every line is one of stdout's lines.
func expectLines(t *testing.T, res result, lines ...string) {
	t.Helper()
	have := strings.Split(res.stdout, "\n")
	for _, want := range lines {
		if !slices.Contains(have, want) {
			t.Errorf("status output lacks the line %q:\n%s", want, res)
		}
	}
}
