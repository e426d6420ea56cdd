package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"sync"

	"github.com/slipway-deploy/slipway/internal/host"
)

// Folding: on a distant network a deploy's time is its round trips, and
// adjacent steps whose work on a host needs nothing from the other hosts
// in between (no barrier's semantics: no hook, no switch) can go in one.
// A fold is such a run of steps: one lead, whose script may take input
// and whose output it reads (the upload, which streams the release), and
// scripted steps before or after it, whose whole work on a host is one
// script (linking shared paths, writable modes, the sync before the
// switch). The lead's command carries all their scripts, each followed by
// a marker line; the Runner reports every step as its own, done when its
// marker arrives, failed where the script stopped, so progress, -v,
// --json and errors name the step that did the work, as without folding.
// A step that rides in another's round trip reports none of its own.

// scripted is a host step whose whole remote work on a host is one script
// that reads no input and whose output nothing reads: it can be folded.
type scripted interface {
	HostStep
	// script is the step's work on t; it may note on t what the script
	// will have done (as its Run would).
	script(ctx context.Context, t *Target) (string, error)
	// done is the step's work here once its script succeeded on t.
	done(ctx context.Context, t *Target) error
}

// runScripted runs a scripted step on its own.
func runScripted(ctx context.Context, s scripted, t *Target) error {
	script, err := s.script(ctx, t)
	if err != nil {
		return err
	}
	if _, err := t.Exec.Exec(ctx, host.Command{Script: script}); err != nil {
		return err
	}
	return s.done(ctx, t)
}

// scriptedSteps are steps, each on its own, where they cannot be folded.
func scriptedSteps(steps []scripted) []Step {
	var out []Step
	for _, s := range steps {
		out = append(out, perHost(s))
	}
	return out
}

// Optional, for a scripted step: foldable says whether its script can
// ride in another's command on t (else it runs on its own, as its Run
// does), and explain turns its script's failure into the step's error.
type (
	foldableOn interface{ foldable(t *Target) bool }
	explainer  interface {
		explain(ctx context.Context, t *Target, err error) error
	}
)

// foldLead is a host step that can carry folded scripts: runVia does its
// work with exec in place of t.Exec.Exec for the command that carries
// them.
type foldLead interface {
	HostStep
	runVia(ctx context.Context, t *Target, exec execFunc) error
}

type execFunc func(ctx context.Context, cmd host.Command) (host.Result, error)

// phased is a host step that is several steps in one (a fold): the Runner
// reports each phase as a step of its own. RunPhases calls next as each
// phase but the last ends.
type phased interface {
	HostStep
	Phases() []string
	RunPhases(ctx context.Context, t *Target, next func()) error
}

// phaseError is a phased step's failure in one of its phases.
type phaseError struct {
	phase     int
	err       error
	explained bool // by the member's explain, where it has one
}

func (e *phaseError) Error() string { return e.err.Error() }
func (e *phaseError) Unwrap() error { return e.err }

// foldStep runs its members in one round trip per host; see above.
type foldStep struct {
	lead   foldLead
	before []scripted // run first, in order
	after  []scripted // run once the lead's own script succeeded
}

// fold makes one step of lead and the scripted steps around it; with none
// around it, it is the lead itself.
func fold(before []scripted, lead foldLead, after []scripted) HostStep {
	if len(before)+len(after) == 0 {
		return lead
	}
	return foldStep{lead: lead, before: before, after: after}
}

func (f foldStep) Name() string { return f.lead.Name() }

func (f foldStep) Where(t *Target) Selection { return f.lead.Where(t) }

func (f foldStep) members() []HostStep {
	var out []HostStep
	for _, s := range f.before {
		out = append(out, s)
	}
	out = append(out, f.lead)
	for _, s := range f.after {
		out = append(out, s)
	}
	return out
}

func (f foldStep) Phases() []string {
	var names []string
	for _, s := range f.members() {
		names = append(names, s.Name())
	}
	return names
}

func (f foldStep) Run(ctx context.Context, t *Target) error {
	return f.RunPhases(ctx, t, func() {})
}

