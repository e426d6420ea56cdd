package ui

import (
	"encoding/json"
	"io"
	"sync"
	"time"

	"github.com/slipway-deploy/slipway/internal/deploy"
)

// SchemaVersion is the version of the --json event stream; it changes only
// when an existing field changes meaning or goes away (docs/json-events.md).
const SchemaVersion = 1

// JSONEvent is one line of the --json stream.
type JSONEvent struct {
	V          int       `json:"v"`
	Type       string    `json:"type"` // run_started, step_started, step_finished, step_skipped, output, warning, info, run_finished
	Time       time.Time `json:"time"`
	Host       string    `json:"host,omitempty"`
	Step       string    `json:"step,omitempty"`
	OK         *bool     `json:"ok,omitempty"`
	DurationMS *float64  `json:"duration_ms,omitempty"`
	Bytes      int64     `json:"bytes,omitempty"`
	RoundTrips int64     `json:"round_trips,omitempty"` // step_finished: network round trips on the host
	Line       string    `json:"line,omitempty"`
	Message    string    `json:"message,omitempty"`
	Error      string    `json:"error,omitempty"`

	// run_started
	Command string   `json:"command,omitempty"`
	Stage   string   `json:"stage,omitempty"`
	Hosts   []string `json:"hosts,omitempty"`

	// run_finished
	Outcome  string          `json:"outcome,omitempty"` // ok, failed, rolled_back, live_with_errors, already_live, interrupted
	ExitCode *int            `json:"exit_code,omitempty"`
	Release  string          `json:"release,omitempty"`
	Revision string          `json:"revision,omitempty"`
	Results  []JSONHostState `json:"results,omitempty"`
	SkewMS   *float64        `json:"skew_ms,omitempty"`
}

// JSONHostState is where one host ended up.
type JSONHostState struct {
	Host         string     `json:"host"`
	Live         string     `json:"live"`
	Previous     string     `json:"previous"`
	Switched     bool       `json:"switched"`
	RolledBack   bool       `json:"rolled_back"`
	MovedOn      bool       `json:"moved_on,omitempty"` // switched by this run, then on to another run's release while its lock was gone
	SwitchLocal  *time.Time `json:"switch_time_local,omitempty"`
	SwitchRemote *time.Time `json:"switch_time_remote,omitempty"`
	SwitchRTTMS  *float64   `json:"switch_rtt_ms,omitempty"`
	RoundTrips   int64      `json:"round_trips,omitempty"` // the run's network round trips on the host, handshake to unlock
}

// JSON writes events as NDJSON. Safe for concurrent use.
type JSON struct {
	mu  sync.Mutex
	enc *json.Encoder
	now func() time.Time
}

// NewJSON writes to w (stdout).
func NewJSON(w io.Writer) *JSON {
	return &JSON{enc: json.NewEncoder(w), now: time.Now}
}

func ms(d time.Duration) *float64 {
	v := float64(d.Microseconds()) / 1000
	return &v
}

func boolp(b bool) *bool { return &b }

// Write emits one event, filling in the version and time.
func (j *JSON) Write(e JSONEvent) {
	j.mu.Lock()
	defer j.mu.Unlock()
	e.V = SchemaVersion
	if e.Time.IsZero() {
		e.Time = j.now().UTC()
	}
	_ = j.enc.Encode(e)
}

func (j *JSON) Event(e deploy.Event) {
	out := JSONEvent{Host: e.Host, Step: e.Step, Bytes: e.Bytes, RoundTrips: e.RoundTrips}
	switch e.Kind {
	case deploy.StepStarted:
		out.Type = "step_started"
	case deploy.StepDone:
		out.Type, out.OK, out.DurationMS = "step_finished", boolp(true), ms(e.Duration)
	case deploy.StepFailed:
		out.Type, out.OK, out.DurationMS = "step_finished", boolp(false), ms(e.Duration)
		if e.Err != nil {
			out.Error = e.Err.Error()
		}
	case deploy.StepSkipped:
		out.Type = "step_skipped"
	case deploy.Output:
		out.Type, out.Line = "output", e.Line
	case deploy.Warning:
		out.Type, out.Message = "warning", e.Line
	case deploy.Info:
		out.Type, out.Message = "info", infoLine(e)
	default:
		return
	}
	j.Write(out)
}

// Finished emits run_finished from a deploy or rollback result.
func (j *JSON) Finished(outcome string, exitCode int, res *deploy.Result, err error) {
	e := JSONEvent{Type: "run_finished", Outcome: outcome, ExitCode: &exitCode}
	if err != nil {
		e.Error = err.Error()
	}
	if res != nil {
		e.Release, e.Revision = res.ReleaseID, res.Revision
		if res.SkewHosts > 1 {
			e.SkewMS = ms(res.Skew)
		}
		for _, h := range res.Hosts {
			hs := JSONHostState{Host: h.Host, Live: h.Live, Previous: h.Previous, Switched: h.Switched, RolledBack: h.RolledBack, MovedOn: h.MovedOn, RoundTrips: h.RoundTrips}
			if st, ok := res.Switches[h.Host]; ok {
				local := st.Local.UTC()
				hs.SwitchLocal, hs.SwitchRTTMS = &local, ms(st.RTT)
				if !st.Remote.IsZero() {
					remote := st.Remote.UTC()
					hs.SwitchRemote = &remote
				}
			}
			e.Results = append(e.Results, hs)
		}
	}
	j.Write(e)
}

// Fanout sends each event to several observers.
type Fanout []deploy.Observer

func (f Fanout) Event(e deploy.Event) {
	for _, o := range f {
		o.Event(e)
	}
}
