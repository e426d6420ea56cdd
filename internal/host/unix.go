package host

import (
	"context"
	"errors"
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
	conn, err := s.dial(ctx, "unix", path)
	if err != nil && (ctx.Err() == nil || !errors.Is(err, ctx.Err())) {
		return nil, fmt.Errorf("%s: connect to %s on the host: %w", s.name, path, err)
	}
	return conn, err
}

// DialUnix is shown too.
func (v verbose) DialUnix(ctx context.Context, path string) (net.Conn, error) {
	v.report("$ connect to " + path + " on the host")
	return v.Executor.DialUnix(ctx, path)
}
