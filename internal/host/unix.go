package host

import (
	"context"
	"fmt"
	"net"
)

// DialUnix connects from this machine, which is the host.
func (*Local) DialUnix(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", path)
}

// DialUnix connects to a unix socket of the host through the SSH
// connection (a direct-streamlocal@openssh.com channel, which OpenSSH's
// sshd opens as the logged-in user, AllowStreamLocalForwarding permitting):
// nothing needs to be installed on the host to speak to a local server.
func (s *SSH) DialUnix(ctx context.Context, path string) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		s.trips.Add(1)
		conn, err := s.client.Dial("unix", path)
		if err == nil {
			conn = &tripConn{Conn: conn, trips: &s.trips}
		}
		done <- result{conn, err}
	}()
	select {
	case r := <-done:
		if r.err != nil {
			return nil, fmt.Errorf("%s: connect to %s on the host: %w", s.name, path, r.err)
		}
		return r.conn, nil
	case <-ctx.Done():
		go func() {
			if r := <-done; r.conn != nil {
				r.conn.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// DialUnix is shown too.
func (v verbose) DialUnix(ctx context.Context, path string) (net.Conn, error) {
	v.report("$ connect to " + path + " on the host")
	return v.Executor.DialUnix(ctx, path)
}
