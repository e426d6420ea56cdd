package testutil

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// runSSH runs the system OpenSSH client against the fleet.
func runSSH(t *testing.T, f *Fleet, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cmd := f.SSHCommand(ctx, args...)
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	return out.String(), errOut.String(), err
}

func mustSSH(t *testing.T, f *Fleet, args ...string) string {
	t.Helper()
	stdout, stderr, err := runSSH(t, f, args...)
	if err != nil {
		t.Fatalf("ssh %s: %v\nstderr:\n%s", strings.Join(args, " "), err, stderr)
	}
	return stdout
}

func requireSSHClient(t *testing.T) {
	t.Helper()
	_, err := exec.LookPath("ssh")
	Require(t, "the OpenSSH client ssh: apt-get install openssh-client", err == nil)
}

func TestHostsHaveTheirOwnSrv(t *testing.T) {
	t.Parallel()
	requireSSHClient(t)
	f := StartFleet(t, 3, Options{})
	host1, host2, host3 := f.Hosts[0], f.Hosts[1], f.Hosts[2]

	got := mustSSH(t, f, "host1", "whoami && echo hello > /srv/probe.txt && cat /srv/probe.txt")
	if want := DeployUser + "\nhello\n"; got != want {
		t.Fatalf("ssh host1: got %q, want %q", got, want)
	}
	for _, h := range []*Host{host2, host3} {
		if got := mustSSH(t, f, h.Name, "ls -A /srv"); got != "" {
			t.Errorf("%s sees %q in /srv, want an empty /srv", h.Name, got)
		}
		if _, _, err := h.TryRun("test -e /srv/probe.txt"); err == nil {
			t.Errorf("%s: Run sees /srv/probe.txt, written on host1", h.Name)
		}
	}
	data, err := os.ReadFile(host1.Path("/srv/probe.txt"))
	if err != nil || string(data) != "hello\n" {
		t.Errorf("host1.Path(/srv/probe.txt): %q, %v; want \"hello\\n\"", data, err)
	}
	if got := host1.Run(t, "cat /srv/probe.txt"); got != "hello\n" {
		t.Errorf("host1.Run: %q, want \"hello\\n\"", got)
	}

	// The bind mounts exist only in the hosts' namespaces.
	if _, err := os.Stat("/srv/probe.txt"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("/srv/probe.txt on this machine: %v; want it not to exist", err)
	}
	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(mountinfo)) {
		if fields := strings.Fields(line); len(fields) > 4 && (fields[4] == "/srv" || fields[4] == f.account.home) {
			t.Errorf("this machine has a mount on %s: %s", fields[4], line)
		}
	}

	// Root belongs to the deploy user; each host has its own home.
	info, err := os.Stat(host1.Root)
	if err != nil {
		t.Fatal(err)
	}
	if st := info.Sys().(*syscall.Stat_t); int(st.Uid) != f.account.uid || info.Mode().Perm() != 0o755 {
		t.Errorf("%s: owner %d mode %v; want owner %d mode 0755", host1.Root, st.Uid, info.Mode().Perm(), f.account.uid)
	}
	if got := mustSSH(t, f, "host1", `touch "$HOME/marker" && pwd`); got != f.account.home+"\n" {
		t.Errorf("ssh host1 pwd: %q, want %q", got, f.account.home)
	}
	if _, err := os.Stat(filepath.Join(host1.UserHome, "marker")); err != nil {
		t.Errorf("host1's home marker not in UserHome: %v", err)
	}
	if got := host2.Run(t, "pwd; ls -A"); got != f.account.home+"\n.ssh\n" {
		t.Errorf("host2 home: %q, want only .ssh in %s", got, f.account.home)
	}

	// Port forwarding works (slipway's health checks use direct-tcpip):
	// host1 connects to its own sshd and relays the banner.
	got = mustSSH(t, f, "-W", fmt.Sprintf("127.0.0.1:%d", host1.Port), "host1")
	if !strings.HasPrefix(got, "SSH-2.0-") {
		t.Errorf("ssh -W through host1: %q, want an SSH banner", got)
	}
	// And the sftp subsystem.
	stdout, stderr, err := func() (string, string, error) {
		cmd := exec.CommandContext(t.Context(), "sftp", "-F", f.SSHConfig(), "-b", "-", "host1")
		cmd.Env = f.Env()
		cmd.Stdin = strings.NewReader("ls /srv\n")
		var out, errOut strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		return out.String(), errOut.String(), err
	}()
	if err != nil || !strings.Contains(stdout, "/srv/probe.txt") {
		t.Errorf("sftp host1 ls /srv: %v\n%s%s", err, stdout, stderr)
	}
}

