package host

import (
	"testing"
)

// The handshake's round trips, as counted on the connection: the banner
// (which the server's KEXINIT comes with: it answers our version line,
// not our KEXINIT), the key exchange, new keys with the service request,
// then auth none, the key query and the signature. Counting our KEXINIT
// as a request of its own would make them seven, one more than a client
// waits for.
func TestHandshakeRoundTrips(t *testing.T) {
	e := newSSHTestEnv(t)
	srv := e.knownServer(t)
	conn := e.dial(t, targetFor(srv))
	if got := conn.RoundTrips(); got != 6 {
		t.Errorf("the handshake counted %d round trips, want 6", got)
	}
}

func TestIsKexinit(t *testing.T) {
	for _, c := range []struct {
		what string
		p    []byte
		want bool
	}{
		{"a KEXINIT packet", []byte{0, 0, 0, 4, 2, msgKexinit, 0, 0}, true},
		{"another message", []byte{0, 0, 0, 4, 2, 21, 0, 0}, false},
		{"the version line", []byte("SSH-2.0-Go\r\n"), false},
		{"part of a packet", []byte{0, 0, 0, 9, 2, msgKexinit, 0, 0}, false},
		{"too short", []byte{0, 0, 0, 1, 0}, false},
	} {
		if got := isKexinit(c.p); got != c.want {
			t.Errorf("%s: isKexinit = %v, want %v", c.what, got, c.want)
		}
	}
}
