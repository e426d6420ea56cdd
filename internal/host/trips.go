package host

import (
	"encoding/binary"
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
//
// On an SSH connection (sshTransport), our first KEXINIT and NEWKEYS are
// not waited on. Each side sends its KEXINIT without waiting for the
// other's (RFC 4253, 7.1), and the server sends its own as soon as it has
// our version line, which went out before we read its banner; it sends
// its NEWKEYS right after its key exchange reply (7.3), not in answer to
// ours. So the server's KEXINIT comes in the banner's round trip and its
// NEWKEYS in the key exchange's, and the handshake takes six (banner,
// key exchange, service, then auth none, key query, signature), however
// the server's packets are split into reads. (Measured at 50 ms per round
// trip through the bench's relay: the banner arrived 112 ms after the
// connect, the server's KEXINIT 2 ms later, and every exchange after it
// 50-60 ms after the one before.)
type tripConn struct {
	net.Conn
	trips        *atomic.Int64
	wrote        atomic.Bool
	sshTransport bool
	sent         [2]atomic.Bool // our first KEXINIT, our first NEWKEYS
}

func (c *tripConn) Write(p []byte) (int, error) {
	if !c.sshTransport || !c.unanswered(p) {
		c.wrote.Store(true)
	}
	return c.Conn.Write(p)
}

// SSH message numbers (RFC 4253, 12).
const (
	msgKexinit = 20
	msgNewKeys = 21
)

// unanswered reports whether p is our first KEXINIT or our first NEWKEYS,
// which the server does not answer, and notes it as sent.
func (c *tripConn) unanswered(p []byte) bool {
	for i, msg := range []byte{msgKexinit, msgNewKeys} {
		if isPlainPacket(p, msg) && !c.sent[i].Swap(true) {
			return true
		}
	}
	return false
}

// isPlainPacket reports whether p is one whole unencrypted SSH packet of
// message msg (packet length, padding length, then the message number),
// as the first KEXINIT and NEWKEYS are: keys take effect after them.
func isPlainPacket(p []byte, msg byte) bool {
	return len(p) > 5 && int(binary.BigEndian.Uint32(p)) == len(p)-4 && p[5] == msg
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
