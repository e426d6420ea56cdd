package testutil

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// HostRoot is the directory under which a host's files live as the host
// sees them; Host.Root backs it.
const HostRoot = "/srv"

// Host is one simulated server of a Fleet: an sshd reachable on
// 127.0.0.1:Port, in a mount namespace of its own where HostRoot is Root
// and the deploy user's home is UserHome. Everything else (/tmp, /usr,
// /etc) is this machine's. With Options.PrivateNetwork the host also has a
// network namespace of its own, see there. The namespaces live as long as
// the fleet, across Stop, Start and RotateHostKey.
type Host struct {
	// Name is the host's alias in the fleet's ssh config: host1, host2, ...
	Name string
	// Port is where the host's sshd is reached on 127.0.0.1 of this
	// machine; it stays across restarts.
	Port int
	// Root is the directory on this machine that the host sees as /srv,
	// owned by the deploy user, mode 0755. For a host with a file system
	// of its own (HostOptions.FileSystem) it is /proc/PID/root/srv, PID
	// being the host's init: filepath.EvalSymlinks, which resolves
	// /proc/PID/root to this machine's /, cannot resolve paths under it;
	// os.Readlink and plain opens can.
	Root string
	// UserHome is the directory on this machine that the host sees as the
	// deploy user's home; it holds .ssh/authorized_keys.
	UserHome string
	// User is the account the host accepts logins for: the fleet's User,
	// or the account with the login shell HostOptions.Shell names.
	User string

	fleet       *Fleet
	dir         string
	sshdOptions string // version-dependent sshd_config lines
	account     account
	opts        HostOptions
	ownPIDs     bool // a PID namespace of its own, with init

	nsFile  *os.File // holds the mount namespace alive, see createNamespace
	nsLink  string   // "mnt:[N]", as /proc/PID/ns/mnt reads
	netFile *os.File // the network namespace, with Options.PrivateNetwork only
	pidFile *os.File // the PID namespace, with ownPIDs only

	init       *exec.Cmd     // the PID namespace's first process, with ownPIDs only
	initPID    int           // its PID, set once with init, for readers without mu
	initExited chan struct{} // closed once init has been waited for

	mu       sync.Mutex
	hostKey  ssh.PublicKey
	listener *exec.Cmd     // nsenter exec'd into sshd -D; nil while stopped
	exited   chan struct{} // closed once listener has been waited for
	fw       *forwarder    // relays Port to sshd, with a private network; nil while stopped
}

func (h *Host) configPath() string  { return filepath.Join(h.dir, "sshd_config") }
func (h *Host) imagePath() string   { return filepath.Join(h.dir, "srv."+h.opts.FileSystem) }
func (h *Host) hostKeyPath() string { return filepath.Join(h.dir, "ssh_host_ed25519_key") }
func (h *Host) logPath() string     { return filepath.Join(h.dir, "sshd.log") }

// nsenterArgs are the options that make nsenter enter the host's
// namespaces, named through the descriptors this process holds open.
func (h *Host) nsenterArgs() []string {
	args := []string{"--mount=" + fdPath(h.nsFile)}
	if h.netFile != nil {
		args = append(args, "--net="+fdPath(h.netFile))
	}
	if h.pidFile != nil {
		args = append(args, "--pid="+fdPath(h.pidFile))
	}
	return args
}

// UID is the user id of the host's deploy user (User), as the processes it
// runs on the host show it.
func (h *Host) UID() int { return h.account.uid }

// InitPID is the PID, on this machine, of the first process of the host's
// own PID namespace (Options.PIDNamespaces), or 0 if it has none.
func (h *Host) InitPID() int { return h.initPID }

func fdPath(f *os.File) string { return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), f.Fd()) }

// sshdPort is the port sshd listens on in the host's network.
func (h *Host) sshdPort() int {
	if h.netFile != nil {
		return innerSSHPort
	}
	return h.Port
}

