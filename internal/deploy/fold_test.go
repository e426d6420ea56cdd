package deploy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/source"
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
	alone      bool      // not foldable: runs on its own
	undone     *[]string // where Undo notes its name
}

func (s scriptedFake) foldable(*Target) bool { return !s.alone }

func (s scriptedFake) Undo(context.Context, *Target) error {
	if s.undone != nil {
		*s.undone = append(*s.undone, s.name)
	}
	return nil
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

// explainingFake is a scriptedFake that explains its failures.
type explainingFake struct{ scriptedFake }

func (s explainingFake) explain(_ context.Context, _ *Target, err error) error {
	return fmt.Errorf("%s explains: %w", s.name, err)
}

// leadAgainFake is a lead whose first command fails in its own script,
// and which then does its work with a second command (as the artifact
// store's upload falls back to a push).
type leadAgainFake struct {
	releaseHosts
	second string
}

func (leadAgainFake) Name() string { return "lead" }
func (l leadAgainFake) Run(ctx context.Context, t *Target) error {
	return l.runVia(ctx, t, t.Exec.Exec)
}
func (l leadAgainFake) runVia(ctx context.Context, t *Target, exec execFunc) error {
	_, err := exec(ctx, host.Command{Script: "exit 75"})
	var exit *host.ExitError
	if !errors.As(err, &exit) || exit.Code != 75 {
		return fmt.Errorf("the first command: %v, want exit status 75", err)
	}
	if l.second == "" {
		// It makes light of that failure, as cleanup does of its own.
		return nil
	}
	_, err = exec(ctx, host.Command{Script: l.second})
	return err
}

// TestFoldLeadTriesAgain: when the lead's first command stops in the
// lead's own script, the members after it have not run, and ride in the
// lead's next command, once; those before it do not run again. A failure
// in that next command is the failing member's, which explains it. A
// lead that ends well with no next command (making light of its
// script's failure) has them run in a command of their own, not reported
// done unrun.
func TestFoldLeadTriesAgain(t *testing.T) {
	for _, tt := range []struct {
		name, second, post2, steps, fails, ran string
	}{
		{"all succeed", "echo lead >> $LOG", "echo post2 >> $LOG", "started pre, done pre, started lead, done lead, started post1, done post1, started post2, done post2", "", "pre lead post1 post2"},
		{"a member fails then", "echo lead >> $LOG", "exit 3", "started pre, done pre, started lead, done lead, started post1, done post1, started post2, failed post2", "h: post2: post2 explains: command exited with status 3", "pre lead post1"},
		{"no next command", "", "echo post2 >> $LOG", "started pre, done pre, started lead, done lead, started post1, done post1, started post2, done post2", "", "pre post1 post2"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			log := filepath.Join(t.TempDir(), "log")
			t.Setenv("LOG", log)
			var finished []string
			var ev events
			step := fold(
				[]scripted{scriptedFake{name: "pre", body: "echo pre >> $LOG", finished: &finished}},
				leadAgainFake{second: tt.second},
				[]scripted{scriptedFake{name: "post1", body: "echo post1 >> $LOG", finished: &finished}, explainingFake{scriptedFake{name: "post2", body: tt.post2, finished: &finished}}})
			target := &Target{Host: config.Host{Name: "h"}, Exec: host.NewLocal()}
			err := (&Runner{Parallel: 1, Events: &ev}).Run(context.Background(), []Step{perHost(step)}, []*Target{target})
			if got := ev.steps(); got != tt.steps {
				t.Errorf("events:\n got %s\nwant %s", got, tt.steps)
			}
			if tt.fails == "" && err != nil || tt.fails != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.fails)) {
				t.Errorf("err = %v, want %q", err, tt.fails)
			}
			data, _ := os.ReadFile(log)
			if got := strings.Join(strings.Fields(string(data)), " "); got != tt.ran {
				t.Errorf("scripts run on the host: %q, want %q", got, tt.ran)
			}
		})
	}
}

// TestFoldUndo: a member that cannot ride along on a host runs on its
// own there, in its place; a fold that fails after its first phase is
// undone on that host (its first members did their work), one that fails
// in its first is not.
func TestFoldUndo(t *testing.T) {
	for _, tt := range []struct {
		name      string
		alone     bool
		pre, lead string
		steps     string
		undone    string
	}{
		{"lead fails", false, "true", "exit 1", "started pre, done pre, started lead, failed lead", "post lead pre"},
		{"lead fails, pre alone", true, "true", "exit 1", "started pre, done pre, started lead, failed lead", "post lead pre"},
		{"pre fails", false, "exit 2", "true", "started pre, failed pre", ""},
		{"pre alone fails", true, "exit 2", "true", "started pre, failed pre", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var finished, undone []string
			var out string
			var ev events
			step := fold(
				[]scripted{scriptedFake{name: "pre", body: tt.pre, finished: &finished, alone: tt.alone, undone: &undone}},
				leadUndo{leadFake{body: tt.lead, out: &out}, &undone},
				[]scripted{scriptedFake{name: "post", body: "true", finished: &finished, undone: &undone}})
			target := &Target{Host: config.Host{Name: "h"}, Exec: host.NewLocal()}
			rn := &Runner{Parallel: 1, Events: &ev}
			if err := rn.Run(context.Background(), []Step{perHost(step)}, []*Target{target}); err == nil {
				t.Fatal("the fold did not fail")
			}
			if got := ev.steps(); !strings.HasPrefix(got, tt.steps) {
				t.Errorf("events:\n got %s\nwant %s", got, tt.steps)
			}
			if got := strings.Join(undone, " "); got != tt.undone {
				t.Errorf("undone: %q, want %q", got, tt.undone)
			}
		})
	}
}

