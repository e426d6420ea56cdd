package e2e

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/slipway-deploy/slipway/internal/testutil"
	"github.com/slipway-deploy/slipway/internal/ui"
)

// TestJSONEventsFollowTheSchema validates every event of a full deploy
// (and of a rollback) against docs/json-events.md.
func TestJSONEventsFollowTheSchema(t *testing.T) {
	p := newProject(t, 3, testutil.Options{})
	p.config("hooks:\n  before_switch:\n    - echo hello from $SLIPWAY_HOST\n    - run: echo migrate\n      once: true\n")
	p.mustRun("deploy", "production")
	p.writeApp("v2")
	res := p.mustRun("deploy", "production", "--json")
	events := checkEvents(t, res.stdout)
	last := events[len(events)-1]
	if last.Outcome != "ok" || *last.ExitCode != 0 || last.Release == "" || len(last.Results) != 3 || last.SkewMS == nil {
		t.Errorf("run_finished = %+v", last)
	}
	for _, r := range last.Results {
		if !r.Switched || r.SwitchLocal == nil || r.SwitchRemote == nil || r.SwitchRTTMS == nil || r.Live != last.Release {
			t.Errorf("result %+v", r)
		}
	}
	seen := map[string]int{}
	for _, e := range events {
		seen[e.Type]++
	}
	for _, typ := range []string{"run_started", "step_started", "step_finished", "step_skipped", "output", "info", "run_finished"} {
		if seen[typ] == 0 {
			t.Errorf("no %s event in a full deploy", typ)
		}
	}
	if strings.Contains(res.stderr, " ok ") {
		t.Errorf("--json still prints progress lines on stderr:\n%s", res.stderr)
	}
	res = p.mustRun("rollback", "production", "--json")
	events = checkEvents(t, res.stdout)
	if last := events[len(events)-1]; last.Outcome != "ok" || events[0].Command != "rollback" {
		t.Errorf("rollback events: first %+v last %+v", events[0], last)
	}
}

// checkEvents decodes every line strictly and checks each type's fields.
func checkEvents(t *testing.T, stdout string) []ui.JSONEvent {
	t.Helper()
	var events []ui.JSONEvent
	for i, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		dec := json.NewDecoder(bytes.NewReader([]byte(line)))
		dec.DisallowUnknownFields()
		var e ui.JSONEvent
		if err := dec.Decode(&e); err != nil {
			t.Fatalf("line %d is not a schema event: %v\n%s", i+1, err, line)
		}
		if e.V != 1 || e.Time.IsZero() {
			t.Errorf("line %d: v=%d time=%v", i+1, e.V, e.Time)
		}
		ok := true
		switch e.Type {
		case "run_started":
			ok = i == 0 && e.Command != "" && e.Stage != "" && len(e.Hosts) > 0
		case "step_started", "step_skipped":
			ok = e.Step != ""
		case "step_finished":
			ok = e.Step != "" && e.OK != nil && e.DurationMS != nil && (*e.OK || e.Error != "")
		case "output":
			ok = e.Host != "" && e.Step != "" // an empty line has no line field
		case "warning", "info":
			ok = e.Message != ""
		case "run_finished":
			ok = e.Outcome != "" && e.ExitCode != nil
		default:
			ok = false
		}
		if !ok {
			t.Errorf("line %d does not follow the schema for %q: %s", i+1, e.Type, line)
		}
		events = append(events, e)
	}
	if len(events) == 0 || events[len(events)-1].Type != "run_finished" {
		t.Fatalf("the stream does not end with run_finished:\n%s", stdout)
	}
	return events
}