func TestUnknownHostKeyIsRefused(t *testing.T) {
	t.Parallel()
	requireSSHClient(t)
	f := StartFleet(t, 1, Options{NoKnownHosts: true})
	if data, err := os.ReadFile(f.KnownHosts()); err != nil || len(data) != 0 {
		t.Fatalf("known_hosts: %q, %v; want an empty file", data, err)
	}
	_, stderr, err := runSSH(t, f, "-o", "StrictHostKeyChecking=yes", "host1", "true")
	if err == nil || !strings.Contains(stderr, "Host key verification failed") {
		t.Fatalf("ssh to a host with an unknown key: %v, stderr:\n%s\nwant a refusal", err, stderr)
	}
}

func TestRotateHostKey(t *testing.T) {
	t.Parallel()
	requireSSHClient(t)
	f := StartFleet(t, 1, Options{})
	h := f.Hosts[0]
	mustSSH(t, f, "host1", "true")

	oldLine := h.KnownHostsLine()
	h.RotateHostKey(t)
	newLine := h.KnownHostsLine()
	if newLine == oldLine || !strings.HasPrefix(newLine, fmt.Sprintf("[127.0.0.1]:%d ssh-ed25519 ", h.Port)) {
		t.Fatalf("KnownHostsLine after rotation: %q (before: %q)", newLine, oldLine)
	}
	_, stderr, err := runSSH(t, f, "host1", "true")
	if err == nil || !strings.Contains(stderr, "REMOTE HOST IDENTIFICATION HAS CHANGED") {
		t.Fatalf("ssh after RotateHostKey: %v, stderr:\n%s\nwant a changed-key refusal", err, stderr)
	}
	if err := os.WriteFile(f.KnownHosts(), []byte(newLine+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	mustSSH(t, f, "host1", "true")
}

func TestKillSessionsDropsConnections(t *testing.T) {
	t.Parallel()
	requireSSHClient(t)
	f := StartFleet(t, 1, Options{})
	h := f.Hosts[0]
	listener := h.SSHDPid()

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	session := f.SSHCommand(ctx, "host1", "echo started; exec sleep 30")
	stdout, err := session.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	session.Stderr = &stderr
	if err := session.Start(); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(stdout).ReadString('\n'); line != "started\n" {
		t.Fatalf("ssh host1: read %q, %v; stderr:\n%s", line, err, stderr.String())
	}

	killed := time.Now()
	h.KillSessions(t)
	err = session.Wait()
	if err == nil || time.Since(killed) > 10*time.Second {
		t.Fatalf("ssh host1 sleep 30 after KillSessions: %v after %s; want it to fail at once", err, time.Since(killed))
	}
	t.Logf("the session ended %s after KillSessions: %v: %s", time.Since(killed).Round(time.Millisecond), err, strings.TrimSpace(stderr.String()))

	if got := h.SSHDPid(); got != listener {
		t.Errorf("SSHDPid after KillSessions: %d, want the same listener %d", got, listener)
	}
	mustSSH(t, f, "host1", "true")
	// As on a lost network, the command the session started runs on.
	procs, err := processesInMountNamespace(h.nsLink)
	if err != nil {
		t.Fatal(err)
	}
	var sleeping bool
	for _, p := range procs {
		sleeping = sleeping || p.Name == "sleep"
	}
	if !sleeping {
		t.Errorf("processes in host1 after KillSessions: %v; want the session's sleep still running", procs)
	}
}

func TestProcessesAreWhatTheHostRunsButItsListener(t *testing.T) {
	t.Parallel()
	requireSSHClient(t)
	f := StartFleet(t, 1, Options{})
	h := f.Hosts[0]
	h.Run(t, "(sleep 300 >/dev/null 2>&1 &)")
	var sleeping bool
	for _, p := range h.Processes(t) {
		if p.PID == h.SSHDPid() {
			t.Errorf("Processes lists the sshd listener %d", p.PID)
		}
		sleeping = sleeping || p.Name == "sleep"
	}
	if !sleeping {
		t.Errorf("Processes: %v; want the sleep a session left running", h.Processes(t))
	}
}

func TestStopStart(t *testing.T) {
	t.Parallel()
	requireSSHClient(t)
	f := StartFleet(t, 2, Options{})
	h := f.Hosts[0]
	h.Run(t, "echo kept > /srv/kept && (sleep 300 >/dev/null 2>&1 &)")
	before, port := h.SSHDPid(), h.Port

	h.Stop(t)
	if pid := h.SSHDPid(); pid != 0 {
		t.Errorf("SSHDPid after Stop: %d, want 0", pid)
	}
	if _, alive := processState(before); alive {
		t.Errorf("sshd %d still alive after Stop", before)
	}
	if procs, err := processesInMountNamespace(h.nsLink); err != nil || len(procs) != 0 {
		t.Errorf("processes in host1 after Stop: %v, %v; want none", procs, err)
	}
	if _, stderr, err := runSSH(t, f, "host1", "true"); err == nil || !strings.Contains(stderr, "Connection refused") {
		t.Errorf("ssh to a stopped host: %v, stderr:\n%s\nwant connection refused", err, stderr)
	}
	mustSSH(t, f, "host2", "true")
	if got := h.Run(t, "cat /srv/kept"); got != "kept\n" {
		t.Errorf("Run on a stopped host: %q, want \"kept\\n\"", got)
	}

	h.Start(t)
	if after := h.SSHDPid(); after == 0 || after == before || h.Port != port {
		t.Errorf("after Start: pid %d (before %d), port %d (before %d)", after, before, h.Port, port)
	}
	if got := mustSSH(t, f, "host1", "cat /srv/kept"); got != "kept\n" {
		t.Errorf("ssh host1 after Start: %q, want \"kept\\n\"", got)
	}
}

func TestPortTakenBeforeSSHDStarts(t *testing.T) {
	t.Parallel()
	requireSSHClient(t)
	f := StartFleet(t, 1, Options{})
	h := f.Hosts[0]
	h.Stop(t)
	squatter, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", h.Port))
	if err != nil {
		t.Fatal(err)
	}
	defer squatter.Close()

	h.mu.Lock()
	err = h.startLocked()
	h.mu.Unlock()
	if !errors.Is(err, errPortInUse) {
		t.Fatalf("starting sshd on a taken port: %v; want errPortInUse", err)
	}

	taken := h.Port
	h.mu.Lock()
	err = h.startOnFreePortLocked()
	h.mu.Unlock()
	if err != nil {
		t.Fatalf("startOnFreePortLocked: %v", err)
	}
	if h.Port == taken {
		t.Fatalf("sshd still on the taken port %d", taken)
	}
	if err := f.writeClientFiles(Options{}); err != nil {
		t.Fatal(err)
	}
	mustSSH(t, f, "host1", "true")
}

func TestCleanupLeavesNothingBehind(t *testing.T) {
	t.Parallel()
	requireSSHClient(t)
	t.Run("mount namespaces", func(t *testing.T) {
		t.Parallel()
		testCleanupLeavesNothingBehind(t, Options{})
	})
	// The hosts' inits go, with their PID namespaces, and the loop device
	// of a host's file system is detached.
	t.Run("PID namespaces and a file system", func(t *testing.T) {
		t.Parallel()
		testCleanupLeavesNothingBehind(t, Options{PIDNamespaces: true, Hosts: []HostOptions{{FileSystem: "ext4"}}})
	})
}

func testCleanupLeavesNothingBehind(t *testing.T, opts Options) {
	var (
		dir     string
		pids    []int
		session *exec.Cmd
	)
	t.Run("fleet", func(t *testing.T) {
		f := StartFleet(t, 2, opts)
		dir = f.Dir
		f.Hosts[1].Run(t, "(sleep 300 >/dev/null 2>&1 &)")
		session = f.SSHCommand(context.Background(), "host1", "sleep 300")
		if err := session.Start(); err != nil {
			t.Fatal(err)
		}
		// Registered after StartFleet, so it runs before the fleet stops.
		t.Cleanup(func() {
			for _, h := range f.Hosts {
				procs, err := processesInMountNamespace(h.nsLink)
				if err != nil {
					t.Error(err)
				}
				for _, p := range procs {
					pids = append(pids, p.PID)
				}
			}
		})
		// Wait until the session is up, with its sleep: host1's own,
		// not any sleep of the deploy user on this machine (another
		// host's, another test's).
		deadline := time.Now().Add(10 * time.Second)
		for !slices.ContainsFunc(f.Hosts[0].Processes(t), func(p Process) bool { return p.Name == "sleep" }) {
			if time.Now().After(deadline) {
				t.Fatal("the ssh session's sleep never started")
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	if len(pids) < 4 { // two listeners, a session, two sleeps
		t.Fatalf("only %d processes in the fleet before cleanup: %v", len(pids), pids)
	}
	for _, pid := range pids {
		if comm, alive := processState(pid); alive {
			t.Errorf("process %d (%s) of the fleet survived its cleanup", pid, comm)
		}
	}
	if err := session.Wait(); err == nil {
		t.Error("the ssh session ended without error when the fleet stopped")
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("fleet directory %s after cleanup: %v; want it removed", dir, err)
	}
	if out, err := exec.Command("losetup", "--list", "--noheadings", "--output", "BACK-FILE").Output(); err != nil || strings.Contains(string(out), dir) {
		t.Errorf("loop devices after cleanup (%v):\n%s\nwant none backed by a file in %s", err, out, dir)
	}
}

func TestPrivateNetwork(t *testing.T) {
	t.Parallel()
	requireSSHClient(t)
	_, err := exec.LookPath("perl")
	Require(t, "perl, to serve TCP inside a host: apt-get install perl-base", err == nil)
	f := StartFleet(t, 2, Options{PrivateNetwork: true})

	if got := mustSSH(t, f, "host1", "whoami"); got != DeployUser+"\n" {
		t.Fatalf("ssh host1 whoami: %q", got)
	}
	// Inside, each host's sshd is on its own 127.0.0.1:22.
	for _, h := range f.Hosts {
		if got := mustSSH(t, f, "-W", "127.0.0.1:22", h.Name); !strings.HasPrefix(got, "SSH-2.0-") {
			t.Errorf("ssh -W 127.0.0.1:22 %s: %q, want an SSH banner", h.Name, got)
		}
	}
	// Both hosts serve on 127.0.0.1:8080, each its own name, and a tunnel
	// through a host reaches that host's server.
	const server = `nohup perl -MIO::Socket::INET -e '
		my $server = IO::Socket::INET->new(LocalAddr => "127.0.0.1:8080", Listen => 5, ReuseAddr => 1) or die "listen: $!";
		while (my $client = $server->accept) { print $client "$ARGV[0]\n"; close $client }' "$1" >server.log 2>&1 &`
	for _, h := range f.Hosts {
		h.Run(t, "set -- "+h.Name+"\n"+server)
	}
	for _, h := range f.Hosts {
		var got string
		for deadline := time.Now().Add(10 * time.Second); got != h.Name+"\n" && time.Now().Before(deadline); {
			got, _, _ = runSSH(t, f, "-W", "127.0.0.1:8080", h.Name)
			time.Sleep(20 * time.Millisecond)
		}
		if got != h.Name+"\n" {
			t.Errorf("ssh -W 127.0.0.1:8080 %s: %q, want %q; server.log: %s", h.Name, got, h.Name, h.Run(t, "cat server.log"))
		}
	}
	// What listens on this machine's loopback is out of the hosts' reach.
	outside, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer outside.Close()
	if _, stderr, err := runSSH(t, f, "-W", outside.Addr().String(), "host1"); err == nil {
		t.Errorf("ssh -W %s host1 reached a port of this machine: %s", outside.Addr(), stderr)
	}

	h := f.Hosts[0]
	port := h.Port
	h.Stop(t)
	if _, stderr, err := runSSH(t, f, "host1", "true"); err == nil || !strings.Contains(stderr, "Connection refused") {
		t.Errorf("ssh to a stopped host: %v, stderr:\n%s\nwant connection refused", err, stderr)
	}
	h.Start(t)
	if h.Port != port {
		t.Errorf("port after Start: %d, want %d", h.Port, port)
	}
	mustSSH(t, f, "host1", "true")

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	session := f.SSHCommand(ctx, "host1", "echo started; exec sleep 30")
	stdout, err := session.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := session.Start(); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(stdout).ReadString('\n'); line != "started\n" {
		t.Fatalf("ssh host1: read %q, %v", line, err)
	}
	killed := time.Now()
	h.KillSessions(t)
	if err := session.Wait(); err == nil || time.Since(killed) > 10*time.Second {
		t.Errorf("ssh host1 sleep 30 after KillSessions: %v after %s; want it to fail at once", err, time.Since(killed))
	}
	mustSSH(t, f, "host1", "true")
}

func TestStartFleetOfTen(t *testing.T) {
	t.Parallel()
	requireSSHClient(t)
	for _, opts := range []Options{{}, {PrivateNetwork: true}} {
		t.Run(fmt.Sprintf("PrivateNetwork=%t", opts.PrivateNetwork), func(t *testing.T) {
			t.Parallel()
			startFleetOfTen(t, opts)
		})
	}
}

func startFleetOfTen(t *testing.T, opts Options) {
	start := time.Now()
	f := StartFleet(t, 10, opts)
	t.Logf("StartFleet(10) took %s", time.Since(start).Round(time.Millisecond))

	start = time.Now()
	var wg sync.WaitGroup
	for _, h := range f.Hosts {
		wg.Go(func() {
			out, stderr, err := runSSH(t, f, h.Name, "echo $(hostname) ok")
			if err != nil || !strings.HasSuffix(out, " ok\n") {
				t.Errorf("ssh %s: %q, %v\n%s", h.Name, out, err, stderr)
			}
		})
	}
	wg.Wait()
	t.Logf("one system ssh command on each of the 10 hosts, in parallel, took %s", time.Since(start).Round(time.Millisecond))
}

func TestPathRejectsPathsOutsideSrv(t *testing.T) {
	h := &Host{Name: "host1", Root: "/backing"}
	for p, want := range map[string]string{
		"/srv":                 "/backing",
		"/srv/app/current/x":   "/backing/app/current/x",
		"/srv/app/../shared/y": "/backing/shared/y",
	} {
		if got := h.Path(p); got != want {
			t.Errorf("Path(%q) = %q, want %q", p, got, want)
		}
	}
	for _, p := range []string{"/srvx", "/var/www", "srv/app", "/srv/../etc/passwd", ""} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Path(%q) did not panic", p)
				}
			}()
			h.Path(p)
		}()
	}
}

// recordingTB records what Require does instead of ending the test.
type recordingTB struct {
	testing.TB
	skipped, failed string
}

func (r *recordingTB) Helper()                        {}
func (r *recordingTB) Skipf(format string, a ...any)  { r.skipped = fmt.Sprintf(format, a...) }
func (r *recordingTB) Fatalf(format string, a ...any) { r.failed = fmt.Sprintf(format, a...) }

func TestRequireFailsInCI(t *testing.T) {
	for _, tc := range []struct {
		ci       string
		wantFail bool
	}{{"true", true}, {"1", true}, {"", false}, {"false", false}} {
		t.Setenv("CI", tc.ci)
		r := &recordingTB{TB: t}
		Require(r, "frobnicator: apt-get install frob", false)
		failed := r.failed != ""
		if failed != tc.wantFail || (r.failed+r.skipped) == "" || !strings.Contains(r.failed+r.skipped, "apt-get install frob") {
			t.Errorf("CI=%q: failed %q, skipped %q", tc.ci, r.failed, r.skipped)
		}
		r = &recordingTB{TB: t}
		Require(r, "present", true)
		if r.failed+r.skipped != "" {
			t.Errorf("CI=%q: Require with ok: failed %q, skipped %q", tc.ci, r.failed, r.skipped)
		}
	}
}

func TestSlipwayBuilds(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if sources, _ := filepath.Glob(filepath.Join(root, "cmd", "slipway", "*.go")); len(sources) == 0 {
		t.Skip("cmd/slipway has no Go files yet")
	}
	// Slipway's job is to build and cache; a tree that does not compile is
	// not its failure, and every end-to-end test reports that anyway.
	if goTool, err := exec.LookPath("go"); err == nil && !inCI() {
		if _, err := buildSlipway(goTool); err != nil {
			t.Skipf("./cmd/slipway does not build, so Slipway cannot be tested: %v", err)
		}
	}
	binary := Slipway(t)
	if again := Slipway(t); again != binary {
		t.Errorf("second Slipway call: %s, want %s", again, binary)
	}
	if !isExecutable(binary) {
		t.Errorf("%s is not an executable file", binary)
	}
}

// TestProcessDetails: a process of a host tells its command line, its
// working directory as the host sees it (under /srv, not Host.Root) and
// its user, the deploy user.
func TestProcessDetails(t *testing.T) {
	t.Parallel()
	f := StartFleet(t, 1, Options{})
	h := f.Hosts[0]
	h.Run(t, "mkdir -p /srv/app/releases/1 && cd /srv/app/releases/1 && (sleep 301 >/dev/null 2>&1 &)")
	var found []Process
	for _, p := range h.Processes(t) {
		if p.Name == "sleep" {
			found = append(found, p)
		}
	}
	if len(found) != 1 {
		t.Fatalf("processes of host1: %v; want one sleep", h.Processes(t))
	}
	p := found[0]
	all, err := ProcessesOf(f.Hosts)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(all[h.Name], p) || slices.Contains(all[Here], p) {
		t.Errorf("ProcessesOf: %v, want the sleep among host1's, not this machine's", all)
	}
	if p.Cmdline() != "sleep 301" || p.Cwd() != "/srv/app/releases/1" || p.UID() != f.UID() {
		t.Errorf("sleep: cmdline %q, cwd %q, uid %d; want %q, %q, %d (%s)", p.Cmdline(), p.Cwd(), p.UID(), "sleep 301", "/srv/app/releases/1", f.UID(), p.Describe())
	}
}
