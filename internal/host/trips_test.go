package host

import (
	"testing"
)

// The handshake's round trips, as counted on the connection: the banner
// (which the server's KEXINIT comes with: it answers our version line,
// not our KEXINIT), the key exchange (the server's NEWKEYS follows its
// reply, it does not answer ours), the service request, then auth none,
// the key query and the signature. Counting our KEXINIT or NEWKEYS as a
// request would make them seven or eight, more than a client waits for,
// depending on how the server's packets fall into reads (as on a loaded
// machine); repeated, so that such a split shows.
func TestHandshakeRoundTrips(t *testing.T) {
	e := newSSHTestEnv(t)
	srv := e.knownServer(t)
	for range 20 {
		conn := e.dial(t, targetFor(srv))
		if got := conn.RoundTrips(); got != 6 {
			t.Fatalf("the handshake counted %d round trips, want 6", got)
		}
		conn.Close()
	}
}

func TestIsPlainPacket(t *testing.T) {
	for _, c := range []struct {
		what string
		p    []byte
		want bool
	}{
		{"a KEXINIT packet", []byte{0, 0, 0, 4, 2, msgKexinit, 0, 0}, true},
		{"another message", []byte{0, 0, 0, 4, 2, msgNewKeys, 0, 0}, false},
		{"the version line", []byte("SSH-2.0-Go\r\n"), false},
		{"part of a packet", []byte{0, 0, 0, 9, 2, msgKexinit, 0, 0}, false},
		{"too short", []byte{0, 0, 0, 1, 0}, false},
	} {
		if got := isPlainPacket(c.p, msgKexinit); got != c.want {
			t.Errorf("%s: isPlainPacket(KEXINIT) = %v, want %v", c.what, got, c.want)
		}
	}
}
