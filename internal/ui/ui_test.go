package ui

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/slipway-deploy/slipway/internal/deploy"
)

func TestProgressLines(t *testing.T) {
	var b bytes.Buffer
	p := NewProgress(&b, []string{"web1", "db-primary"}, false)
	p.Event(deploy.Event{Kind: deploy.StepDone, Host: "web1", Step: "upload", Duration: 1500 * time.Millisecond})
	p.Event(deploy.Event{Kind: deploy.StepFailed, Host: "db-primary", Step: "lock", Duration: 3 * time.Millisecond})
	p.Event(deploy.Event{Kind: deploy.Output, Host: "web1", Line: "evil \x1b[2J\rline"})
	p.Event(deploy.Event{Kind: deploy.StepDone, Step: "choose release id", Duration: 20 * time.Microsecond})
	out := b.String()
	for _, want := range []string{
		"web1        upload                   ok      1.50s\n",
		"db-primary  lock                     FAILED  3ms\n",
		"web1        | evil ?[2J?line\n",
		"fleet       choose release id        ok      20µs\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
	var q bytes.Buffer
	quiet := NewProgress(&q, nil, true)
	quiet.Event(deploy.Event{Kind: deploy.StepDone, Host: "web1", Step: "upload"})
	quiet.Event(deploy.Event{Kind: deploy.Warning, Host: "web1", Line: "careful"})
	if q.String() != "web1   warning: careful\n" {
		t.Errorf("quiet output = %q", q.String())
	}
}

func TestTableAndShort(t *testing.T) {
	var b bytes.Buffer
	Table(&b, []string{"A", "LONG HEADER"}, [][]string{{"x", "1"}, {"longer", "2"}})
	if b.String() != "A       LONG HEADER\nx       1\nlonger  2\n" {
		t.Errorf("table = %q", b.String())
	}
	if Short("sha256:0123456789abcdef") != "0123456789ab" || Short("abc") != "abc" {
		t.Error("Short")
	}
}

func TestJSONEvents(t *testing.T) {
	var b bytes.Buffer
	j := NewJSON(&b)
	j.Event(deploy.Event{Kind: deploy.StepFailed, Host: "web1", Step: "upload", Err: errors.New("disk full")})
	j.Finished("failed", 1, &deploy.Result{ReleaseID: "20261122103015"}, errors.New("disk full"))
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("lines = %q", lines)
	}
	var e map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &e); err != nil || e["type"] != "step_finished" || e["ok"] != false || e["error"] != "disk full" || e["v"] != float64(1) {
		t.Errorf("step event = %v %v", e, err)
	}
	if err := json.Unmarshal([]byte(lines[1]), &e); err != nil || e["outcome"] != "failed" || e["exit_code"] != float64(1) {
		t.Errorf("finished event = %v %v", e, err)
	}
}

func TestLiveDrawsOneLinePerHost(t *testing.T) {
	var b bytes.Buffer
	l := NewLive(&b, []string{"web1", "web2"}, false)
	l.Event(deploy.Event{Kind: deploy.StepStarted, Host: "web1", Step: "upload"})
	l.Event(deploy.Event{Kind: deploy.Progress, Host: "web1", Step: "upload", Bytes: 512, Total: 1024})
	l.Event(deploy.Event{Kind: deploy.Output, Host: "web2", Line: "migrating"})
	l.Event(deploy.Event{Kind: deploy.StepFailed, Host: "web2", Step: "before_switch: x"})
	l.Close()
	out := b.String()
	for _, want := range []string{"[##########..........] 512 B", "web2   | migrating", "web2   FAILED before_switch: x", "\x1b[2A"} {
		if !strings.Contains(out, want) {
			t.Errorf("missing %q in %q", want, out)
		}
	}
	if strings.Contains(out, "\x1b[3") {
		t.Error("colour without colour")
	}
	var c bytes.Buffer
	colored := NewLive(&c, []string{"web1"}, true)
	colored.Event(deploy.Event{Kind: deploy.StepDone, Host: "web1", Step: "upload"})
	if !strings.Contains(c.String(), green+"ok"+reset) {
		t.Errorf("no colour when asked: %q", c.String())
	}
}
