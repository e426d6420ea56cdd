package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	"github.com/slipway-deploy/slipway/internal/shell"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSHOptions are the run-wide connection settings.
type SSHOptions struct {
	AcceptNewHostKeys bool          // --accept-new-host-keys: record an unknown host key in known_hosts and go on
	ConnectTimeout    time.Duration // TCP connect and SSH handshake, per host and per jump host; default 10s
	KeepAlive         time.Duration // interval of keepalive@openssh.com requests, default 15s, negative for none; a connection that misses 3 is closed
	Home              string        // home dir for ~/.ssh (default os.UserHomeDir()); tests set it
	ForwardAgent      bool          // request agent forwarding on sessions (ssh agent on SSH_AUTH_SOCK)
	// RenameAhead opens the SFTP client a switch renames with right after
	// the handshake, in the same flight as the first command's channel,
	// for a run that will switch with Rename (a deploy); otherwise it opens
	// when first needed, and no run that never renames starts an
	// sftp-server on every host.
	RenameAhead bool
	// SystemDir holds the system-wide ssh_config and ssh_known_hosts
	// (default /etc/ssh); tests point it at an empty directory.
	SystemDir string
}

const (
	defaultConnectTimeout = 10 * time.Second
	defaultKeepAlive      = 15 * time.Second
	// keepAliveMisses is how many keepalive intervals without an answer
	// close the connection.
	keepAliveMisses = 3
	// maxSessions bounds the sessions open at once on one connection:
	// OpenSSH's MaxSessions defaults to 10, the SFTP client holds one,
	// the channel opened ahead of the next command one, and stopping a
	// cancelled command takes one more.
	maxSessions = 7
	// abortGrace bounds the wait for a cancelled command's session to
	// close; a dead network must not hold up a cancelled run.
	abortGrace = 2 * time.Second
	// stderrTailSize is how much streamed stderr is kept for ExitError.
	stderrTailSize = 8 << 10
)

func (o SSHOptions) withDefaults() (SSHOptions, error) {
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = defaultConnectTimeout
	}
	if o.KeepAlive == 0 {
		o.KeepAlive = defaultKeepAlive
	}
	if o.Home == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return o, fmt.Errorf("find the home directory that holds .ssh: %w", err)
		}
		o.Home = home
	}
	if o.SystemDir == "" {
		o.SystemDir = "/etc/ssh"
	}
	return o, nil
}

// SSHTarget is a host entry as the user wrote it in slipway.yml.
type SSHTarget struct {
	Name string // display name, used in every error ("web1", "deploy@web2:2222")
	Host string // host name, IP or ~/.ssh/config alias
	User string // "" = from ssh config, else the local user name
	Port int    // 0 = from ssh config, else 22
}

// ErrConnectionLost is wrapped by the errors of commands and renames whose
// connection broke: whether they took effect on the host is unknown.
var ErrConnectionLost = errors.New("connection lost")

// SSH runs scripts on one host over one SSH connection, opened by DialSSH
// and reused for every command and rename of the run.
type SSH struct {
	name   string
	client *ssh.Client
	trips  atomic.Int64  // round trips so far (trips.go)
	jumps  []*ssh.Client // the hosts the connection goes through, first dialled first

	forwardAgent bool
	loopback     bool          // dialled directly, to a loopback address
	sessions     chan struct{} // a slot per open session, see maxSessions

	sftpMu   sync.Mutex
	sftpOpen *sftpOpen // the SFTP client, opened ahead (ssh_rename.go)

	spareMu sync.Mutex
	spare   *spareOpen // a session channel opened ahead of the next command (ssh_channel.go)

	lost       chan struct{}          // closed when the connection has ended
	lostReason atomic.Pointer[string] // why, when slipway ended it
	closed     atomic.Bool            // Close was called
	closeOnce  sync.Once
	closeErr   error
}

var _ Executor = (*SSH)(nil)