// setUp creates the host's directories, key and namespace and starts sshd.
func (h *Host) setUp(authorizedKey []byte, privateNetwork bool) error {
	acct := h.account
	if err := os.MkdirAll(h.dir, 0o700); err != nil {
		return err
	}
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{{h.Root, 0o755}, {h.UserHome, 0o700}, {filepath.Join(h.UserHome, ".ssh"), 0o700}} {
		if d.path == h.Root && h.opts.FileSystem != "" {
			continue // Root is the file system's root, see createHostInit
		}
		if err := os.Mkdir(d.path, d.mode); err != nil {
			return err
		}
		// Mkdir applies the umask; the deploy user must get exactly mode.
		if err := os.Chmod(d.path, d.mode); err != nil {
			return err
		}
		if err := os.Chown(d.path, acct.uid, acct.gid); err != nil {
			return err
		}
	}
	authorizedKeys := filepath.Join(h.UserHome, ".ssh", "authorized_keys")
	if err := os.WriteFile(authorizedKeys, authorizedKey, 0o600); err != nil {
		return err
	}
	if err := os.Chown(authorizedKeys, acct.uid, acct.gid); err != nil {
		return err
	}
	hostKey, err := writeEd25519Key(h.hostKeyPath(), h.Name)
	if err != nil {
		return fmt.Errorf("host key: %w", err)
	}
	h.hostKey = hostKey
	if h.opts.BusyBox {
		if err := writeBusyBoxApplets(h.busyBoxDir(), acct); err != nil {
			return fmt.Errorf("BusyBox applets: %w", err)
		}
	}
	if h.opts.FileSystem != "" {
		if err := makeFileSystem(h.imagePath(), h.opts.FileSystem); err != nil {
			return err
		}
	}
	create := h.createNamespace
	if h.ownPIDs {
		create = h.createHostInit
	}
	if err := create(privateNetwork); err != nil {
		return err
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	return h.startOnFreePortLocked()
}

// startOnFreePortLocked starts sshd on h.Port or, if another process took
// that port since freePorts found it free, on another one. Behind a
// forwarder this process binds Port itself, so there is no such race. The
// caller holds h.mu.
func (h *Host) startOnFreePortLocked() error {
	for attempt := 1; ; attempt++ {
		if err := h.writeConfig(); err != nil {
			return err
		}
		err := h.startLocked()
		if !errors.Is(err, errPortInUse) || h.netFile != nil || attempt == 5 {
			return err
		}
		ports, portErr := freePorts(1)
		if portErr != nil {
			return portErr
		}
		h.Port = ports[0]
	}
}

// createNamespace makes the host's mount namespace: a short-lived shell in
// a new namespace (with private propagation, so that nothing mounted in it
// shows on this machine) bind-mounts Root on /srv and UserHome on the
// user's home, then this process opens /proc/PID/ns/mnt of it. That open
// descriptor keeps the namespace, with its mounts, alive after the shell is
// gone; sshd and Run enter it with nsenter. Holding it also keeps the
// kernel from giving the namespace's number to another namespace while the
// host lives, which makes "every process in the namespace" a safe thing to
// kill. With a private network, the shell is in a new network namespace
// too, whose loopback it brings up.
func (h *Host) createNamespace(privateNetwork bool) error {
	unshare := []string{"--mount", "--propagation", "private"}
	script := `mount --bind "$1" "$2" && mount --bind "$3" "$4" && echo ready && read -r line`
	if privateNetwork {
		unshare = append(unshare, "--net")
		script = "ip link set lo up && " + script
	}
	cmd := exec.Command("unshare", append(unshare, "--", "/bin/sh", "-c", script,
		"sh", h.Root, HostRoot, h.UserHome, h.account.home)...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("create mount namespace: %w", err)
	}
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	var openErr error
	if line == "ready\n" {
		h.nsFile, openErr = os.Open(fmt.Sprintf("/proc/%d/ns/mnt", cmd.Process.Pid))
		if openErr == nil && privateNetwork {
			h.netFile, openErr = os.Open(fmt.Sprintf("/proc/%d/ns/net", cmd.Process.Pid))
		}
	}
	stdin.Close()
	waitErr := cmd.Wait()
	switch {
	case line != "ready\n":
		return fmt.Errorf("create mount namespace: %v: %s", waitErr, strings.TrimSpace(stderr.String()))
	case openErr != nil:
		return fmt.Errorf("create mount namespace: %w", openErr)
	}
	if h.nsLink, err = os.Readlink(fdPath(h.nsFile)); err != nil {
		return err
	}
	if own, err := os.Readlink("/proc/self/ns/mnt"); err != nil || own == h.nsLink {
		return fmt.Errorf("create mount namespace: %s is this process's own namespace (%v)", h.nsLink, err)
	}
	return nil
}

func (h *Host) writeConfig() error {
	config := fmt.Sprintf(`# sshd of slipway end-to-end test host %s
ListenAddress 127.0.0.1:%d
HostKey %s
PidFile none
AuthorizedKeysFile .ssh/authorized_keys
StrictModes no
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin no
AllowUsers %s
AllowTcpForwarding yes
MaxSessions 100
MaxStartups 200
LoginGraceTime 30
UseDNS no
PrintMotd no
PrintLastLog no
LogLevel VERBOSE
%s`, h.Name, h.sshdPort(), h.hostKeyPath(), h.User, h.sshdOptions)
	if !h.opts.NoSFTP {
		config += "Subsystem sftp internal-sftp\n"
	}
	if h.opts.BusyBox {
		// SetEnv overrides sshd's default PATH in every session, whatever
		// the login shell, as a BusyBox system's PATH would.
		config += "SetEnv PATH=" + path.Join(h.account.home, busyBoxDirName) + "\n"
	}
	return os.WriteFile(h.configPath(), []byte(config), 0o600)
}

var errPortInUse = errors.New("port in use")

// startLocked starts sshd in the host's namespaces, and the forwarder to
// it with a private network, and waits until it answers. The caller holds
// h.mu.
func (h *Host) startLocked() error {
	if h.netFile != nil {
		fw, err := startForwarder(h.Port, h.netFile)
		if err != nil {
			return fmt.Errorf("listen on 127.0.0.1:%d: %w", h.Port, err)
		}
		h.fw, h.Port = fw, fw.port()
	}
	if err := h.startSSHD(); err != nil {
		return errors.Join(err, h.stopLocked())
	}
	return nil
}

func (h *Host) startSSHD() error {
	logFile, err := os.OpenFile(h.logPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	logStart, err := logFile.Seek(0, io.SeekEnd)
	if err != nil {
		logFile.Close()
		return err
	}
	fmt.Fprintf(logFile, "==== testutil: %s starting sshd, reached on 127.0.0.1:%d, at %s\n", h.Name, h.Port, time.Now().Format(time.RFC3339Nano))
	// nsenter enters the namespaces and execs sshd in the same process, so
	// the PID is the listener's. With a PID namespace, --no-fork keeps the
	// listener in this machine's one; every session it forks is in the
	// host's.
	args := h.nsenterArgs()
	if h.pidFile != nil {
		args = append(args, "--no-fork")
	}
	args = append(args, "--", sshdPath, "-D", "-f", h.configPath(), "-E", h.logPath())
	cmd := exec.Command("nsenter", args...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Setpgid keeps a Ctrl-C at the terminal away from sshd, so that the
	// cleanup stops it; Pdeathsig kills it if this process dies without
	// cleaning up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	err = cmd.Start()
	logFile.Close()
	if err != nil {
		return fmt.Errorf("start sshd: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	h.listener, h.exited = cmd, exited
	return h.waitReady(logStart)
}

// waitReady waits until sshd has logged that it listens on its port (so
// that the banner is its own, not that of another sshd on a port taken
// meanwhile) and answers with an SSH banner.
func (h *Host) waitReady(logStart int64) error {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(h.Port))
	listening := fmt.Sprintf("Server listening on 127.0.0.1 port %d.", h.sshdPort())
	deadline := time.Now().Add(readyTimeout)
	for {
		log := h.logSince(logStart)
		select {
		case <-h.exited:
			err := fmt.Errorf("sshd exited (%v) before it was ready; sshd log:\n%s", h.listener.ProcessState, log)
			if strings.Contains(log, "Address already in use") {
				err = fmt.Errorf("%w: %w", errPortInUse, err)
			}
			return err
		default:
		}
		if strings.Contains(log, listening) && answersSSH(addr) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sshd did not answer on %s within %s; sshd log:\n%s", addr, readyTimeout, log)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func answersSSH(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
	banner, err := bufio.NewReader(conn).ReadString('\n')
	return err == nil && strings.HasPrefix(banner, "SSH-2.0-")
}

// stopLocked closes the forwarder, kills the listener (first, so that it
// forks no new session), then every other process in the host's
// namespace: sessions, what they started, and what Run left running. The
// caller holds h.mu.
func (h *Host) stopLocked() error {
	if h.fw != nil {
		h.fw.stop()
		h.fw = nil
	}
	if h.listener != nil {
		_ = h.listener.Process.Kill()
		select {
		case <-h.exited:
		case <-time.After(5 * time.Second):
			return fmt.Errorf("sshd (pid %d) did not exit after SIGKILL", h.listener.Process.Pid)
		}
		h.listener = nil
	}
	if h.nsLink == "" {
		return nil // the namespace was never made
	}
	initPID := h.InitPID()
	return killUntilGone(h.nsLink, func(p Process) bool { return p.PID != initPID }, 5*time.Second)
}

// release stops the host for good and lets its namespace go.
func (h *Host) release() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.nsFile == nil {
		return nil
	}
	err := h.stopLocked()
	if h.init != nil {
		err = errors.Join(err, h.stopInit())
	}
	if h.opts.FileSystem != "" {
		err = errors.Join(err, h.unmountFileSystem())
	}
	h.nsFile.Close()
	h.nsFile = nil
	for _, f := range []**os.File{&h.netFile, &h.pidFile} {
		if *f != nil {
			(*f).Close()
			*f = nil
		}
	}
	return err
}

// logSince returns the sshd log from offset on.
func (h *Host) logSince(offset int64) string {
	data, err := os.ReadFile(h.logPath())
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", h.logPath(), err)
	}
	if offset > int64(len(data)) {
		offset = 0
	}
	return string(data[offset:])
}

// Log returns the host's sshd log (LogLevel VERBOSE) since the fleet
// started, for failure messages.
func (h *Host) Log() string { return h.logSince(0) }

// Path maps p, an absolute path under /srv as the host sees it, to the
// path of the same file on this machine. It panics if p is not under /srv.
//
// The mapping is lexical: an absolute symlink inside the host (a
// "current -> /srv/app/releases/X" link) resolves against this machine's
// /srv when followed from outside; read such links with os.Readlink or
// follow them with Run.
func (h *Host) Path(p string) string {
	clean := path.Clean(p)
	if clean == HostRoot {
		return h.Root
	}
	rest, ok := strings.CutPrefix(clean, HostRoot+"/")
	if !path.IsAbs(p) || !ok {
		panic(fmt.Sprintf("testutil: %s.Path(%q): not an absolute path under %s", h.Name, p, HostRoot))
	}
	return filepath.Join(h.Root, filepath.FromSlash(rest))
}

// Run runs script with /bin/sh as the deploy user inside the host (in its
// namespaces), in the user's home, and returns its standard output. It
// fails the test if the script fails. Run does not go through SSH: it
// works while sshd is stopped, after RotateHostKey, and whatever
// known_hosts says. What it leaves running in the background is killed by
// Stop and at the end of the test.
func (h *Host) Run(t testing.TB, script string) string {
	t.Helper()
	stdout, stderr, err := h.TryRun(script)
	if err != nil {
		t.Fatalf("%s: %v\nscript:\n%s\nstdout:\n%s\nstderr:\n%s", h.Name, err, script, stdout, stderr)
	}
	return stdout
}

// TryRun is Run for scripts that may fail: it returns the outputs and the
// error (an *exec.ExitError for a non-zero exit status).
func (h *Host) TryRun(script string) (stdout, stderr string, err error) {
	acct := h.account
	runuser, err := exec.LookPath("runuser") // in /usr/sbin, not on the user's PATH
	if err != nil {
		return "", "", err
	}
	// The cd happens inside: nsenter --wd would open the directory before
	// entering the namespace, that is this machine's home, not the host's.
	args := append(h.nsenterArgs(), "--",
		runuser, "-u", acct.name, "--", "/bin/sh", "-c", `cd && exec /bin/sh -c "$1"`, "sh", script)
	cmd := exec.Command("nsenter", args...)
	cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin", "LANG=C"}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

// Stop kills the host's sshd and every process in the host, as if it
// crashed; its files and mount namespace stay. Clients get "connection
// refused". The port is not held while the host is stopped.
func (h *Host) Stop(t testing.TB) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.stopLocked(); err != nil {
		t.Fatalf("%s: stop: %v", h.Name, err)
	}
}

// Start starts the host's sshd again, on the same port with the same host
// key and files. It fails the test if the host is running.
func (h *Host) Start(t testing.TB) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.listener != nil {
		t.Fatalf("%s: Start: sshd is already running (pid %d)", h.Name, h.listener.Process.Pid)
	}
	if err := h.startLocked(); err != nil {
		t.Fatalf("%s: start: %v", h.Name, err)
	}
}

// RotateHostKey restarts the host's sshd with a new host key. The fleet's
// known_hosts keeps the old key, so clients see a changed key;
// KnownHostsLine returns the new one.
func (h *Host) RotateHostKey(t testing.TB) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.stopLocked(); err != nil {
		t.Fatalf("%s: rotate host key: %v", h.Name, err)
	}
	hostKey, err := writeEd25519Key(h.hostKeyPath(), h.Name)
	if err != nil {
		t.Fatalf("%s: rotate host key: %v", h.Name, err)
	}
	h.hostKey = hostKey
	if err := h.startLocked(); err != nil {
		t.Fatalf("%s: rotate host key: %v", h.Name, err)
	}
}

// SSHDPid returns the PID of the listening sshd, or 0 while stopped.
func (h *Host) SSHDPid() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.listener == nil {
		return 0
	}
	return h.listener.Process.Pid
}

