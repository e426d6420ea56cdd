package host

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"golang.org/x/crypto/ssh"
)

// execChannel is a session channel that runs one command, started with
// one round trip less than x/crypto/ssh's Session: the exec request is
// sent without asking for a reply, and the command's input right after
// it, in the same flight. (Session.Start waits for the reply first.) A
// server that refuses the command closes the channel without an exit
// status, which Wait reports.
type execChannel struct {
	ch   ssh.Channel
	reqs <-chan *ssh.Request

	stdout, stderr io.Writer
	copies         sync.WaitGroup

	exited chan struct{} // closed once the channel's requests have ended
	status int           // exit status, when one came
	signal string        // the signal that ended it, when one did
	gotIt  bool          // an exit-status or exit-signal came
}

// openExec opens a session channel: one round trip.
func openExec(client *ssh.Client) (*execChannel, error) {
	ch, reqs, err := client.OpenChannel("session", nil)
	if err != nil {
		return nil, err
	}
	return &execChannel{ch: ch, reqs: reqs, exited: make(chan struct{})}, nil
}

// spareOpen is a session channel being opened ahead of the command that
// will use it.
type spareOpen struct {
	done chan struct{}
	ch   *execChannel
	err  error
}

// openSpare starts opening the channel for the next command.
func (s *SSH) openSpare() {
	o := &spareOpen{done: make(chan struct{})}
	go func() {
		defer close(o.done)
		o.ch, o.err = openExec(s.client)
	}()
	s.spareMu.Lock()
	old := s.spare
	s.spare = o
	s.spareMu.Unlock()
	if old != nil { // not expected: each taker opens the next
		go func() {
			if <-old.done; old.ch != nil {
				old.ch.close()
			}
		}()
	}
}

// session is a session channel for a command: the one opened ahead, and
// the next one is opened ahead in turn, in the same flight as this
// command. A command thus waits for its channel's confirmation only when
// it follows another at once (and counts that round trip); otherwise the
// confirmation came while the host was busy with the previous one.
func (s *SSH) session() (*execChannel, error) {
	s.spareMu.Lock()
	o := s.spare
	s.spare = nil
	s.spareMu.Unlock()
	if !s.closed.Load() {
		s.openSpare()
	}
	if o != nil {
		select {
		case <-o.done:
		default:
			s.trips.Add(1)
			<-o.done
		}
		if o.err == nil {
			return o.ch, nil
		}
	}
	// None ahead, or its opening failed (a server that ran out of
	// sessions then): open one now, and say why if that fails too.
	s.trips.Add(1)
	return openExec(s.client)
}

// forwardAgent asks the server to forward the agent on this channel; a
// server that refuses still runs the command, as with OpenSSH.
func (c *execChannel) forwardAgent() error {
	_, err := c.ch.SendRequest("auth-agent-req@openssh.com", false, nil)
	return err
}

// start sends the exec request for line and begins copying the output to
// stdout and stderr. It does not wait for the server.
func (c *execChannel) start(line string, stdout, stderr io.Writer) error {
	c.stdout, c.stderr = stdout, stderr
	if _, err := c.ch.SendRequest("exec", false, ssh.Marshal(struct{ Command string }{line})); err != nil {
		return err
	}
	go c.serveRequests()
	c.copies.Add(2)
	go func() { defer c.copies.Done(); _, _ = io.Copy(c.stdout, c.ch) }()
	go func() { defer c.copies.Done(); _, _ = io.Copy(c.stderr, c.ch.Stderr()) }()
	return nil
}

// stdin is the command's standard input; closing it sends EOF.
func (c *execChannel) stdin() io.WriteCloser { return stdinOf{c.ch} }

type stdinOf struct{ ch ssh.Channel }

func (s stdinOf) Write(p []byte) (int, error) { return s.ch.Write(p) }
func (s stdinOf) Close() error                { return s.ch.CloseWrite() }

func (c *execChannel) serveRequests() {
	defer close(c.exited)
	for req := range c.reqs {
		switch req.Type {
		case "exit-status":
			if len(req.Payload) >= 4 {
				c.status, c.gotIt = int(binary.BigEndian.Uint32(req.Payload)), true
			}
		case "exit-signal":
			var msg struct {
				Signal     string
				CoreDumped bool
				Error      string
				Lang       string
			}
			if ssh.Unmarshal(req.Payload, &msg) == nil {
				c.signal, c.status, c.gotIt = msg.Signal, 128+signalNumbers[msg.Signal], true
			}
		}
		if req.WantReply {
			_ = req.Reply(false, nil)
		}
	}
}

// signalNumbers are the Linux numbers of the signals a command may die
// of, for the shell's 128+N exit status.
var signalNumbers = map[string]int{"HUP": 1, "INT": 2, "QUIT": 3, "ILL": 4, "ABRT": 6, "FPE": 8, "KILL": 9, "USR1": 10, "SEGV": 11, "USR2": 12, "PIPE": 13, "ALRM": 14, "TERM": 15}

// errNoExitStatus says the channel closed without an exit status: the
// command never started, or the connection broke.
var errNoExitStatus = errors.New("the command ended without an exit status")

// wait waits until the command has ended and its output is copied, and
// returns its exit status (nil for 0, *commandExit otherwise).
func (c *execChannel) wait() error {
	<-c.exited
	c.copies.Wait()
	switch {
	case !c.gotIt:
		return errNoExitStatus
	case c.signal != "":
		return &commandExit{status: c.status, signal: c.signal}
	case c.status != 0:
		return &commandExit{status: c.status}
	}
	return nil
}

// commandExit is a command that exited with a non-zero status or was
// killed by a signal.
type commandExit struct {
	status int
	signal string
}

func (e *commandExit) Error() string {
	if e.signal != "" {
		return "killed by signal " + e.signal
	}
	return fmt.Sprintf("exit status %d", e.status)
}

// sendSignal asks the server to signal the command.
func (c *execChannel) sendSignal(sig ssh.Signal) error {
	_, err := c.ch.SendRequest("signal", false, ssh.Marshal(struct{ Signal string }{string(sig)}))
	return err
}

func (c *execChannel) close() error { return c.ch.Close() }
