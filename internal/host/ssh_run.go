package host

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// How a script reaches the host. sshd hands a command line to the deploy
// user's login shell, which may be bash, dash, zsh, tcsh, csh or fish: the
// line slipway sends is one that every one of them passes through
// literally, and it makes /bin/sh run the script.
//
// The script itself rides in that line (inlineLine), encoded in the
// characters every one of those shells leaves alone inside single quotes,
// for printf to decode: sshd opens a session's input window only once
// the command has started, so a script sent on standard input would wait
// a round trip for it, on every command. A script too long for a command
// line goes on standard input after all: read with dd, byte by byte, when
// the command has input of its own (an upload), so exactly the script is
// read and what follows it is left as the script's standard input, or
// whole with cat when it has none.
//
// A command line is visible to every user of the host (ps, /proc) while
// the script runs: a script carries nothing secret. Secrets go on
// standard input (Command.Stdin), as hook.go's and store.go's do.
//
// The script starts by reporting its process group on stderr (sshd makes
// each session's process a group leader), so a cancelled command can be
// stopped whole: every process it started, not just its session.

const (
	// readAll and readExactly run the script read from stdin.
	readAll     = `exec /bin/sh -c 'eval "$(cat)"'`
	readExactly = `exec /bin/sh -c 'eval "$(dd bs=1 count=%d 2>/dev/null)"'`
	// inlineFormat runs the script encoded in the line itself.
	inlineFormat = `exec /bin/sh -c 'eval "$(printf "%s")"'`
	// maxInline bounds an inline command line: one argument of a command
	// is at most 128 KiB on Linux, and sshd reads packets of 256 KiB.
	maxInline = 64 << 10
	// groupReport prints the script's process group first thing.
	groupReport = `p=$$; if [ -r /proc/$$/stat ]; then read -r l < /proc/$$/stat; l=${l##*) }; set -- $l; p=$3; set --; fi; printf '` + groupMarker + ` %s\n' "$p" >&2` + "\n"
	groupMarker = "slipway-process-group"
)

// inlineLine is the command line that runs script with the script in it,
// or false when it would be longer than maxInline. The script is printf's
// format, inside double quotes for /bin/sh, inside single quotes for the
// login shell: letters, digits, the space and the punctuation that none of
// those quotes treats specially stay as they are; % is doubled; every
// other byte (quotes, $, `, \, !, newlines, anything not ASCII) is an
// octal escape, which printf turns back into the byte.
func inlineLine(script string) (string, bool) {
	var b strings.Builder
	b.Grow(len(script) + len(script)/4)
	for i := 0; i < len(script); i++ {
		c := script[i]
		switch {
		case c == '%':
			b.WriteString("%%")
		case inlineSafe(c) && !(i == 0 && c == '-'): // no leading - for printf to read as an option
			b.WriteByte(c)
		default:
			b.WriteByte('\\')
			b.WriteByte('0' + c>>6)
			b.WriteByte('0' + c>>3&7)
			b.WriteByte('0' + c&7)
		}
		if b.Len() > maxInline {
			return "", false
		}
	}
	return fmt.Sprintf(inlineFormat, b.String()), true
}

// inlineSafe says whether c means itself inside the line's quotes, in
// every login shell and in printf's format.
func inlineSafe(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte(" #&()*+,-./:;<=>?@[]^_{|}~", c) >= 0
}

// stopBound is how long a cancelled command's processes get to be gone
// after SIGKILL (they got StopGrace after SIGTERM) before the command is
// reported as still running.
const stopBound = 3 * time.Second

// Query runs a script that changes nothing on the host.
func (s *SSH) Query(ctx context.Context, cmd Command) (Result, error) { return s.run(ctx, cmd) }

// Exec runs a script that may change the host.
func (s *SSH) Exec(ctx context.Context, cmd Command) (Result, error) { return s.run(ctx, cmd) }

