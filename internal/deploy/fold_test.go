package deploy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/host"
)

// events collects a run's events.
type events struct {
	mu  sync.Mutex
	all []Event
}

func (e *events) Event(ev Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, ev)
}

// steps lists the step events as "started NAME", "done NAME", "failed NAME".
func (e *events) steps() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, ev := range e.all {
		switch ev.Kind {
		case StepStarted:
			out = append(out, "started "+ev.Step)
		case StepDone:
			out = append(out, "done "+ev.Step)
		case StepFailed:
			out = append(out, "failed "+ev.Step)
		}
	}
	return strings.Join(out, ", ")
}

type scriptedFake struct {
	releaseHosts
	name, body string
	finished   *[]string
}

func (s scriptedFake) Name() string                                    { return s.name }
func (s scriptedFake) Run(ctx context.Context, t *Target) error        { return runScripted(ctx, s, t) }
func (s scriptedFake) script(context.Context, *Target) (string, error) { return s.body, nil }
func (s scriptedFake) done(context.Context, *Target) error {
	*s.finished = append(*s.finished, s.name)
	return nil
}

// leadFake runs its script through exec, with input, and keeps what it
// printed.
type leadFake struct {
	releaseHosts
	body string
	out  *string
}

func (leadFake) Name() string                               { return "lead" }
func (l leadFake) Run(ctx context.Context, t *Target) error { return l.runVia(ctx, t, t.Exec.Exec) }
func (l leadFake) runVia(ctx context.Context, t *Target, exec execFunc) error {
	res, err := exec(ctx, host.Command{Script: l.body, Stdin: strings.NewReader("input\n")})
	*l.out = string(res.Stdout)
	return err
}

// TestFold: steps folded into one command are each reported as a step,
// in order; the lead reads its input and its own output without the
// markers; a failure is the failing member's, by name, and nothing after
// it runs; the members' own work here runs once all succeeded.
func TestFold(t *testing.T) {
	for _, tt := range []struct {
		name, post2  string
		steps, fails string
		finished     string
	}{
		{"all succeed", "true", "started pre, done pre, started lead, done lead, started post1, done post1, started post2, done post2", "", "pre post1 post2"},
		{"the last fails", "echo broken >&2; exit 3", "started pre, done pre, started lead, done lead, started post1, done post1, started post2, failed post2", "h: post2: command exited with status 3", ""},
		{"the lead fails", "true", "started pre, done pre, started lead, failed lead", "h: lead: command exited with status 4", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var finished []string
			var out string
			leadBody := `read -r line && echo "lead read $line"`
			if strings.Contains(tt.name, "lead fails") {
				leadBody = "exit 4"
			}
			var ev events
			step := fold(
				[]scripted{scriptedFake{name: "pre", body: "echo pre printed", finished: &finished}},
				leadFake{body: leadBody, out: &out},
				[]scripted{scriptedFake{name: "post1", body: "true", finished: &finished}, scriptedFake{name: "post2", body: tt.post2, finished: &finished}})
			target := &Target{Host: config.Host{Name: "h"}, Exec: host.NewLocal()}
			rn := &Runner{Parallel: 1, Events: &ev}
			err := rn.Run(context.Background(), []Step{perHost(step)}, []*Target{target})
			if got := ev.steps(); got != tt.steps {
				t.Errorf("events:\n got %s\nwant %s", got, tt.steps)
			}
			if tt.fails == "" && err != nil || tt.fails != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.fails)) {
				t.Errorf("err = %v, want %q", err, tt.fails)
			}
			var he *HostError
			if err != nil && !errors.As(err, &he) {
				t.Errorf("err %T is no HostError", err)
			}
			if got := strings.Join(finished, " "); got != tt.finished {
				t.Errorf("members finished here: %q, want %q", got, tt.finished)
			}
			if tt.fails == "" && out != "pre printed\nlead read input\n" {
				t.Errorf("the lead's output: %q, want its own and pre's, without markers", out)
			}
		})
	}
	if s := fold(nil, leadFake{}, nil); fmt.Sprintf("%T", s) != "deploy.leadFake" {
		t.Errorf("a fold of the lead alone is %T, want the lead itself", s)
	}
}
