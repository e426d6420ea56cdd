package host

import (
	"net"
	"sync/atomic"
)

// Round trips are what a deploy pays per host on a distant network:
// latency is paid once for each exchange that slipway waits on, however
// many bytes go each way. The SSH executor counts them (RoundTrips): the
// handshake's as measured on the connection (tripConn), then one for each
// channel opened (a command, a health check's TCP connection: the server
// confirms before anything is sent on it), one for each command's result
// (its script rides in the exec request, ssh_run.go), one more for a
// command with input (sshd opens a session's input window only once its
// command has started, so the input waits for that), three
// to start SFTP (channel, subsystem, version), one per SFTP request and
// keepalive, and, on a forwarded connection, one for each answer that
// follows what slipway wrote. -v and --json show them per step.

// tripConn counts round trips on a connection that is a plain sequence
// of request and answer: data that arrives after slipway wrote something
// since the last arrival is one. It counts the SSH handshake's, and those
// of connections opened through the host (a health check's). (On the SSH
// connection after the handshake, SSH's own window adjustments would make
// such a count overstate what is waited on, so the executor counts its
// exchanges instead.)
type tripConn struct {
	net.Conn
	trips *atomic.Int64
	wrote atomic.Bool
}

func (c *tripConn) Write(p []byte) (int, error) {
	c.wrote.Store(true)
	return c.Conn.Write(p)
}

func (c *tripConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && c.wrote.Swap(false) {
		c.trips.Add(1)
	}
	return n, err
}

// RoundTrips is how many round trips the connection to the host has
// taken so far, the SSH handshake included.
func (s *SSH) RoundTrips() int64 { return s.trips.Load() }

// RoundTrips is always 0 on this machine: nothing crosses a network.
func (*Local) RoundTrips() int64 { return 0 }