// run runs cmd.Script in a new session. On cancellation it stops every
// process of the script's group before it returns.
func (s *SSH) run(ctx context.Context, cmd Command) (Result, error) {
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	select {
	case s.sessions <- struct{}{}:
		defer func() { <-s.sessions }()
	case <-ctx.Done():
		return Result{}, ctx.Err()
	}
	session, err := s.session()
	s.trips.Add(1) // the result (trips.go)
	if err != nil {
		return Result{}, s.connectionError("open a session", err)
	}
	defer session.close()
	if s.forwardAgent {
		_ = session.forwardAgent()
	}

	var stdout, stderr bytes.Buffer
	var stderrTail tailBuffer
	out := &gatedWriter{w: &stdout}
	errOut := &gatedWriter{w: &stderr}
	if cmd.Stdout != nil {
		out.w = cmd.Stdout
	}
	if cmd.Stderr != nil {
		errOut.w = io.MultiWriter(cmd.Stderr, &stderrTail)
	}
	group := &groupWriter{w: errOut, found: make(chan struct{})}
	script := groupReport + cmd.Script
	line, inline := inlineLine(script)
	input := cmd.Stdin
	switch {
	case inline:
	case cmd.Stdin != nil:
		line = fmt.Sprintf(readExactly, len(script))
		input = io.MultiReader(strings.NewReader(script), cmd.Stdin)
	default:
		line = readAll
		input = strings.NewReader(script)
	}
	if input != nil {
		// What goes on stdin waits for sshd to open the window: the
		// command must have started first.
		s.trips.Add(1)
	} else {
		input = strings.NewReader("") // EOF at once
	}
	if err := session.start(line, out, group); err != nil {
		return Result{}, s.connectionError("start a command", err)
	}
	stdin := session.stdin()

	stdinFailed := make(chan error, 1)
	go func() { stdinFailed <- copyStdin(stdin, input) }()
	done := make(chan error, 1)
	go func() { done <- session.wait() }()

	var waitErr error
	for waiting := true; waiting; {
		select {
		case waitErr = <-done:
			waiting = false
		case err := <-stdinFailed:
			if err == nil {
				continue
			}
			// The script must not see a clean end of a truncated input.
			stopErr := s.stop(session, group, done, out, errOut)
			return Result{}, errors.Join(fmt.Errorf("%s: read the input of the command: %w", s.name, err), stopErr)
		case <-ctx.Done():
			return Result{}, errors.Join(ctx.Err(), s.stop(session, group, done, out, errOut))
		}
	}
	select {
	case err := <-stdinFailed:
		if err != nil {
			return Result{}, fmt.Errorf("%s: read the input of the command: %w", s.name, err)
		}
	default:
	}

	res := Result{Stdout: stdout.Bytes(), Stderr: stderr.Bytes()}
	var exitErr *commandExit
	switch {
	case waitErr == nil:
		return res, nil
	case ctx.Err() != nil:
		return res, ctx.Err()
	case errors.As(waitErr, &exitErr):
		tail := res.Stderr
		if cmd.Stderr != nil {
			tail = stderrTail.Bytes()
		}
		return res, &ExitError{Host: s.name, Script: cmd.Script, Code: exitErr.status, Stderr: tail}
	default:
		return res, s.connectionError("run a command", waitErr)
	}
}

// stop ends a running command: SIGTERM to its process group, SIGKILL to
// what is left after StopGrace, and a wait until the group is gone. Only
// then is the session closed; output arriving later is dropped rather
// than written to buffers or writers the caller owns again. It returns a
// *StillRunningError when processes of the command may still run.
func (s *SSH) stop(session *execChannel, group *groupWriter, done <-chan error, outputs ...*gatedWriter) error {
	defer func() {
		for _, w := range outputs {
			w.shut()
		}
	}()
	// The session's own signal request reaches the group on servers that
	// support it; the group is then stopped and waited for in a session
	// of its own, which works on every server.
	_ = session.sendSignal(ssh.SIGTERM)
	var err error
	ended := false
	select {
	case <-done: // ended before its group was known: nothing left to stop
		ended = true
	case <-group.found:
		err = s.stopGroup(group.id)
	case <-time.After(abortGrace):
		// The script never reported its group: it never started (or the
		// connection is gone, and nothing can be stopped from here).
		select {
		case <-s.lost:
			err = &StillRunningError{Host: s.name, What: "the command that was running when the connection was lost"}
		default:
		}
	}
	_ = session.close()
	if !ended {
		select {
		case <-done:
		case <-time.After(abortGrace):
		}
	}
	return err
}

