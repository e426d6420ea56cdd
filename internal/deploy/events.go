package deploy

import "time"

// EventKind says what happened.
type EventKind int

const (
	StepStarted EventKind = iota
	StepDone
	StepFailed
	StepSkipped
	Output   // a line a hook printed
	Warning  // something the user should know that did not fail the run
	Info     // a fleet-wide fact worth a line (switch skew, a pause)
	Progress // bytes sent so far by a running step (Bytes of Total)
)

// Event is one thing that happened during a run. Domain code never prints;
// it reports events, and the ui package decides how they look.
type Event struct {
	Kind     EventKind
	Host     string // "" for fleet-wide events
	Step     string
	Duration time.Duration
	Err      error
	Line     string // Output, Warning and Info
	Bytes    int64  // bytes sent by the step, when it sent any
	// RoundTrips is how many network round trips a finished step took on
	// its host (StepDone, StepFailed); for a fleet-wide step, the most
	// any one host took. The connect step's are the SSH handshake's.
	RoundTrips int64
	Total      int64 // Progress: the bytes the step expects to send
	// Upload is what an upload sent to the host (an Info event of the
	// upload step, whose Line the printers write from it).
	Upload *UploadStats
}

// UploadStats is what an upload sent to one host.
type UploadStats struct {
	Delta   bool  // only the changes were sent
	Entries int   // entries sent
	Copied  int   // delta: unchanged entries, copied on the host from the live release or kept in a recycled one
	Removed int   // delta: entries of the live release left out
	Bytes   int64 // bytes on the wire
	// Compression is how the stream was compressed: "gzip", "zstd", or
	// "" for not at all.
	Compression string
}

// Observer receives events. Implementations must be safe for concurrent
// use: steps run on many hosts at once.
type Observer interface {
	Event(Event)
}
