package host

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
	"golang.org/x/crypto/ssh/knownhosts"
)

// testSSHServer is an in-process SSH server on 127.0.0.1: it accepts one
// user with one key, runs "exec" requests with /bin/sh -c on this machine,
// serves the sftp subsystem with github.com/pkg/sftp (which implements
// posix-rename@openssh.com with os.Rename), forwards direct-tcpip so it can
// be a ProxyJump host, and lists the keys of a forwarded agent.
type testSSHServer struct {
	t        *testing.T
	addr     string // 127.0.0.1:port
	port     int
	hostKeys []ssh.Signer
	user     string
	userKey  ssh.PublicKey
	listener net.Listener

	accepts     atomic.Int32 // TCP connections accepted
	directTCPIP atomic.Int32 // direct-tcpip channels opened
	// ignoreKeepAlives makes the server leave global requests unanswered,
	// like a peer behind a dead network.
	ignoreKeepAlives atomic.Bool
	// ignoreSignals makes the server drop "signal" requests, as servers
	// that do not support them do.
	ignoreSignals atomic.Bool
	// leaveProcesses keeps a session's processes running when the client
	// closes it, as sshd does (it only closes their pipes).
	leaveProcesses atomic.Bool
	// noSFTP refuses the sftp subsystem, as a hardened sshd does.
	noSFTP atomic.Bool
	// sftpRequests counts the requests for the sftp subsystem.
	sftpRequests atomic.Int64
	// stdinDelay holds back what the client sends a command for this
	// long: a signal then reaches the command before it has read its
	// script.
	stdinDelay atomic.Int64
	// forwardedKeys receives the keys of each forwarded agent.
	forwardedKeys chan []*agent.Key

	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

// newTestSSHServer starts a server accepting user with userKey, presenting
// hostKeys (one fresh ed25519 key if none are given).
func newTestSSHServer(t *testing.T, user string, userKey ssh.PublicKey, hostKeys ...ssh.Signer) *testSSHServer {
	t.Helper()
	if len(hostKeys) == 0 {
		hostKeys = []ssh.Signer{newEd25519Signer(t)}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &testSSHServer{
		t:             t,
		addr:          ln.Addr().String(),
		port:          ln.Addr().(*net.TCPAddr).Port,
		hostKeys:      hostKeys,
		user:          user,
		userKey:       userKey,
		listener:      ln,
		forwardedKeys: make(chan []*agent.Key, 16),
	}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.close)
	return s
}

// hostKey is the key the server shows a client that accepts any type.
func (s *testSSHServer) hostKey() ssh.PublicKey { return s.hostKeys[0].PublicKey() }

func (s *testSSHServer) close() {
	s.listener.Close()
	s.dropConnections()
	s.wg.Wait()
}

// dropConnections cuts every TCP connection, as a network failure would.
func (s *testSSHServer) dropConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		c.Close()
	}
	s.conns = nil
}

func (s *testSSHServer) config() *ssh.ServerConfig {
	config := &ssh.ServerConfig{
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if meta.User() == s.user && bytes.Equal(key.Marshal(), s.userKey.Marshal()) {
				return nil, nil
			}
			return nil, errors.New("key not accepted")
		},
	}
	for _, k := range s.hostKeys {
		config.AddHostKey(k)
	}
	return config
}

func (s *testSSHServer) serve() {
	defer s.wg.Done()
	for {
		conn, err := s.listener.Accept()
		if err != nil {
			return
		}
		s.accepts.Add(1)
		s.mu.Lock()
		s.conns = append(s.conns, conn)
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handleConn(conn)
		}()
	}
}

