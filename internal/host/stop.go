package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// How a command run on this machine is stopped when its context is
// cancelled. On Unix the command runs in a process group of its own, and
// the whole group is stopped: SIGTERM (and SIGCONT, so a stopped process
// gets it), StopGrace for it to go, then SIGKILL and killWait more. Windows
// has no process groups: there the command's process alone is killed.
const (
	// StopGrace is how long a cancelled command's processes have to exit
	// on SIGTERM before they get SIGKILL.
	StopGrace = 5 * time.Second
	// killWait is how long processes get to disappear after SIGKILL, and
	// then what holds the output open to let go of it, before RunGroup
	// reports them as still running.
	killWait = 2 * time.Second
	// stopPoll is how often a stopping group is checked for processes.
	stopPoll = 20 * time.Millisecond
)

// StillRunningError is a cancelled command whose processes could not be
// stopped: they survived SIGKILL (a process in uninterruptible sleep), or
// one left the command's process group and holds its output open. The run
// that started them must not act as if they were gone: a deploy keeps its
// lock rather than let the next run start beside them.
type StillRunningError struct {
	Host string // "local"
	What string // what still runs ("process group 4242: sleep (pid 4250)"), for the person who has to deal with it
	Err  error  // why the command was stopped: its context's error
}

func (e *StillRunningError) Error() string {
	return fmt.Sprintf("%s: a cancelled command is still running after SIGTERM and SIGKILL: %s", e.Host, e.What)
}

func (e *StillRunningError) Unwrap() error { return e.Err }

// RunGroup runs c, which must not come from exec.CommandContext, and waits
// for it and its output, as c.Run does; c.Stdin, c.Stdout and c.Stderr may
// be any reader and writers. On Unix c runs in a process group of its own.
//
// When ctx is done first, RunGroup stops every process of the group
// (SIGTERM, then SIGKILL StopGrace later) and returns only once they are
// gone and the output pipes are closed: ctx.Err(), or a
// *StillRunningError when processes outlived SIGKILL or left the group
// holding the output open.
//
// As with exec.Cmd, a non-zero c.WaitDelay bounds the wait for the output
// after the command exits (a background process it left, such as a build
// server, may hold it open): RunGroup then returns exec.ErrWaitDelay if the
// command itself succeeded. With a zero WaitDelay it waits as long as the
// output stays open, like an SSH session does.
func RunGroup(ctx context.Context, c *exec.Cmd) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := connectPipes(c)
	if err != nil {
		return err
	}
	setGroup(c)
	if err := c.Start(); err != nil {
		p.closeAll()
		return err
	}
	p.start()
	leaderGone := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = c.Wait()
		close(leaderGone)
	}()

	exited, copied := leaderGone, p.done
	var outputTimeout <-chan time.Time
	for exited != nil || copied != nil {
		select {
		case <-exited:
			exited = nil
			if c.WaitDelay > 0 {
				outputTimeout = time.After(c.WaitDelay)
			}
		case <-copied:
			copied = nil
		case <-outputTimeout:
			p.abandon()
			return firstErr(waitErr, exec.ErrWaitDelay)
		case <-ctx.Done():
			return stop(ctx, c.Process, leaderGone, p)
		}
	}
	return firstErr(waitErr, p.copyErr)
}