// DialSSH connects to t, through its ProxyJump hosts if the ssh config has
// any, verifying every host key against known_hosts. Errors name t.Name;
// host key problems are *HostKeyError, refused keys *AuthError.
func DialSSH(ctx context.Context, t SSHTarget, opts SSHOptions) (*SSH, error) {
	name := t.Name
	if name == "" {
		name = t.Host
	}
	if err := checkHostName(t.Host); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if t.Port < 0 || t.Port > 65535 {
		return nil, fmt.Errorf("%s: port %d is not from 1 to 65535", name, t.Port)
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	cfg, err := loadSSHConfig(opts.Home, opts.SystemDir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	target, err := cfg.resolve(t)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}

	var jumps []*ssh.Client
	closeJumps := func() {
		for i := len(jumps) - 1; i >= 0; i-- {
			jumps[i].Close()
		}
	}
	var via *ssh.Client
	viaName := ""
	for _, hop := range target.jumps {
		c, _, err := connect(ctx, via, viaName, hop, name+": jump host "+hop.alias, opts)
		if err != nil {
			closeJumps()
			return nil, err
		}
		jumps = append(jumps, c)
		via, viaName = c, hop.alias
	}
	client, conn, err := connect(ctx, via, viaName, target, name, opts)
	if err != nil {
		closeJumps()
		return nil, err
	}

	s := &SSH{
		name:     name,
		client:   client,
		jumps:    jumps,
		loopback: len(jumps) == 0 && isLoopback(client.RemoteAddr()),
		sessions: make(chan struct{}, maxSessions),
		lost:     make(chan struct{}),
	}
	s.trips.Store(conn.trips.Load())
	// Opened ahead, in the same flight: the first command's channel and
	// the SFTP client a switch renames with.
	s.openSpare()
	if opts.RenameAhead {
		s.openSFTP()
	}
	if sock := os.Getenv("SSH_AUTH_SOCK"); opts.ForwardAgent && sock != "" {
		if err := agent.ForwardToRemote(client, sock); err != nil {
			s.Close()
			return nil, fmt.Errorf("%s: set up agent forwarding: %w", name, err)
		}
		s.forwardAgent = true
	}
	go func() {
		client.Wait()
		close(s.lost)
	}()
	if opts.KeepAlive > 0 {
		go s.keepAlive(opts.KeepAlive)
	}
	return s, nil
}

// connect opens an SSH connection to ep, directly or through the
// connection via to the jump host viaName, within opts.ConnectTimeout.
// label names the host in errors. The connection it returns counts its
// round trips.
func connect(ctx context.Context, via *ssh.Client, viaName string, ep *sshEndpoint, label string, opts SSHOptions) (*ssh.Client, *tripConn, error) {
	checker, err := newHostKeyChecker(label, ep, opts)
	if err != nil {
		return nil, nil, err
	}
	auth := loadAuth(ep, opts.Home)
	defer auth.close()
	config := &ssh.ClientConfig{
		User:              ep.user,
		Auth:              auth.methods(),
		HostKeyCallback:   checker.check,
		HostKeyAlgorithms: checker.hostKeyAlgorithms(),
	}

	dialCtx, cancel := context.WithTimeout(ctx, opts.ConnectTimeout)
	defer cancel()
	var conn net.Conn
	if via == nil {
		var d net.Dialer
		conn, err = d.DialContext(dialCtx, "tcp", ep.addr)
	} else {
		conn, err = via.DialContext(dialCtx, "tcp", ep.addr)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		through := ""
		if via != nil {
			through = " through jump host " + viaName
		}
		if dialCtx.Err() != nil {
			return nil, nil, fmt.Errorf("%s: connect to %s%s: no answer within %s", label, ep.addr, through, opts.ConnectTimeout)
		}
		return nil, nil, fmt.Errorf("%s: connect to %s%s: %w", label, ep.addr, through, err)
	}

	counted := &tripConn{Conn: conn, trips: new(atomic.Int64), sshTransport: true}
	client, interrupted, err := handshake(dialCtx, counted, ep.addr, config)
	switch {
	case err == nil:
		return client, counted, nil
	case ctx.Err() != nil:
		return nil, nil, ctx.Err()
	case interrupted:
		return nil, nil, fmt.Errorf("%s: connect to %s: no SSH handshake within %s", label, ep.addr, opts.ConnectTimeout)
	case checker.err != nil:
		return nil, nil, checker.err
	case isAuthFailure(err):
		return nil, nil, &AuthError{Host: label, Addr: ep.addr, User: ep.user, Tried: auth.tried}
	}
	var negotiation *ssh.AlgorithmNegotiationError
	if errors.As(err, &negotiation) && negotiation.What == "host key" && len(config.HostKeyAlgorithms) > 0 {
		return nil, nil, fmt.Errorf("%s (%s): the server offers no host key of a type known_hosts has for it (known_hosts has %v, the server offers %v); if its keys were replaced on purpose, remove the old ones with: %s, then run again with --accept-new-host-keys",
			label, ep.addr, negotiation.SupportedAlgorithms, negotiation.RequestedAlgorithms, shell.Join("ssh-keygen", "-R", knownhosts.Normalize(ep.addr)))
	}
	return nil, nil, fmt.Errorf("%s: connect to %s: %w", label, ep.addr, err)
}

// handshake runs the SSH handshake on conn, closing conn if ctx ends first
// (conn may be a channel of a jump host, which has no deadlines);
// interrupted tells that it did.
func handshake(ctx context.Context, conn net.Conn, addr string, config *ssh.ClientConfig) (client *ssh.Client, interrupted bool, err error) {
	finished := make(chan struct{})
	watcherDone := make(chan struct{})
	go func() {
		defer close(watcherDone)
		select {
		case <-finished:
		case <-ctx.Done():
			interrupted = true
			conn.Close()
		}
	}()
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, config)
	close(finished)
	<-watcherDone
	if interrupted {
		if err == nil {
			c.Close()
		}
		return nil, true, ctx.Err()
	}
	if err != nil {
		conn.Close()
		return nil, false, err
	}
	return ssh.NewClient(c, chans, reqs), false, nil
}

