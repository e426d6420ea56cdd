package testutil

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// Fleet is a set of OpenSSH servers on 127.0.0.1, one per simulated host.
// Each host runs its sshd in its own mount namespace, where /srv and the
// deploy user's home are the host's own directories on this machine.
type Fleet struct {
	// Dir is the fleet's temporary directory; it is removed after the test.
	Dir string
	// Home is a HOME for the slipway process under test: Home/.ssh/config
	// has a "Host hostN" block per host (HostName 127.0.0.1, Port, User,
	// IdentityFile, UserKnownHostsFile), Home/.ssh/id_ed25519 is the deploy
	// user's key and Home/.ssh/known_hosts holds every host's key, as
	// "[127.0.0.1]:PORT ssh-ed25519 ...", unless Options.NoKnownHosts.
	Home string
	// User is the account the hosts accept logins for (DeployUser), but
	// those whose HostOptions.Shell names another login shell: see
	// Host.User.
	User  string
	Hosts []*Host

	account account
}

// Options changes how StartFleet sets up the fleet.
type Options struct {
	// NoKnownHosts leaves Home/.ssh/known_hosts empty, so that every host's
	// key is unknown to the client.
	NoKnownHosts bool
	// PrivateNetwork gives every host a network namespace of its own with
	// its own loopback, as real servers have: a web server on
	// 127.0.0.1:8080 in host1 is not the one in host2, and a health check
	// through an SSH tunnel (direct-tcpip) reaches the host's own. sshd
	// listens on 127.0.0.1:22 inside the host; this process relays Host.Port
	// on this machine to it. Servers the test runs on this machine are not
	// reachable from such hosts.
	PrivateNetwork bool
	// PIDNamespaces gives every host a PID namespace of its own, as real
	// servers have: the host's /proc shows only its own processes (those
	// its sessions started and what Run started), so a process in
	// releases/X on one host is not one on another. The namespace's first
	// process is a small init that reaps orphans; this process reaches
	// the namespaces through it. sshd's listener stays in this machine's
	// PID namespace (nsenter --no-fork), the sessions it forks are in the
	// host's.
	PIDNamespaces bool
	// Hosts sets what single hosts differ in, by index: Hosts[0] is
	// host1's. Hosts past its end get the zero HostOptions.
	Hosts []HostOptions
}

// HostOptions are what one host of a fleet differs in from the others, as
// real servers do.
type HostOptions struct {
	// Shell is the deploy user's login shell: "" or "bash" (DeployUser),
	// "dash", "tcsh" or "fish", each with its own account (DeployUser-dash
	// and so on), since sshd hands every command to the login shell.
	Shell string
	// BusyBox gives SSH sessions a PATH (sshd's SetEnv) of BusyBox applets
	// only, as on Alpine or a minimal image: tar, sha256sum, cp, find,
	// xargs, stat, date and the rest resolve to BusyBox. /bin/sh is still
	// this machine's (dash on Debian).
	BusyBox bool
	// NoSFTP leaves the sftp Subsystem out of the host's sshd_config, a
	// common hardening.
	NoSFTP bool
	// FileSystem gives the host a file system of its own as /srv: "xfs"
	// (made with reflinks, the RHEL default) or "ext4", on a loop device
	// over a sparse image in the host's directory, mounted in the host's
	// mount namespace only. "" is a directory of this machine's file
	// system. A file system of its own implies a PID namespace too (see
	// Options.PIDNamespaces), whose init keeps the mount where this machine
	// reaches it: Root is then /proc/PID/root/srv.
	FileSystem string
}

// hostOptions returns the options of the i-th host (from 0).
func (o Options) hostOptions(i int) HostOptions {
	if i < len(o.Hosts) {
		return o.Hosts[i]
	}
	return HostOptions{}
}

// readyTimeout bounds how long one sshd may take to start listening.
const readyTimeout = 10 * time.Second