type leadUndo struct {
	leadFake
	undone *[]string
}

func (l leadUndo) Undo(context.Context, *Target) error {
	*l.undone = append(*l.undone, "lead")
	return nil
}

// TestDeployCopiesWhateverTheList: a delta deploy whose copy list is too
// long to ride in the upload's command (many unchanged files whose names
// the host cannot pick from its manifest: they are not ASCII) creates the
// release in a round trip of its own, and one whose list fits carries
// it; both releases hold every file, changed or not.
func TestDeployCopiesWhateverTheList(t *testing.T) {
	dir := t.TempDir()
	rec := &recorder{}
	opts := localStage(t, dir, rec)
	site := opts.Config.Source.Path
	const n = 600
	name := func(odd bool, i int) string {
		if odd {
			return fmt.Sprintf("odd names/fichier à long nom %05d.txt", i)
		}
		return fmt.Sprintf("plain/file-%05d.txt", i)
	}
	// versions[odd] is what each kind of file holds.
	write := func(versions map[bool]string) {
		for _, odd := range []bool{false, true} {
			for i := range n {
				writeFile(t, filepath.Join(site, name(odd, i)), fmt.Sprintf("%s %d\n", versions[odd], i))
			}
		}
	}
	deploy := func(version string) string {
		tree, err := source.Scan(site, nil)
		if err != nil {
			t.Fatal(err)
		}
		var ev events
		opts.Events = &ev
		res, err := Deploy(context.Background(), opts, Source{Tree: tree, Revision: tree.Digest})
		if err != nil {
			t.Fatalf("deploy %s: %v", version, err)
		}
		if !strings.Contains(ev.steps(), "done create release, started upload") {
			t.Errorf("deploy %s: steps %s", version, ev.steps())
		}
		return res.ReleaseID
	}
	write(map[bool]string{false: "v1", true: "v1"})
	deploy("v1")
	for _, c := range []struct {
		version  string
		versions map[bool]string
		folded   bool
	}{
		{"v2", map[bool]string{false: "v2", true: "v1"}, false}, // the odd names to copy: 600 of them
		{"v3", map[bool]string{false: "v2", true: "v3"}, true},  // none
	} {
		write(c.versions)
		rec.ops = nil
		id := deploy(c.version)
		create := slices.IndexFunc(rec.ops, func(op string) bool {
			return strings.Contains(op, `"state":"preparing"`) && strings.Contains(op, copyListName)
		})
		if create < 0 {
			t.Fatalf("%s: no copy of unchanged files", c.version)
		}
		if folded := strings.Contains(rec.ops[create], phaseMarker); folded != c.folded {
			t.Errorf("%s: the release was created in the upload's command: %v, want %v", c.version, folded, c.folded)
		}
		for _, odd := range []bool{false, true} {
			for i := range n {
				got, err := os.ReadFile(filepath.Join(opts.Stage.DeployTo, "releases", id, name(odd, i)))
				if want := fmt.Sprintf("%s %d\n", c.versions[odd], i); err != nil || string(got) != want {
					t.Fatalf("%s: %s: %q %v, want %q", c.version, name(odd, i), got, err, want)
				}
			}
		}
	}
}

// lostExec fails every command as a lost connection does, with no exit
// status.
type lostExec struct{ host.Local }

func (*lostExec) Exec(context.Context, host.Command) (host.Result, error) {
	return host.Result{}, errors.New("connection lost")
}

// TestFoldConnectionLost: a fold's command that fails with no exit status
// (the connection, the input) fails the lead, whose command it is, not
// the member whose script came first.
func TestFoldConnectionLost(t *testing.T) {
	var finished []string
	var out string
	step := fold([]scripted{scriptedFake{name: "pre", body: "true", finished: &finished}}, leadFake{body: "true", out: &out}, nil)
	target := &Target{Host: config.Host{Name: "h"}, Exec: &lostExec{}}
	err := (&Runner{Parallel: 1}).Run(context.Background(), []Step{perHost(step)}, []*Target{target})
	var he *HostError
	if !errors.As(err, &he) || he.Step != "lead" {
		t.Errorf("err = %v, want the lead's failure", err)
	}
}