func (s *testSSHServer) handleConn(conn net.Conn) {
	defer conn.Close()
	server, chans, reqs, err := ssh.NewServerConn(conn, s.config())
	if err != nil {
		return
	}
	defer server.Close()
	go func() {
		for req := range reqs {
			if s.ignoreKeepAlives.Load() {
				continue
			}
			if req.WantReply {
				req.Reply(false, nil) // what OpenSSH answers to keepalive@openssh.com
			}
		}
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for newChannel := range chans {
		wg.Add(1)
		go func() {
			defer wg.Done()
			switch newChannel.ChannelType() {
			case "session":
				s.handleSession(server, newChannel)
			case "direct-tcpip":
				s.handleDirectTCPIP(newChannel)
			default:
				newChannel.Reject(ssh.UnknownChannelType, "unsupported channel type")
			}
		}()
	}
}

func (s *testSSHServer) handleSession(server *ssh.ServerConn, newChannel ssh.NewChannel) {
	channel, reqs, err := newChannel.Accept()
	if err != nil {
		return
	}
	defer channel.Close()
	var process atomic.Pointer[os.Process]
	var exited atomic.Bool
	var running sync.WaitGroup
	defer running.Wait()
	for req := range reqs {
		switch req.Type {
		case "exec":
			var payload struct{ Command string }
			if err := ssh.Unmarshal(req.Payload, &payload); err != nil {
				req.Reply(false, nil)
				continue
			}
			cmd := exec.Command("/bin/sh", "-c", payload.Command)
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			cmd.Stdout, cmd.Stderr = channel, channel.Stderr()
			stdin, err := cmd.StdinPipe()
			if err != nil {
				req.Reply(false, nil)
				continue
			}
			if err := cmd.Start(); err != nil {
				req.Reply(false, nil)
				continue
			}
			process.Store(cmd.Process)
			req.Reply(true, nil)
			go func() {
				time.Sleep(time.Duration(s.stdinDelay.Load()))
				io.Copy(stdin, channel)
				stdin.Close()
			}()
			running.Add(1)
			go func() {
				defer running.Done()
				status := 0
				err := cmd.Wait()
				exited.Store(true)
				if err != nil {
					status = 255
					var exitErr *exec.ExitError
					if errors.As(err, &exitErr) {
						status = exitErr.ExitCode()
						if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
							status = 128 + int(ws.Signal())
						}
					}
				}
				channel.SendRequest("exit-status", false, binary.BigEndian.AppendUint32(nil, uint32(status)))
				channel.Close()
			}()
		case "subsystem":
			s.sftpRequests.Add(1)
			var payload struct{ Name string }
			if ssh.Unmarshal(req.Payload, &payload) != nil || payload.Name != "sftp" || s.noSFTP.Load() {
				req.Reply(false, nil)
				continue
			}
			req.Reply(true, nil)
			running.Add(1)
			go func() {
				defer running.Done()
				server, err := sftp.NewServer(channel)
				if err != nil {
					channel.Close()
					return
				}
				server.Serve()
				channel.Close()
			}()
		case "signal":
			var payload struct{ Signal string }
			ssh.Unmarshal(req.Payload, &payload)
			if p := process.Load(); p != nil && !exited.Load() && payload.Signal == string(ssh.SIGTERM) && !s.ignoreSignals.Load() {
				syscall.Kill(-p.Pid, syscall.SIGTERM)
			}
		case "auth-agent-req@openssh.com":
			req.Reply(true, nil)
			go s.listForwardedAgent(server)
		default:
			if req.WantReply {
				req.Reply(false, nil)
			}
		}
	}
	// The client closed the session: end what it started, as sshd's
	// closing of the pipes would eventually.
	if p := process.Load(); p != nil && !exited.Load() && !s.leaveProcesses.Load() {
		syscall.Kill(-p.Pid, syscall.SIGKILL)
	}
}

// listForwardedAgent opens an agent channel back to the client, as sshd
// does when a program on the server uses SSH_AUTH_SOCK, and records the
// keys it lists.
func (s *testSSHServer) listForwardedAgent(server *ssh.ServerConn) {
	channel, reqs, err := server.OpenChannel("auth-agent@openssh.com", nil)
	if err != nil {
		return
	}
	defer channel.Close()
	go ssh.DiscardRequests(reqs)
	keys, err := agent.NewClient(channel).List()
	if err != nil {
		return
	}
	select {
	case s.forwardedKeys <- keys:
	default:
	}
}

func (s *testSSHServer) handleDirectTCPIP(newChannel ssh.NewChannel) {
	var payload struct {
		Host       string
		Port       uint32
		OriginHost string
		OriginPort uint32
	}
	if err := ssh.Unmarshal(newChannel.ExtraData(), &payload); err != nil {
		newChannel.Reject(ssh.ConnectionFailed, "bad payload")
		return
	}
	target, err := net.Dial("tcp", net.JoinHostPort(payload.Host, strconv.Itoa(int(payload.Port))))
	if err != nil {
		newChannel.Reject(ssh.ConnectionFailed, err.Error())
		return
	}
	defer target.Close()
	channel, reqs, err := newChannel.Accept()
	if err != nil {
		return
	}
	defer channel.Close()
	s.directTCPIP.Add(1)
	go ssh.DiscardRequests(reqs)
	done := make(chan struct{})
	go func() {
		io.Copy(channel, target)
		channel.CloseWrite()
		close(done)
	}()
	io.Copy(target, channel)
	target.(*net.TCPConn).CloseWrite()
	<-done
}

func newEd25519Signer(t *testing.T) ssh.Signer {
	t.Helper()
	_, private, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(private)
	if err != nil {
		t.Fatal(err)
	}
	return signer
}

func newECDSASigner(t *testing.T) ssh.Signer {
	t.Helper()
	private, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(private)
	if err != nil {
		t.Fatal(err)
	}
	return signer
}

// writeUserKey writes a new ed25519 private key to path (OpenSSH format,
// mode 0600), encrypted when passphrase is not empty, and returns its
// private and public halves.
func writeUserKey(t *testing.T, path, passphrase string) (ed25519.PrivateKey, ssh.PublicKey) {
	t.Helper()
	public, private, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var block *pem.Block
	if passphrase == "" {
		block, err = ssh.MarshalPrivateKey(private, "slipway test")
	} else {
		block, err = ssh.MarshalPrivateKeyWithPassphrase(private, "slipway test", []byte(passphrase))
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sshPublic, err := ssh.NewPublicKey(public)
	if err != nil {
		t.Fatal(err)
	}
	return private, sshPublic
}

// addKnownHost appends a known_hosts line for addr (host:port) to file.
func addKnownHost(t *testing.T, file, addr string, key ssh.PublicKey) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(knownhosts.Line([]string{knownhosts.Normalize(addr)}, key) + "\n"); err != nil {
		t.Fatal(err)
	}
}
