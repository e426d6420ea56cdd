package ui

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/slipway-deploy/slipway/internal/deploy"
)

// Live is the terminal view of a run: one line per host with its current
// step, bytes sent and elapsed time, redrawn in place, with hook output,
// warnings and failures printed above it as they come. Colour only when
// asked for (a terminal, and NO_COLOR unset).
type Live struct {
	mu     sync.Mutex
	w      io.Writer
	hosts  []string
	width  int
	color  bool
	start  time.Time
	status map[string]*hostLine
	drawn  int // status lines currently on screen
	now    func() time.Time
}

type hostLine struct {
	step    string
	state   string // running, ok, FAILED
	stepAt  time.Time
	bytes   int64
	total   int64
	elapsed time.Duration
}

// NewLive draws on w, a terminal.
func NewLive(w io.Writer, hosts []string, color bool) *Live {
	l := &Live{w: w, hosts: hosts, width: len("fleet"), color: color, status: map[string]*hostLine{}, now: time.Now}
	for _, h := range hosts {
		l.width = max(l.width, len(h))
		l.status[h] = &hostLine{step: "waiting"}
	}
	l.start = l.now()
	return l
}

const (
	green  = "\x1b[32m"
	red    = "\x1b[31m"
	yellow = "\x1b[33m"
	dim    = "\x1b[2m"
	reset  = "\x1b[0m"
)

func (l *Live) paint(code, s string) string {
	if !l.color {
		return s
	}
	return code + s + reset
}

func (l *Live) Event(e deploy.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.status[e.Host]
	switch e.Kind {
	case deploy.StepStarted:
		if st != nil {
			st.step, st.state, st.stepAt, st.bytes, st.total = e.Step, "running", l.now(), 0, 0
		}
	case deploy.StepDone:
		if st != nil {
			st.step, st.state = e.Step, "ok"
		}
	case deploy.StepFailed:
		if st != nil {
			st.step, st.state = e.Step, "FAILED"
		}
		l.above(fmt.Sprintf("%-*s  %s %s", l.width, orFleet(e.Host), l.paint(red, "FAILED"), e.Step))
	case deploy.Progress:
		if st != nil {
			st.bytes, st.total = e.Bytes, e.Total
		}
	case deploy.Output:
		l.above(fmt.Sprintf("%-*s  %s %s", l.width, orFleet(e.Host), l.paint(dim, "|"), sanitize(e.Line)))
	case deploy.Warning:
		l.above(fmt.Sprintf("%-*s  %s %s", l.width, orFleet(e.Host), l.paint(yellow, "warning:"), sanitize(e.Line)))
	case deploy.Info:
		if e.Host == "" {
			l.above(fmt.Sprintf("%-*s  %s", l.width, "fleet", sanitize(infoLine(e))))
		}
	}
	l.redraw()
}

func orFleet(h string) string {
	if h == "" {
		return "fleet"
	}
	return h
}

// above prints a line above the status block.
func (l *Live) above(line string) {
	l.clear()
	fmt.Fprintln(l.w, line)
}

// clear erases the status block, leaving the cursor where it began.
func (l *Live) clear() {
	if l.drawn == 0 {
		return
	}
	fmt.Fprintf(l.w, "\x1b[%dA", l.drawn)
	for i := 0; i < l.drawn; i++ {
		fmt.Fprint(l.w, "\x1b[2K\n")
	}
	fmt.Fprintf(l.w, "\x1b[%dA", l.drawn)
	l.drawn = 0
}

func (l *Live) redraw() {
	l.clear()
	var b strings.Builder
	elapsed := l.now().Sub(l.start).Round(100 * time.Millisecond)
	for _, h := range l.hosts {
		st := l.status[h]
		state := st.state
		switch state {
		case "ok":
			state = l.paint(green, "ok")
		case "FAILED":
			state = l.paint(red, "FAILED")
		case "running":
			state = "…"
		}
		line := fmt.Sprintf("%-*s  %-24s %-6s %6s", l.width, h, st.step, state, elapsed)
		if st.state == "running" && st.total > 0 {
			line += "  " + bar(st.bytes, st.total, 20) + " " + HumanBytes(st.bytes)
		}
		b.WriteString(line + "\n")
	}
	fmt.Fprint(l.w, b.String())
	l.drawn = len(l.hosts)
}

// bar draws a progress bar of width cells.
func bar(n, total int64, width int) string {
	filled := int(float64(width) * float64(min(n, total)) / float64(total))
	return "[" + strings.Repeat("#", filled) + strings.Repeat(".", width-filled) + "]"
}

// Close leaves the final status lines on screen.
func (l *Live) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.redraw()
	l.drawn = 0
}
