package testutil

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// innerSSHPort is where sshd listens inside a host with a private network.
const innerSSHPort = 22

// forwarder accepts connections on 127.0.0.1:port of this machine and
// relays each to sshd on 127.0.0.1:22 inside a host's network namespace.
type forwarder struct {
	listener net.Listener
	netns    *os.File
	done     chan struct{} // closed when the accept loop has returned

	relays sync.WaitGroup // relay goroutines, which use netns

	mu    sync.Mutex
	conns map[net.Conn]struct{} // both ends of every relayed connection; nil once stopped
}

func startForwarder(port int, netns *os.File) (*forwarder, error) {
	listener, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return nil, err
	}
	fw := &forwarder{listener: listener, netns: netns, done: make(chan struct{}), conns: map[net.Conn]struct{}{}}
	go fw.acceptLoop()
	return fw, nil
}

func (fw *forwarder) port() int { return fw.listener.Addr().(*net.TCPAddr).Port }

func (fw *forwarder) acceptLoop() {
	defer close(fw.done)
	for {
		client, err := fw.listener.Accept()
		if err != nil {
			return // closed by stop
		}
		fw.relays.Go(func() { fw.relay(client) })
	}
}

func (fw *forwarder) relay(client net.Conn) {
	server, err := dialInNetns(fw.netns, fmt.Sprintf("127.0.0.1:%d", innerSSHPort))
	if err != nil {
		// sshd is down: the client sees its connection closed.
		client.Close()
		return
	}
	if !fw.track(client, server) {
		return
	}
	// The first side to end ends both, as a dropped TCP connection would.
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			client.Close()
			server.Close()
			fw.mu.Lock()
			delete(fw.conns, client)
			delete(fw.conns, server)
			fw.mu.Unlock()
		})
	}
	go func() {
		_, _ = io.Copy(server, client)
		closeBoth()
	}()
	_, _ = io.Copy(client, server)
	closeBoth()
}

// track records a relayed pair, or closes it if the forwarder has stopped.
func (fw *forwarder) track(client, server net.Conn) bool {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if fw.conns == nil {
		client.Close()
		server.Close()
		return false
	}
	fw.conns[client], fw.conns[server] = struct{}{}, struct{}{}
	return true
}

// stop closes the listener, so that clients get "connection refused", and
// every relayed connection.
func (fw *forwarder) stop() {
	fw.listener.Close()
	<-fw.done
	fw.mu.Lock()
	for conn := range fw.conns {
		conn.Close()
	}
	fw.conns = nil
	fw.mu.Unlock()
	// A relay still dialing finds conns nil and closes its connections;
	// after this nothing uses netns, which the host may then close.
	fw.relays.Wait()
}

// dialInNetns opens a TCP connection from inside the network namespace
// netns. A socket belongs to the namespace of the thread that creates it, so
// the dial runs on a thread locked to this goroutine and switched into netns.
func dialInNetns(netns *os.File, address string) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		own, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: err}
			return
		}
		defer own.Close()
		if err := unix.Setns(int(netns.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("enter network namespace: %w", err)}
			return
		}
		conn, err := net.DialTimeout("tcp", address, 5*time.Second)
		// A thread left in the host's namespace must not run other
		// goroutines: it stays locked, and ends with this goroutine.
		if backErr := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET); backErr == nil {
			runtime.UnlockOSThread()
		} else {
			if conn != nil {
				conn.Close()
				conn = nil
			}
			err = errors.Join(err, fmt.Errorf("leave network namespace: %w", backErr))
		}
		done <- result{conn, err}
	}()
	r := <-done
	return r.conn, r.err
}