// keepAlive sends keepalive@openssh.com every interval and closes the
// connection when an answer has not come within keepAliveMisses intervals,
// so a dead network fails the run instead of hanging it.
func (s *SSH) keepAlive(interval time.Duration) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-s.lost:
			return
		case <-ticker.C:
		}
		answered := make(chan error, 1)
		go func() {
			s.trips.Add(1)
			_, _, err := s.client.SendRequest("keepalive@openssh.com", true, nil)
			answered <- err
		}()
		timeout := time.NewTimer(keepAliveMisses * interval)
		select {
		case err := <-answered:
			timeout.Stop()
			if err != nil {
				return // the connection has ended; s.lost tells everyone
			}
		case <-timeout.C:
			reason := fmt.Sprintf("no answer to keepalives for %s", keepAliveMisses*interval)
			s.lostReason.Store(&reason)
			s.client.Close()
			return
		case <-s.lost:
			timeout.Stop()
			return
		}
	}
}

func isLoopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// Loopback reports whether the host was dialled directly on a loopback
// address (the same machine): no network link between us.
func (s *SSH) Loopback() bool { return s.loopback }

// Name is the host as the user named it.
func (s *SSH) Name() string { return s.name }

// connectionError describes err, from doing what on the connection.
func (s *SSH) connectionError(what string, err error) error {
	if s.closed.Load() {
		return fmt.Errorf("%s: cannot %s: the connection was closed", s.name, what)
	}
	var missing *ssh.ExitMissingError
	lost := errors.As(err, &missing) || errors.Is(err, errNoExitStatus) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, sftp.ErrSSHFxConnectionLost)
	select {
	case <-s.lost:
		lost = true
	default:
	}
	if !lost {
		return fmt.Errorf("%s: %s: %w", s.name, what, err)
	}
	reason := ""
	if r := s.lostReason.Load(); r != nil {
		reason = " (" + *r + ")"
	}
	return fmt.Errorf("%s: %w%s: cannot %s: %v", s.name, ErrConnectionLost, reason, what, err)
}

// DialTCP opens a TCP connection from the host itself, through the SSH
// connection (a direct-tcpip channel): a health check of the host's own
// 127.0.0.1:port reaches that host, not a load balancer, and needs no curl.
func (s *SSH) DialTCP(ctx context.Context, addr string) (net.Conn, error) {
	conn, err := s.dial(ctx, "tcp", addr)
	if err != nil && (ctx.Err() == nil || !errors.Is(err, ctx.Err())) {
		return nil, fmt.Errorf("%s: connect to %s from the host: %w", s.name, addr, err)
	}
	return conn, err
}

// dial opens a channel of the SSH connection to addr on the host (tcp:
// direct-tcpip; unix: direct-streamlocal), whose answers count as round
// trips; if ctx ends first, it returns ctx's error and closes the
// connection should it come after all.
func (s *SSH) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		conn net.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		s.trips.Add(1)
		conn, err := s.client.Dial(network, addr)
		if err == nil {
			conn = &tripConn{Conn: conn, trips: &s.trips}
		}
		done <- result{conn, err}
	}()
	select {
	case r := <-done:
		return r.conn, r.err
	case <-ctx.Done():
		go func() {
			if r := <-done; r.conn != nil {
				r.conn.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// Close ends the connection and those to the jump hosts.
func (s *SSH) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		err := s.client.Close()
		s.sftpMu.Lock()
		if o := s.sftpOpen; o != nil {
			select {
			case <-o.done:
				if o.client != nil {
					o.client.Close()
				}
			default: // ends with the connection
			}
		}
		s.sftpMu.Unlock()
		for i := len(s.jumps) - 1; i >= 0; i-- {
			s.jumps[i].Close()
		}
		if err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, io.EOF) {
			s.closeErr = fmt.Errorf("%s: close the connection: %w", s.name, err)
		}
	})
	return s.closeErr
}
