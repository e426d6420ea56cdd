// Package ui turns what domain code reports into text for people. Progress
// goes to stderr; results a script may read go to stdout.
package ui

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/slipway-deploy/slipway/internal/deploy"
)

// Progress prints one line per step per host with its duration, hook output
// prefixed by the host, and warnings. It is safe for concurrent use.
type Progress struct {
	mu    sync.Mutex
	w     io.Writer
	width int // host column width, so lines of many hosts line up
	quiet bool
	// RoundTrips shows each finished step's network round trips (-v).
	RoundTrips bool
}

// NewProgress writes to w (stderr). hosts are the host names of the run, for
// the column width; quiet keeps only failures and warnings.
func NewProgress(w io.Writer, hosts []string, quiet bool) *Progress {
	width := len("fleet")
	for _, h := range hosts {
		width = max(width, len(h))
	}
	return &Progress{w: w, width: width, quiet: quiet}
}

func (p *Progress) Event(e deploy.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	name := e.Host
	if name == "" {
		name = "fleet"
	}
	prefix := fmt.Sprintf("%-*s  ", p.width, name)
	switch e.Kind {
	case deploy.StepDone:
		if !p.quiet {
			fmt.Fprintf(p.w, "%s%-24s ok      %s%s\n", prefix, e.Step, formatDuration(e.Duration), p.trips(e))
		}
	case deploy.StepFailed:
		fmt.Fprintf(p.w, "%s%-24s FAILED  %s%s\n", prefix, e.Step, formatDuration(e.Duration), p.trips(e))
	case deploy.StepSkipped:
		if !p.quiet {
			fmt.Fprintf(p.w, "%s%-24s skipped\n", prefix, e.Step)
		}
	case deploy.Output:
		if !p.quiet {
			fmt.Fprintf(p.w, "%s| %s\n", prefix, sanitize(e.Line))
		}
	case deploy.Warning:
		fmt.Fprintf(p.w, "%swarning: %s\n", prefix, sanitize(e.Line))
	case deploy.Info:
		if !p.quiet {
			fmt.Fprintf(p.w, "%s%s\n", prefix, sanitize(infoLine(e)))
		}
	}
}

// trips is a finished step's round trips, as -v shows them.
func (p *Progress) trips(e deploy.Event) string {
	switch {
	case !p.RoundTrips || e.RoundTrips == 0:
		return ""
	case e.RoundTrips == 1:
		return "  (1 round trip)"
	}
	return fmt.Sprintf("  (%d round trips)", e.RoundTrips)
}

// infoLine is an Info event's line: what an upload sent, or the line the
// event carries.
func infoLine(e deploy.Event) string {
	u := e.Upload
	if u == nil {
		return e.Line
	}
	how := ""
	if u.Compression != "" {
		how = " (" + u.Compression + ")"
	}
	if !u.Delta {
		return fmt.Sprintf("full upload: %d entries, %s sent%s", u.Entries, HumanBytes(u.Bytes), how)
	}
	return fmt.Sprintf("delta upload: %d unchanged on the host, %d sent, %d removed, %s sent%s", u.Copied, u.Entries, u.Removed, HumanBytes(u.Bytes), how)
}

// HumanBytes prints a byte count the way people read it.
func HumanBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// formatDuration prints durations the way people read them in a log.
func formatDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.2fs", d.Seconds())
	default:
		return d.Round(time.Second).String()
	}
}

// sanitize keeps a remote line from moving the cursor or changing the
// terminal: hook output is untrusted input.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\t' {
			return r
		}
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, s)
}

// Short abbreviates a revision or digest for tables.
func Short(rev string) string {
	rev = strings.TrimPrefix(rev, "sha256:")
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

// Table writes rows with columns padded to line up.
func Table(w io.Writer, header []string, rows [][]string) {
	widths := make([]int, len(header))
	for i, h := range header {
		widths[i] = len(h)
	}
	for _, row := range rows {
		for i, c := range row {
			widths[i] = max(widths[i], len(c))
		}
	}
	line := func(cells []string) {
		var b strings.Builder
		for i, c := range cells {
			if i == len(cells)-1 {
				b.WriteString(c)
			} else {
				fmt.Fprintf(&b, "%-*s  ", widths[i], c)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
	line(header)
	for _, row := range rows {
		line(row)
	}
}

// HostOutput prints what commands print, each line prefixed by its host,
// on out (the result of slipway exec), and failures and warnings on err.
type HostOutput struct {
	mu       sync.Mutex
	Out, Err io.Writer
	Width    int // host column width
}

func (h *HostOutput) Event(e deploy.Event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch e.Kind {
	case deploy.Output:
		fmt.Fprintf(h.Out, "%-*s | %s\n", h.Width, e.Host, sanitize(e.Line))
	case deploy.StepFailed:
		fmt.Fprintf(h.Err, "%-*s   %s FAILED\n", h.Width, e.Host, e.Step)
	case deploy.Warning:
		fmt.Fprintf(h.Err, "%-*s   warning: %s\n", h.Width, e.Host, sanitize(e.Line))
	}
}
