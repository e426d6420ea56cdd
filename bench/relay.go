package main

import (
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// relay stands between the clients (slipway, Capistrano) and one host's
// sshd: it accepts on its own port of 127.0.0.1 and copies bytes both ways,
// counting them. The SSH session is end to end (the relay sees ciphertext
// only) and the client still checks the host's key, which known_hosts
// lists under the relay's port.
type relay struct {
	listener net.Listener
	target   string

	conns     atomic.Int64 // TCP connections accepted
	up        atomic.Int64 // bytes client → host
	down      atomic.Int64 // bytes host → client
	exchanges atomic.Int64 // client → host bursts that follow host → client data
	live      atomic.Int64 // connections being relayed
	// uplink, when set, carries the client → host bytes: one link that
	// all the fleet's relays share, as a deploy machine's uplink is.
	uplink atomic.Pointer[uplink]

	mu   sync.Mutex
	open map[net.Conn]struct{}
	wg   sync.WaitGroup
}

// counts is a snapshot of a relay's counters.
type counts struct {
	conns, up, down, exchanges int64
}

func (c counts) sub(o counts) counts {
	return counts{c.conns - o.conns, c.up - o.up, c.down - o.down, c.exchanges - o.exchanges}
}

func startRelay(targetPort int) (*relay, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &relay{listener: l, target: net.JoinHostPort("127.0.0.1", strconv.Itoa(targetPort)), open: map[net.Conn]struct{}{}}
	r.wg.Add(1)
	go r.accept()
	return r, nil
}

func (r *relay) port() int { return r.listener.Addr().(*net.TCPAddr).Port }

func (r *relay) snapshot() counts {
	return counts{r.conns.Load(), r.up.Load(), r.down.Load(), r.exchanges.Load()}
}

func (r *relay) accept() {
	defer r.wg.Done()
	for {
		client, err := r.listener.Accept()
		if err != nil {
			return
		}
		r.conns.Add(1)
		r.live.Add(1)
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer r.live.Add(-1)
			r.serve(client)
		}()
	}
}

func (r *relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.open == nil {
		return false
	}
	r.open[c] = struct{}{}
	return true
}

func (r *relay) untrack(c net.Conn) {
	r.mu.Lock()
	delete(r.open, c)
	r.mu.Unlock()
	c.Close()
}

func (r *relay) serve(client net.Conn) {
	if !r.track(client) {
		client.Close()
		return
	}
	defer r.untrack(client)
	server, err := net.Dial("tcp", r.target)
	if err != nil {
		return
	}
	if !r.track(server) {
		server.Close()
		return
	}
	defer r.untrack(server)

	// lastFromServer is set when the host sent data and cleared when the
	// client next sends: each such turn of the conversation is one
	// exchange. For a client that waits for every answer, exchanges are
	// its round trips; pipelined requests and SSH's own window and
	// keepalive messages add turns, so it is an upper bound.
	var lastFromServer atomic.Bool
	lastFromServer.Store(true) // the server speaks first (its banner)
	done := make(chan struct{}, 2)
	go func() {
		copyCounting(server, client, func(n int) {
			if u := r.uplink.Load(); u != nil {
				u.carry(n)
			}
			r.up.Add(int64(n))
			if lastFromServer.Swap(false) {
				r.exchanges.Add(1)
			}
		})
		closeWrite(server)
		done <- struct{}{}
	}()
	go func() {
		copyCounting(client, server, func(n int) {
			r.down.Add(int64(n))
			lastFromServer.Store(true)
		})
		closeWrite(client)
		done <- struct{}{}
	}()
	<-done
	<-done
}

func closeWrite(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
	}
}

func copyCounting(dst io.Writer, src io.Reader, count func(int)) {
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			count(n)
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// stop closes the listener and every relayed connection and waits for the
// relay's goroutines.
func (r *relay) stop() {
	r.listener.Close()
	r.mu.Lock()
	for c := range r.open {
		c.Close()
	}
	r.open = nil
	r.mu.Unlock()
	r.wg.Wait()
}

// active is the number of relayed connections not yet closed.
func (r *relay) active() int { return int(r.live.Load()) }

// uplink is a link of a fixed bandwidth: bytes queue for it in the order
// they come, whichever host they go to, and each chunk leaves once the
// ones before it have. It stands for the deploy machine's network link,
// which every host's upload shares (the hosts' own links are faster).
type uplink struct {
	bytesPerSec float64
	mu          sync.Mutex
	free        time.Time // when the link has sent everything queued
}

func newUplink(bitsPerSec float64) *uplink { return &uplink{bytesPerSec: bitsPerSec / 8} }

// uplinkBurst is how far the link's schedule may lag the clock: a link
// idle for longer has lost that time, but the few milliseconds a sleep
// oversleeps are made up, so the link carries its rated bandwidth.
const uplinkBurst = 20 * time.Millisecond

// carry waits until n bytes have crossed the link.
func (u *uplink) carry(n int) {
	u.mu.Lock()
	now := time.Now()
	if u.free.Before(now.Add(-uplinkBurst)) {
		u.free = now.Add(-uplinkBurst)
	}
	u.free = u.free.Add(time.Duration(float64(n) / u.bytesPerSec * float64(time.Second)))
	done := u.free
	u.mu.Unlock()
	time.Sleep(time.Until(done))
}