// Processes lists the live processes in the host other than its sshd
// listener: the sshd processes serving its connections and what they
// started (what KillSessions and Stop act on). It fails the test if sshd is
// not running.
func (h *Host) Processes(t testing.TB) []Process {
	t.Helper()
	listener := h.SSHDPid()
	if listener == 0 {
		t.Fatalf("%s: sshd is not running", h.Name)
	}
	procs, err := processesInMountNamespace(h.nsLink)
	if err != nil {
		t.Fatalf("%s: list processes: %v", h.Name, err)
	}
	initPID := h.InitPID()
	return slices.DeleteFunc(procs, func(p Process) bool { return p.PID == listener || p.PID == initPID })
}

// KillSessions kills the sshd processes serving this host's connections,
// not the listener: every client connected to the host sees its connection
// drop, as on a lost network, and new connections are accepted. As on a
// lost network, the commands the sessions started are not killed: they run
// on (and get EOF or SIGPIPE on their standard streams); Stop kills them.
func (h *Host) KillSessions(t testing.TB) {
	t.Helper()
	listenerPid := h.SSHDPid()
	isSession := func(p Process) bool { return p.PID != listenerPid && p.IsSSHD() }
	if err := killUntilGone(h.nsLink, isSession, 5*time.Second); err != nil {
		t.Fatalf("%s: kill sessions: %v", h.Name, err)
	}
}

