package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"time"

	"github.com/slipway-deploy/slipway/internal/ui"
)

// slipwayRun is what slipway's --json events (internal/ui.JSONEvent) say
// about one run.
type slipwayRun struct {
	// roundTrips is, per host, the round trips slipway counted on its
	// connection, SSH handshake to unlock (run_finished's results). The
	// TCP connect is not in it (internal/host/trips.go counts data only).
	roundTrips map[string]int64
	steps      []stepRun     // step_finished events, in order
	skew       time.Duration // run_finished's skew_ms; -1 when absent (a rollback, or one host)
}

// stepRun is one step_finished event: a step on one host, or a step of
// the whole fleet (host ""), whose round trips are then those of the
// host that took the most.
type stepRun struct {
	step, host string
	took       time.Duration
	roundTrips int64
}

// parseSlipwayJSON reads the events of a `slipway … --json` run from its
// output, where stderr's lines (errors only, with --json) may be mixed in.
func parseSlipwayJSON(out []byte) (*slipwayRun, error) {
	run := &slipwayRun{roundTrips: map[string]int64{}, skew: -1}
	finished := false
	lines := bufio.NewScanner(bytes.NewReader(out))
	lines.Buffer(make([]byte, 0, 64<<10), 16<<20)
	for lines.Scan() {
		line := lines.Bytes()
		if !bytes.HasPrefix(line, []byte("{")) {
			continue
		}
		var e ui.JSONEvent
		if err := json.Unmarshal(line, &e); err != nil {
			continue // a line of stderr that starts like JSON
		}
		switch e.Type {
		case "step_finished":
			var took time.Duration
			if e.DurationMS != nil {
				took = time.Duration(*e.DurationMS * float64(time.Millisecond))
			}
			run.steps = append(run.steps, stepRun{step: e.Step, host: e.Host, took: took, roundTrips: e.RoundTrips})
		case "run_finished":
			finished = true
			for _, h := range e.Results {
				run.roundTrips[h.Host] = h.RoundTrips
			}
			if e.SkewMS != nil {
				run.skew = time.Duration(*e.SkewMS * float64(time.Millisecond))
			}
		}
	}
	if err := lines.Err(); err != nil {
		return nil, err
	}
	if !finished {
		return nil, errors.New("no run_finished event in slipway's --json output")
	}
	return run, nil
}

// tripsPerHost is the mean, over the hosts, of slipway's own count of
// round trips.
func (r *slipwayRun) tripsPerHost() float64 {
	if len(r.roundTrips) == 0 {
		return 0
	}
	var sum int64
	for _, n := range r.roundTrips {
		sum += n
	}
	return float64(sum) / float64(len(r.roundTrips))
}