// RunPhases runs the lead with a command that carries every member's
// script, markers between them, and reports each member as its marker
// comes.
func (f foldStep) RunPhases(ctx context.Context, t *Target, next func()) (err error) {
	defer func() { err = f.explain(ctx, t, err) }()
	var pre, post bytes.Buffer
	alone := slices.ContainsFunc(f.before, func(s scripted) bool {
		fo, ok := s.(foldableOn)
		return ok && !fo.foldable(t)
	})
	for i, s := range f.before {
		if alone {
			// One of them cannot ride along here: they go one by one,
			// in order, each in its own round trip.
			if err := s.Run(ctx, t); err != nil {
				return &phaseError{phase: i, err: err, explained: true}
			}
			next()
			continue
		}
		script, err := s.script(ctx, t)
		if err != nil {
			return &phaseError{phase: i, err: err}
		}
		writeFolded(&pre, script, i)
	}
	leadPhase := len(f.before)
	for i, s := range f.after {
		script, err := s.script(ctx, t)
		if err != nil {
			return &phaseError{phase: leadPhase + 1 + i, err: err}
		}
		writeFolded(&post, script, leadPhase+1+i)
	}
	markers := &phaseMarkers{next: next, last: leadPhase + len(f.after)}
	if alone {
		markers.ended = leadPhase
	}
	// The members before the lead ride in its first command, those after
	// it in the first command that gets past the lead's own script: when
	// that script fails, nothing after it ran, and a lead that then does
	// its work another way (the artifact store's upload falling back to a
	// push) carries them in its next command.
	preCarried, postCarried := false, false
	exec := func(ctx context.Context, cmd host.Command) (host.Result, error) {
		if postCarried {
			return t.Exec.Exec(ctx, cmd)
		}
		var own bytes.Buffer
		collect := cmd.Stdout == nil
		markers.out = cmd.Stdout
		if collect {
			markers.out = &own
		}
		var script bytes.Buffer
		if !preCarried {
			script.Write(pre.Bytes())
			preCarried = true
		}
		writeFolded(&script, cmd.Script, leadPhase)
		script.Write(post.Bytes())
		cmd.Script, cmd.Stdout = script.String(), markers
		markers.reset()
		res, err := t.Exec.Exec(ctx, cmd)
		markers.flush()
		if collect {
			res.Stdout = own.Bytes()
		}
		postCarried = true
		if err != nil {
			// A script's exit is the phase's it stopped in; any other
			// failure (the connection's, the input's) is the command's,
			// the lead's, unless the lead's part was over.
			var exit *host.ExitError
			failed := markers.failed(err, !errors.As(err, &exit), leadPhase)
			if failed.phase != leadPhase {
				// Another member's failure: the lead must not take it
				// for its own.
				return res, failed
			}
			// Stopped in the lead's own script: the members after it
			// have not run.
			postCarried = false
		}
		return res, err
	}
	err = f.lead.runVia(ctx, t, exec)
	if err == nil && (!preCarried && pre.Len() > 0 || !postCarried && post.Len() > 0) {
		// The lead ended well without a command that carried every
		// member (it had nothing to send, or made light of its own
		// script's failure, as cleanup does): those left run now, in
		// a command of their own, rather than be reported done unrun.
		_, err = exec(ctx, host.Command{Script: ":"})
	}
	// A failure in a member before the lead is that member's, whatever
	// the lead made of it.
	failed := markers.failure()
	if failed != nil && failed.phase != leadPhase {
		return failed
	}
	if err != nil {
		phase := markers.at()
		if failed != nil {
			phase = failed.phase
		}
		return &phaseError{phase: phase, err: err}
	}
	for i, s := range f.members() {
		if sc, ok := s.(scripted); ok {
			if err := sc.done(ctx, t); err != nil {
				return &phaseError{phase: i, err: err}
			}
		}
	}
	return nil
}

// explain has the member a failure belongs to explain it, where it can.
func (f foldStep) explain(ctx context.Context, t *Target, err error) error {
	var pe *phaseError
	if !errors.As(err, &pe) || pe.explained {
		return err
	}
	members := f.members()
	if pe.phase >= len(members) {
		return err
	}
	if ex, ok := members[pe.phase].(explainer); ok {
		pe.err, pe.explained = ex.explain(ctx, t, pe.err), true
	}
	return err
}

// writeFolded writes script as phase i of a folded command: in a subshell
// of its own (its cd, umask and exit stay in it), the command stopping
// with its status if it fails, then the phase's marker. The subshell's
// status is tested, so set -e does nothing in it: a member's script
// exits on its own failures.
func writeFolded(b *bytes.Buffer, script string, i int) {
	fmt.Fprintf(b, "(\n%s\n) || exit\necho %s%d\n", script, phaseMarker, i)
}

// phaseMarker starts the line a folded command prints as each phase ends.
const phaseMarker = "slipway-phase-done "

// phaseMarkers reads a folded command's output: marker lines move the
// phases on (next), everything else goes to out.
type phaseMarkers struct {
	next func()
	out  io.Writer
	last int // the last phase

	mu    sync.Mutex
	line  []byte
	ended int // phases ended
	err   *phaseError
}

func (m *phaseMarkers) Write(p []byte) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, c := range p {
		m.line = append(m.line, c)
		if c == '\n' {
			m.take()
		}
	}
	return len(p), nil
}

// take handles one whole line.
func (m *phaseMarkers) take() {
	line := m.line
	m.line = nil
	if rest, ok := bytes.CutPrefix(line, []byte(phaseMarker)); ok {
		if n, err := strconv.Atoi(string(bytes.TrimSpace(rest))); err == nil && n == m.ended {
			m.ended++
			m.next()
			return
		}
	}
	_, _ = m.out.Write(line)
}

func (m *phaseMarkers) flush() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.line) > 0 {
		_, _ = m.out.Write(m.line)
		m.line = nil
	}
}

// failed notes that the command failed in the phase under way (with
// atLeast, no earlier than phase least), and returns that failure.
func (m *phaseMarkers) failed(err error, atLeast bool, least int) *phaseError {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.err == nil {
		phase := m.ended
		if atLeast {
			phase = max(phase, least)
		}
		// Once every phase's marker came, a failure (the connection's,
		// an interrupt's) is the last phase's.
		m.err = &phaseError{phase: min(phase, m.last), err: err}
	}
	return m.err
}

// reset forgets the failure of an earlier command, as another starts.
func (m *phaseMarkers) reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.err = nil
}

func (m *phaseMarkers) failure() *phaseError {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// at is the phase under way.
func (m *phaseMarkers) at() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return min(m.ended, m.last)
}

// Plan plans each member.
func (f foldStep) Plan(ctx context.Context, t *Target) error {
	for _, s := range f.members() {
		if p, ok := s.(Planner); ok {
			if err := p.Plan(ctx, t); err != nil {
				return err
			}
		}
	}
	return nil
}

// Undo undoes the members, last first; each undo is harmless where its
// step did not get to run.
func (f foldStep) Undo(ctx context.Context, t *Target) error {
	var errs []error
	members := f.members()
	for i := len(members) - 1; i >= 0; i-- {
		if u, ok := members[i].(Undoer); ok {
			errs = append(errs, u.Undo(ctx, t))
		}
	}
	return errors.Join(errs...)
}