// stop stops a cancelled command's processes and waits until they are
// gone and its output is closed.
func stop(ctx context.Context, leader *os.Process, leaderGone <-chan struct{}, p *pipes) error {
	stillRunning := func(what string) error {
		p.abandon()
		return &StillRunningError{Host: "local", What: what, Err: ctx.Err()}
	}
	if left := stopGroup(newGroup(leader, leaderGone)); left != "" {
		return stillRunning(left)
	}
	// Nothing of the group runs, so its leader is reaped at once and the
	// output closes, unless a process that left the group holds it.
	select {
	case <-leaderGone:
	case <-time.After(killWait):
		return stillRunning(fmt.Sprintf("process %d, which exited but was not reaped", leader.Pid))
	}
	select {
	case <-p.outputDone:
	case <-time.After(killWait):
		return stillRunning("a process it started that left its process group, holding its output open")
	}
	p.abandon() // the standard input may still be copying
	return ctx.Err()
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// stopGroup stops g's processes: terminate, up to StopGrace for them to
// go, then kill and up to killWait more. It returns what still runs, or ""
// once nothing does.
func stopGroup(g group) string {
	g.terminate()
	if waitGone(g, StopGrace) {
		return ""
	}
	g.kill()
	if waitGone(g, killWait) {
		return ""
	}
	_, left := g.running()
	return left
}

// waitGone polls until g has no process left, for at most timeout.
func waitGone(g group, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		if alive, _ := g.running(); !alive {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(stopPoll)
	}
}

// pipes connects the standard streams of a command that are not files to
// the reader and writers it was given, as exec.Cmd does, but with pipes of
// RunGroup's own, so a cancelled command's output can be let go of when a
// process that cannot be stopped still holds it.
type pipes struct {
	childEnds []*os.File // the command's ends, closed here once it started
	outputs   []output
	stdin     *os.File // the write end of the command's standard input
	stdinSrc  io.Reader

	done       chan struct{} // closed when every copy is done
	outputDone chan struct{} // closed when the output copies are done
	copyErr    error         // the first copy error, set before done closes
	closeOnce  sync.Once
}

type output struct {
	r *os.File
	w io.Writer
}

func connectPipes(c *exec.Cmd) (*pipes, error) {
	p := &pipes{done: make(chan struct{}), outputDone: make(chan struct{})}
	if c.Stdin != nil && !isFile(c.Stdin) {
		r, w, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		p.stdinSrc, p.stdin = c.Stdin, w
		p.childEnds = append(p.childEnds, r)
		c.Stdin = r
	}
	stdout := c.Stdout
	if stdout != nil && !isFile(stdout) {
		w, err := p.output(stdout)
		if err != nil {
			p.closeAll()
			return nil, err
		}
		c.Stdout = w
	}
	if c.Stderr != nil && !isFile(c.Stderr) {
		if sameWriter(c.Stderr, stdout) {
			// One pipe for both keeps their lines in the order written.
			c.Stderr = c.Stdout
		} else {
			w, err := p.output(c.Stderr)
			if err != nil {
				p.closeAll()
				return nil, err
			}
			c.Stderr = w
		}
	}
	return p, nil
}

func (p *pipes) output(w io.Writer) (*os.File, error) {
	r, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	p.outputs = append(p.outputs, output{r: r, w: w})
	p.childEnds = append(p.childEnds, pw)
	return pw, nil
}

// start closes the command's ends here and copies.
func (p *pipes) start() {
	for _, f := range p.childEnds {
		f.Close()
	}
	var mu sync.Mutex
	setErr := func(err error) {
		mu.Lock()
		if p.copyErr == nil {
			p.copyErr = err
		}
		mu.Unlock()
	}
	var outputs sync.WaitGroup
	for _, o := range p.outputs {
		outputs.Go(func() {
			_, err := io.Copy(o.w, o.r)
			if err != nil && !errors.Is(err, os.ErrClosed) {
				setErr(err)
			}
			// Closing the read end makes a writer that is still at it
			// fail (EPIPE) rather than fill the pipe and block.
			o.r.Close()
		})
	}
	var stdin sync.WaitGroup
	if p.stdin != nil {
		stdin.Go(func() {
			_, err := io.Copy(p.stdin, p.stdinSrc)
			// A command need not read all its input (exec.Cmd agrees).
			if err != nil && !errors.Is(err, syscall.EPIPE) && !errors.Is(err, os.ErrClosed) {
				setErr(err)
			}
			p.stdin.Close()
		})
	}
	go func() {
		outputs.Wait()
		close(p.outputDone)
		stdin.Wait()
		close(p.done)
	}()
}

// abandon closes this side of the pipes: a copy waiting to read the
// output ends, and so does one blocked writing the input (one blocked
// reading c.Stdin ends when that does, and writes nothing). It waits for the
// output copies, which end at once where closing a pipe interrupts a read
// (Unix), so their writers get nothing after RunGroup returns; elsewhere it
// gives up after killWait.
func (p *pipes) abandon() {
	p.closeAll()
	select {
	case <-p.outputDone:
	case <-time.After(killWait):
	}
}

func (p *pipes) closeAll() {
	p.closeOnce.Do(func() {
		for _, f := range p.childEnds { // already closed once started
			f.Close()
		}
		for _, o := range p.outputs {
			o.r.Close()
		}
		if p.stdin != nil {
			p.stdin.Close()
		}
	})
}

func isFile(v any) bool {
	_, ok := v.(*os.File)
	return ok
}

// sameWriter reports whether a and b are the same writer, as exec.Cmd
// decides whether stdout and stderr share a pipe (a writer of a type
// that cannot be compared is never the same).
func sameWriter(a, b io.Writer) (same bool) {
	defer func() {
		if recover() != nil {
			same = false
		}
	}()
	return a == b
}