// stopGroup signals process group id on the host and waits until none of
// its processes is left (zombies count as gone).
func (s *SSH) stopGroup(id int) error {
	session, err := s.client.NewSession()
	if err != nil {
		return &StillRunningError{Host: s.name, What: fmt.Sprintf("process group %d (could not open a session to stop it: %v)", id, err)}
	}
	defer session.Close()
	var stderr bytes.Buffer
	session.Stderr = &stderr
	// Short enough always to ride in its line (inlineLine): no wait for
	// the input window.
	line, _ := inlineLine(stopGroupScript(id, StopGrace, stopBound))
	done := make(chan error, 1)
	go func() { done <- session.Run(line) }()
	select {
	case err = <-done:
	case <-time.After(StopGrace + stopBound + 2*abortGrace):
		err = errors.New("no answer")
	}
	if err != nil {
		return &StillRunningError{Host: s.name, What: fmt.Sprintf("process group %d (%v%s)", id, err, stderrNote(stderr.Bytes()))}
	}
	return nil
}

func stderrNote(b []byte) string {
	if t := Tail(b, 3); t != "" {
		return ": " + t
	}
	return ""
}

// stopGroupScript stops process group id: SIGTERM, up to grace for it to
// end, SIGKILL, and up to bound for it to be gone; exit status 3 if it is
// not. A group member is a process whose /proc stat names the group and
// is not a zombie; without /proc, kill -0 tells. The waits are by the
// clock (whole seconds, so each lasts at least its time and at most a
// second more), not by counted looks: on a loaded host with many
// processes one look can take long.
func stopGroupScript(id int, grace, bound time.Duration) string {
	return fmt.Sprintf(`g=%d
signal() { kill -s "$1" -- "-$g" 2>/dev/null || kill -s "$1" "-$g" 2>/dev/null; }
alive() {
  [ -d /proc/self ] || { signal 0; return; }
  for f in /proc/[0-9]*/stat; do
    read -r l 2>/dev/null < "$f" || continue
    l=${l##*) }; set -- $l
    [ "$3" = "$g" ] && [ "$1" != Z ] && return 0
  done
  return 1
}
wait_gone() { end=$(( $(date +%%s) + $1 + 1 )); while alive; do [ "$(date +%%s)" -ge $end ] && return 1; sleep 0.1 2>/dev/null || sleep 1; done; }
alive || exit 0
signal TERM
wait_gone %d && exit 0
signal KILL
wait_gone %d && exit 0
echo "processes of group $g are still running after SIGKILL" >&2
exit 3
`, id, int(grace.Seconds()+0.5), int(bound.Seconds()+0.5))
}

// groupWriter passes stderr on, taking out the line in which the script
// reports its process group (the first line the script writes; a login
// shell's own warnings may come before it).
type groupWriter struct {
	w     io.Writer
	found chan struct{} // closed once id is known
	id    int

	mu      sync.Mutex
	pending []byte
	done    bool
}

func (g *groupWriter) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.done {
		return g.w.Write(p)
	}
	g.pending = append(g.pending, p...)
	for {
		i := bytes.IndexByte(g.pending, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := g.pending[:i]
		if rest, ok := bytes.CutPrefix(line, []byte(groupMarker+" ")); ok {
			if id, err := strconv.Atoi(string(rest)); err == nil && id > 1 {
				g.id = id
				close(g.found)
			}
			g.done = true
			after := g.pending[i+1:]
			g.pending = nil
			if len(after) > 0 {
				if _, err := g.w.Write(after); err != nil {
					return len(p), err
				}
			}
			return len(p), nil
		}
		if _, err := g.w.Write(g.pending[:i+1]); err != nil {
			return len(p), err
		}
		g.pending = g.pending[i+1:]
	}
}

// copyStdin copies the caller's input to the command and then closes the
// command's standard input. A failed write means the command stopped
// reading (it exited, or the connection broke), which its exit status
// reports; a failed read is returned, and stdin is left open so the
// command never takes a truncated input for a whole one.
func copyStdin(w io.WriteCloser, r io.Reader) error {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return nil
			}
		}
		if err == io.EOF {
			w.Close()
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// gatedWriter passes writes to w until shut, then drops them: the session's
// copying goroutines may outlive an aborted command.
type gatedWriter struct {
	mu     sync.Mutex
	w      io.Writer
	closed bool
}

func (g *gatedWriter) Write(p []byte) (int, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return len(p), nil
	}
	return g.w.Write(p)
}

func (g *gatedWriter) shut() {
	g.mu.Lock()
	g.closed = true
	g.mu.Unlock()
}

// tailBuffer keeps the last stderrTailSize bytes written to it.
type tailBuffer struct {
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - stderrTailSize; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) Bytes() []byte { return t.buf }
