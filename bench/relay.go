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
// lists under the relay's port. With a delay set (setDelay), it is also a
// network that far away: see serve.
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
	// oneWay is the delay, as a time.Duration, that each direction adds
	// to connections accepted from now on: half the round-trip time.
	oneWay atomic.Int64

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

// setDelay makes connections accepted from now on cross a network with
// round-trip time rtt: each direction delays what it carries by rtt/2.
func (r *relay) setDelay(rtt time.Duration) { r.oneWay.Store(int64(rtt / 2)) }

func (r *relay) serve(client net.Conn) {
	if !r.track(client) {
		client.Close()
		return
	}
	defer r.untrack(client)

	// lastFromServer is set when the host's data reaches the client and
	// cleared when the client next sends: each such turn of the
	// conversation is one exchange. For a client that waits for every
	// answer, exchanges are its round trips; pipelined requests and SSH's
	// own window and keepalive messages add turns, so it is an upper
	// bound. The TCP connect is not one: connections are counted apart.
	var lastFromServer atomic.Bool
	lastFromServer.Store(true) // the server speaks first (its banner)
	sent := func(n int) {
		if u := r.uplink.Load(); u != nil {
			u.carry(n)
		}
		r.up.Add(int64(n))
		if lastFromServer.Swap(false) {
			r.exchanges.Add(1)
		}
	}
	answered := func(n int) {
		r.down.Add(int64(n))
		lastFromServer.Store(true)
	}
	if oneWay := time.Duration(r.oneWay.Load()); oneWay > 0 {
		r.serveDelayed(client, oneWay, sent, answered)
		return
	}

	server, err := net.Dial("tcp", r.target)
	if err != nil {
		return
	}
	if !r.track(server) {
		server.Close()
		return
	}
	defer r.untrack(server)
	done := make(chan struct{}, 2)
	go func() {
		copyCounting(server, client, sent)
		closeWrite(server)
		done <- struct{}{}
	}()
	go func() {
		copyCounting(client, server, answered)
		closeWrite(client)
		done <- struct{}{}
	}()
	<-done
	<-done
}

// serveDelayed relays client's connection as a network oneWay away each
// way would: every chunk read from one side is written to the other
// oneWay after it was read, in order, with no limit on how many are on
// the way (a queue per direction, not a pause before each read, so that
// throughput is the machine's). On loopback the kernel completes the TCP
// handshake at once; over the network the client's connect returns after
// one round trip (SYN, SYN-ACK) and the host accepts the connection half
// a round trip later, when the client's ACK arrives: so what the client
// sends before its connect would have returned is taken as sent then, and
// the relay connects to the host when it would have accepted.
func (r *relay) serveDelayed(client net.Conn, oneWay time.Duration, sent, answered func(int)) {
	opened := time.Now()
	up := newLane(oneWay, opened.Add(2*oneWay))
	go up.read(client, sent)
	time.Sleep(time.Until(opened.Add(3 * oneWay)))
	server, err := net.Dial("tcp", r.target)
	if err == nil && !r.track(server) {
		server.Close()
		err = net.ErrClosed
	}
	if err != nil {
		client.Close()
		up.write(nil, nil) // drains what the client sent, so that read ends
		return
	}
	defer r.untrack(server)
	down := newLane(oneWay, time.Time{})
	go down.read(server, func(int) {})
	done := make(chan struct{}, 2)
	go func() {
		up.write(server, func(int) {})
		closeWrite(server)
		done <- struct{}{}
	}()
	go func() {
		down.write(client, answered)
		closeWrite(client)
		done <- struct{}{}
	}()
	<-done
	<-done
}

// lane is one direction of a delayed connection: what read takes from
// one side, write gives the other side delay later, in order.
type lane struct {
	delay    time.Duration
	earliest time.Time // nothing counts as sent before this
	chunks   chan chunk
	// writing is held while write writes a chunk, and read waits for it
	// before it reads on: a receiver that does not keep up (its socket's
	// buffer full) holds the sender back, as TCP's window does, instead
	// of the lane queueing what it cannot deliver. What is on the way is
	// then what the sender sends in one delay, not more.
	writing sync.Mutex
}

// chunk is one read, due on the other side at due; the last chunk of a
// lane has no data and marks its end (the FIN, which is delayed too).
type chunk struct {
	buf *[]byte
	n   int
	due time.Time
}

// laneChunks bounds the chunks on the way in one direction: at most
// 256 × 64 KiB, 16 MiB, far above what a link of a Gbit/s has in flight
// over 100 ms, so it does not limit throughput.
const laneChunks = 256

var chunkBufs = sync.Pool{New: func() any { b := make([]byte, 64<<10); return &b }}

func newLane(delay time.Duration, earliest time.Time) *lane {
	return &lane{delay: delay, earliest: earliest, chunks: make(chan chunk, laneChunks)}
}

// read reads src until it ends, calling sent for each chunk as it is
// read (the uplink's pacing, if any, is in sent: a chunk leaves once it
// has crossed the link), and queues the chunk.
func (l *lane) read(src net.Conn, sent func(int)) {
	due := func() time.Time {
		now := time.Now()
		if now.Before(l.earliest) {
			now = l.earliest
		}
		return now.Add(l.delay)
	}
	for {
		l.writing.Lock()
		l.writing.Unlock()
		buf := chunkBufs.Get().(*[]byte)
		n, err := src.Read(*buf)
		if n > 0 {
			sent(n)
			l.chunks <- chunk{buf: buf, n: n, due: due()}
		} else {
			chunkBufs.Put(buf)
		}
		if err != nil {
			l.chunks <- chunk{due: due()}
			close(l.chunks)
			return
		}
	}
}

// write writes each chunk to dst when it is due, calling arrived for
// each, and returns at the end of the lane. After a failed write, or with
// no dst, it discards the rest, so that read never waits for it.
func (l *lane) write(dst net.Conn, arrived func(int)) {
	failed := dst == nil
	for c := range l.chunks {
		if !failed {
			time.Sleep(time.Until(c.due))
		}
		if c.buf == nil {
			continue
		}
		if !failed {
			// Before the write: the other side may answer as soon as it
			// has read, before Write returns.
			arrived(c.n)
			l.writing.Lock()
			_, err := dst.Write((*c.buf)[:c.n])
			l.writing.Unlock()
			failed = err != nil
		}
		chunkBufs.Put(c.buf)
	}
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