// KnownHostsLine is the known_hosts line for the host's current key:
// "[127.0.0.1]:PORT ssh-ed25519 AAAA...", without a newline.
func (h *Host) KnownHostsLine() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	address := knownhosts.Normalize(net.JoinHostPort("127.0.0.1", strconv.Itoa(h.Port)))
	return knownhosts.Line([]string{address}, h.hostKey)
}

var sshdVersion struct {
	once    sync.Once
	options string
	err     error
}

// sshdVersionOptions returns the sshd_config lines that depend on the
// installed OpenSSH version. From 9.8 on, sshd penalizes addresses whose
// connections fail or drop (PerSourcePenalties); every test client comes
// from 127.0.0.1 and KillSessions drops connections on purpose.
func sshdVersionOptions() (string, error) {
	sshdVersion.once.Do(func() {
		// sshd -V prints its version on stderr and exits non-zero before 9.x.
		out, _ := exec.Command(sshdPath, "-V").CombinedOutput()
		m := regexp.MustCompile(`OpenSSH_(\d+)\.(\d+)`).FindSubmatch(out)
		if m == nil {
			sshdVersion.err = fmt.Errorf("cannot tell the OpenSSH version from %s -V: %q", sshdPath, out)
			return
		}
		major, _ := strconv.Atoi(string(m[1]))
		minor, _ := strconv.Atoi(string(m[2]))
		if major > 9 || major == 9 && minor >= 8 {
			sshdVersion.options = "PerSourcePenalties no\n"
		}
	})
	return sshdVersion.options, sshdVersion.err
}