// StartFleet starts n hosts, named host1 … hostN, in parallel and returns
// once every one answers with an SSH banner. It fails the test, with the
// sshd log, if a host does not come up within ten seconds. When the test
// ends every process of every host is killed and Dir is removed.
//
// It needs root, Linux, sshd and util-linux (see Require), and creates the
// user DeployUser on this machine if it is missing.
func StartFleet(t testing.TB, n int, opts Options) *Fleet {
	t.Helper()
	requireFleet(t)
	if opts.PrivateNetwork {
		_, err := exec.LookPath("ip")
		Require(t, "ip on PATH, for Options.PrivateNetwork: apt-get install iproute2", err == nil)
	}
	if n < 1 {
		t.Fatalf("StartFleet: %d hosts; want at least 1", n)
	}
	if len(opts.Hosts) > n {
		t.Fatalf("StartFleet: options for %d hosts, but %d hosts", len(opts.Hosts), n)
	}
	requireHostOptions(t, opts)
	acct, err := ensureDeployUser()
	if err != nil {
		t.Fatalf("StartFleet: deploy user: %v", err)
	}
	// /srv is only a mount point here; /run/sshd is the privilege separation
	// directory sshd insists on.
	for _, dir := range []string{HostRoot, "/run/sshd"} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatalf("StartFleet: %v", err)
		}
	}
	sshdOptions, err := sshdVersionOptions()
	if err != nil {
		t.Fatalf("StartFleet: %v", err)
	}

	dir := t.TempDir()
	f := &Fleet{Dir: dir, Home: filepath.Join(dir, "home"), User: acct.name, account: acct}
	if err := os.MkdirAll(filepath.Join(f.Home, ".ssh"), 0o700); err != nil {
		t.Fatalf("StartFleet: %v", err)
	}
	userKey, err := writeEd25519Key(f.IdentityFile(), "slipway-e2e client")
	if err != nil {
		t.Fatalf("StartFleet: user key: %v", err)
	}
	authorizedKey := ssh.MarshalAuthorizedKey(userKey)
	if err := os.WriteFile(f.IdentityFile()+".pub", authorizedKey, 0o644); err != nil {
		t.Fatalf("StartFleet: %v", err)
	}

	// With a private network, each host's forwarder picks its port.
	ports := make([]int, n)
	if !opts.PrivateNetwork {
		if ports, err = freePorts(n); err != nil {
			t.Fatalf("StartFleet: %v", err)
		}
	}
	for i := range n {
		name := fmt.Sprintf("host%d", i+1)
		hostDir := filepath.Join(dir, name)
		hostOpts := opts.hostOptions(i)
		hostAcct := acct
		if hostOpts.Shell != "" {
			if hostAcct, err = ensureAccount(hostOpts.Shell); err != nil {
				t.Fatalf("StartFleet: %s: %v", name, err)
			}
		}
		f.Hosts = append(f.Hosts, &Host{
			Name:        name,
			Port:        ports[i],
			Root:        filepath.Join(hostDir, "srv"),
			UserHome:    filepath.Join(hostDir, "home"),
			User:        hostAcct.name,
			fleet:       f,
			dir:         hostDir,
			sshdOptions: sshdOptions,
			account:     hostAcct,
			opts:        hostOpts,
			ownPIDs:     opts.PIDNamespaces || hostOpts.FileSystem != "",
		})
	}
	t.Cleanup(func() {
		if err := f.stop(); err != nil {
			t.Errorf("stopping the SSH fleet: %v", err)
		}
	})

	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, h := range f.Hosts {
		wg.Go(func() {
			if err := h.setUp(authorizedKey, opts.PrivateNetwork); err != nil {
				errs[i] = fmt.Errorf("%s: %w", h.Name, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("StartFleet(%d): %v", n, err)
	}
	if err := f.writeClientFiles(opts); err != nil {
		t.Fatalf("StartFleet: %v", err)
	}
	return f
}

// Logs returns the sshd log of every host, each under a header line, for
// the failure message of a test.
func (f *Fleet) Logs() string {
	var logs strings.Builder
	for _, h := range f.Hosts {
		fmt.Fprintf(&logs, "---- sshd log of %s (127.0.0.1:%d)\n%s", h.Name, h.Port, h.Log())
	}
	return logs.String()
}

// SSHConfig is the path of the client configuration, Home/.ssh/config.
func (f *Fleet) SSHConfig() string { return filepath.Join(f.Home, ".ssh", "config") }

// KnownHosts is the path of the client's known_hosts file.
func (f *Fleet) KnownHosts() string { return filepath.Join(f.Home, ".ssh", "known_hosts") }

// IdentityFile is the path of the deploy user's private key.
func (f *Fleet) IdentityFile() string { return filepath.Join(f.Home, ".ssh", "id_ed25519") }

// Env is the environment to run slipway in: this process's environment with
// HOME set to f.Home and no ssh-agent (SSH_AUTH_SOCK, SSH_AGENT_PID), so
// that only the fleet's key and configuration are used.
func (f *Fleet) Env() []string {
	var env []string
	for _, kv := range os.Environ() {
		key, _, _ := strings.Cut(kv, "=")
		switch key {
		case "HOME", "SSH_AUTH_SOCK", "SSH_AGENT_PID":
			continue
		}
		env = append(env, kv)
	}
	return append(env, "HOME="+f.Home)
}

// SSHCommand returns the system OpenSSH client set up for the fleet:
// ssh -F Home/.ssh/config -o BatchMode=yes args..., with Env. The system
// client reads ~/.ssh from the passwd entry, not from HOME, hence -F.
// It is the reference the tests hold slipway's SSH behaviour against.
func (f *Fleet) SSHCommand(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ssh", append([]string{"-F", f.SSHConfig(), "-o", "BatchMode=yes"}, args...)...)
	cmd.Env = f.Env()
	return cmd
}

func (f *Fleet) writeClientFiles(opts Options) error {
	var config, knownHosts strings.Builder
	fmt.Fprintf(&config, "# SSH fleet of a slipway end-to-end test: %d hosts on 127.0.0.1.\n", len(f.Hosts))
	for _, h := range f.Hosts {
		fmt.Fprintf(&config, "\nHost %s\n  HostName 127.0.0.1\n  Port %d\n  User %s\n  IdentityFile %s\n  UserKnownHostsFile %s\n",
			h.Name, h.Port, h.User, f.IdentityFile(), f.KnownHosts())
		if !opts.NoKnownHosts {
			knownHosts.WriteString(h.KnownHostsLine() + "\n")
		}
	}
	if err := os.WriteFile(f.SSHConfig(), []byte(config.String()), 0o600); err != nil {
		return err
	}
	return os.WriteFile(f.KnownHosts(), []byte(knownHosts.String()), 0o600)
}

// stop kills every process of every host and releases their namespaces.
func (f *Fleet) stop() error {
	errs := make([]error, len(f.Hosts))
	var wg sync.WaitGroup
	for i, h := range f.Hosts {
		wg.Go(func() {
			if err := h.release(); err != nil {
				errs[i] = fmt.Errorf("%s: %w", h.Name, err)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// freePorts returns n distinct ports free on 127.0.0.1 at the time of the
// call. All n are held open together, so that they differ; another process
// may still take one before sshd binds it, which Host.setUp retries.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("find a free port: %w", err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// UID is the user id of the deploy user, as the processes it runs on the
// hosts show it.
func (f *Fleet) UID() int { return f.account.uid }
