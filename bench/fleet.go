package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/slipway-deploy/slipway/internal/testutil"
)

// Deploy directories on every host, one per tool, so the tools never meet.
const (
	slipwayDeployTo = "/srv/slipway-app"
	capDeployTo     = "/srv/cap-app"
)

// bench is one fleet, with a relay in front of every host and a client
// HOME whose ssh config reaches the hosts through the relays.
type bench struct {
	sc      *scope
	fleet   *testutil.Fleet
	relays  []*relay
	home    string // HOME of slipway and cap: .ssh/config, known_hosts, keys
	rsaKey  string // the PEM RSA key Capistrano's net-ssh signs with
	confDir string // slipway.yml files and the Capistrano project
	tmp     string // TMPDIR of the tools, so whatever they leave there goes with the fleet
	app     *appRepo
	rtt     time.Duration // the round-trip time the relays add (setRTT)

	slipwayBin string
	quiet      *quietWait
	extraEnv   []string // more environment of the tools (the artifact store's credentials)
	// storePid is the process (and process group) of the S3 server the
	// tools and hosts use, 0 when none: its CPU time is the store's, not
	// other programs'.
	storePid int
}

// newBench starts a fleet of hosts. fileSystem gives every host a file
// system of its own on a loop device ("xfs", "ext4": see
// testutil.HostOptions.FileSystem); "" puts every host's files in one
// directory tree of this machine's file system.
func newBench(hosts int, app *appRepo, slipwayBin string, quiet *quietWait, fileSystem string) *bench {
	sc := newScope(fmt.Sprintf("fleet of %d", hosts))
	start := time.Now()
	var opts testutil.Options
	if fileSystem != "" {
		opts.Hosts = make([]testutil.HostOptions, hosts)
		for i := range opts.Hosts {
			opts.Hosts[i].FileSystem = fileSystem
		}
	}
	b := &bench{sc: sc, fleet: testutil.StartFleet(sc, hosts, opts), app: app, slipwayBin: slipwayBin, quiet: quiet}
	on := "one shared file system"
	if fileSystem != "" {
		on = "each on its own " + fileSystem
	}
	logf("started %d sshd hosts (%s) in %s", hosts, on, time.Since(start).Round(time.Millisecond))
	for _, h := range b.fleet.Hosts {
		r, err := startRelay(h.Port)
		if err != nil {
			sc.Fatalf("relay for %s: %v", h.Name, err)
		}
		sc.Cleanup(r.stop)
		b.relays = append(b.relays, r)
	}
	b.home = sc.TempDir()
	b.confDir = sc.TempDir()
	b.tmp = sc.TempDir()
	b.writeClientHome()
	return b
}

func (b *bench) close() { b.sc.close() }

// setRTT makes the connections the tools open from now on cross a network
// with round-trip time rtt (0: loopback as it is).
func (b *bench) setRTT(rtt time.Duration) {
	b.rtt = rtt
	for _, r := range b.relays {
		r.setDelay(rtt)
	}
}

// writeClientHome writes HOME/.ssh: the fleet's ed25519 key, an RSA key in
// PEM format for Capistrano, and an ssh config and known_hosts that name
// every host at its relay's port with the host's real key, so both tools
// verify host keys as usual.
func (b *bench) writeClientHome() {
	ssh := filepath.Join(b.home, ".ssh")
	must(b.sc, os.MkdirAll(ssh, 0o700))
	for _, name := range []string{"id_ed25519", "id_ed25519.pub"} {
		data, err := os.ReadFile(filepath.Join(b.fleet.Home, ".ssh", name))
		must(b.sc, err)
		must(b.sc, os.WriteFile(filepath.Join(ssh, name), data, 0o600))
	}
	b.rsaKey = filepath.Join(ssh, "id_rsa_capistrano")
	out, err := exec.Command("ssh-keygen", "-q", "-t", "rsa", "-b", "3072", "-m", "PEM", "-N", "", "-C", "slipway-bench capistrano", "-f", b.rsaKey).CombinedOutput()
	if err != nil {
		b.sc.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	rsaPub, err := os.ReadFile(b.rsaKey + ".pub")
	must(b.sc, err)

	var config, knownHosts strings.Builder
	hostPort := regexp.MustCompile(`^\[127\.0\.0\.1\]:\d+ `)
	for i, h := range b.fleet.Hosts {
		port := b.relays[i].port()
		fmt.Fprintf(&config, "Host %s\n  HostName 127.0.0.1\n  Port %d\n  User %s\n  IdentityFile %s\n  UserKnownHostsFile %s\n\n",
			h.Name, port, b.fleet.User, filepath.Join(ssh, "id_ed25519"), filepath.Join(ssh, "known_hosts"))
		line := h.KnownHostsLine()
		if !hostPort.MatchString(line) {
			b.sc.Fatalf("%s: unexpected known_hosts line %q", h.Name, line)
		}
		knownHosts.WriteString(hostPort.ReplaceAllString(line, fmt.Sprintf("[127.0.0.1]:%d ", port)) + "\n")

		// The harness writes the authorized keys as the deploy user's
		// .ssh/authorized_keys in the host's home; Capistrano's key joins.
		authorized := filepath.Join(h.UserHome, ".ssh", "authorized_keys")
		f, err := os.OpenFile(authorized, os.O_WRONLY|os.O_APPEND, 0)
		must(b.sc, err)
		_, err = f.Write(rsaPub)
		must(b.sc, errors.Join(err, f.Close()))
	}
	must(b.sc, os.WriteFile(filepath.Join(ssh, "config"), []byte(config.String()), 0o600))
	must(b.sc, os.WriteFile(filepath.Join(ssh, "known_hosts"), []byte(knownHosts.String()), 0o600))
}

// env is the environment of the tools: HOME is the client home, no
// ssh-agent, so that only the keys and config above are used, and a
// TMPDIR of the benchmark's (a tool killed mid-run leaves its temporary
// files there, and they are removed with the fleet).
func (b *bench) env() []string {
	var env []string
	for _, kv := range os.Environ() {
		key, _, _ := strings.Cut(kv, "=")
		switch key {
		case "HOME", "SSH_AUTH_SOCK", "SSH_AGENT_PID", "TMPDIR":
			continue
		}
		env = append(env, kv)
	}
	return append(append(env, "HOME="+b.home, "TMPDIR="+b.tmp), b.extraEnv...)
}

// sample is one measured run of a tool.
type sample struct {
	wall     time.Duration
	maxRSS   int64         // bytes, from wait4's rusage of the tool's process
	rssBound bool          // maxRSS is the benchmark's own peak: the tool's is at most that
	traffic  counts        // through the relays, summed over the hosts
	sessions int           // "Starting session" lines in the sshd logs, summed over the hosts
	skew     time.Duration // slipway's fleet skew; -1 when not printed
	rtt      time.Duration // the round-trip time the relays added
	// slipway is what slipway's --json events said about the run (nil
	// for other tools): its own count of round trips, per host and step.
	slipway *slipwayRun

	toolCPU    time.Duration // user + system time of the tool and the children it waited for
	hostsCPU   time.Duration // of every process the hosts ran for it: sshd, shells, git, tar …
	machineCPU time.Duration // busy time of the whole machine (all cores) during the run
	relayCPU   time.Duration // of it: this benchmark's process: the relays, and the othersMeter
	// otherCPU is what other programs on the machine used meanwhile
	// (othersMeter). Large values mean a noisy machine.
	otherCPU time.Duration
	// storeCPU is what the S3 server used (bench.storePid), apart from
	// otherCPU.
	storeCPU time.Duration
	// kernelCPU is the rest of machineCPU: interrupts (the loopback TCP
	// traffic), the kernel's threads (writeback, journaling), and time of
	// processes that ended without a parent that outlived them.
	kernelCPU time.Duration
}

var currentChild struct {
	sync.Mutex
	cmd *exec.Cmd
}

// currentChildPid is the PID (and process group) of the tool being
// measured, 0 when none runs.
func currentChildPid() int {
	currentChild.Lock()
	defer currentChild.Unlock()
	if c := currentChild.cmd; c != nil && c.Process != nil {
		return c.Process.Pid
	}
	return 0
}

// killCurrentChild kills the process group of the tool being measured, if
// any (the tool and what it started: git, ssh).
func killCurrentChild() {
	currentChild.Lock()
	defer currentChild.Unlock()
	if c := currentChild.cmd; c != nil && c.Process != nil {
		_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
	}
}

// measure runs one command of a tool against the whole fleet and returns
// what it cost. label names it in logs ("slipway-deploy"). A failing
// command fails the benchmark, with its output.
func (b *bench) measure(label, dir, name string, args ...string) sample {
	// Whatever the previous command (or a wipe) left for the kernel to
	// write back is written now, not during this one.
	syscall.Sync()
	b.waitQuiet()
	beforeTraffic := b.traffic()
	beforeSessions := b.sessions()
	beforeCPU := machineCPU()
	beforeHosts, beforeSelf, beforeStore := b.hostsCPU(), selfCPU(), processCPU(b.storePid)
	others := b.startOthersMeter()

	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = b.env()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// The child starts as a copy of this process (clone, then exec), and
	// Linux counts in its peak RSS this process's peak at that moment:
	// start it with that peak as low as it goes (what the delayed relays
	// held during the last command is freed, and the peak reset to it).
	lowerPeakRSS()
	currentChild.Lock()
	start := time.Now()
	err := cmd.Start()
	if err == nil {
		currentChild.cmd = cmd
	}
	currentChild.Unlock()
	atStart := selfPeakRSS() // at least what the child was counted as a copy
	if err == nil {
		err = cmd.Wait()
	}
	wall := time.Since(start)
	s := sample{wall: wall, skew: -1, rtt: b.rtt, machineCPU: machineCPU() - beforeCPU, relayCPU: selfCPU() - beforeSelf}
	s.otherCPU = others.finish()
	s.storeCPU = processCPU(b.storePid) - beforeStore
	currentChild.Lock()
	currentChild.cmd = nil
	currentChild.Unlock()
	b.keepLog(label, name, args, out.Bytes())
	if err != nil {
		b.sc.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, tail(out.String(), 60))
	}
	b.waitRelaysIdle()
	b.waitSessionsReaped()
	s.toolCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	s.hostsCPU = b.hostsCPU() - beforeHosts
	s.kernelCPU = max(0, s.machineCPU-s.toolCPU-s.hostsCPU-s.relayCPU-s.otherCPU-s.storeCPU)
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		s.maxRSS = ru.Maxrss * 1024 // Linux reports KiB
	}
	// A figure at or below our own peak when the child started may be
	// ours, not the tool's.
	if strings.HasPrefix(label, "floor-") {
		s.maxRSS = 0 // a shell and ssh: not a tool's memory
	} else if s.maxRSS <= atStart {
		// The tool used at most this much: an upper bound, marked so.
		s.rssBound = true
	}
	s.traffic = b.traffic().sub(beforeTraffic)
	afterSessions := b.sessions()
	for i := range afterSessions {
		s.sessions += afterSessions[i] - beforeSessions[i]
	}
	if strings.HasPrefix(label, "slipway-") {
		run, err := parseSlipwayJSON(out.Bytes())
		if err != nil {
			b.sc.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, tail(out.String(), 20))
		}
		s.slipway, s.skew = run, run.skew
	}
	return s
}

// machineCPU is the CPU time this machine has spent busy (every core, every
// process, interrupts), from /proc/stat.
func machineCPU() time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(data), "\n")
	fields := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal guest ...
	var busy int64
	for i, f := range fields {
		switch i {
		case 1, 2, 3, 6, 7, 8: // user nice system irq softirq steal
			n, _ := strconv.ParseInt(f, 10, 64)
			busy += n
		}
	}
	return ticks(busy)
}

// ticks converts clock ticks (USER_HZ, 100 on Linux) to a duration.
func ticks(n int64) time.Duration { return time.Duration(n) * time.Second / 100 }

// othersMeter measures the CPU time other programs use while a command
// runs, to tell a quiet machine from a busy one. It samples the user and
// system time of every process that is neither a kernel thread, nor this
// benchmark, nor the measured tool (its process group), nor a process of
// the fleet's hosts, five times a second, and
// adds up what each gained (all of it, for a process that started
// meanwhile). A process that lives less than a sample is missed.
type othersMeter struct {
	stop chan struct{}
	done chan time.Duration
}

func (b *bench) startOthersMeter() *othersMeter {
	m := &othersMeter{stop: make(chan struct{}), done: make(chan time.Duration, 1)}
	fleet := map[string]bool{}
	for _, h := range b.fleet.Hosts {
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", h.SSHDPid())); err == nil {
			fleet[ns] = true
		}
	}
	last := othersCPU(fleet, currentChildPid(), b.storePid)
	go func() {
		var sum int64
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			var stopped bool
			select {
			case <-m.stop:
				stopped = true
			case <-tick.C:
			}
			now := othersCPU(fleet, currentChildPid(), b.storePid)
			for pid, n := range now {
				sum += max(0, n-last[pid])
			}
			last = now
			if stopped {
				m.done <- ticks(sum)
				return
			}
		}
	}()
	return m
}

// quietWait bounds how long one benchmark run waits for other programs,
// so that a machine that stays busy (a fuzzer) costs minutes, not hours.
type quietWait struct {
	left time.Duration
}

// waitQuiet waits until other programs use less than a tenth of a core,
// for 30 seconds at most and within what is left of b.quiet, so that a
// command is not measured while, say, a test suite runs beside it. What
// they still use is in sample.otherCPU.
func (b *bench) waitQuiet() {
	const window, limit = 500 * time.Millisecond, 30 * time.Second
	start := time.Now()
	for {
		m := b.startOthersMeter()
		time.Sleep(window)
		used := m.finish()
		if used < window/10 {
			break
		}
		if waited := time.Since(start); waited > limit || waited > b.quiet.left {
			b.quiet.left = max(0, b.quiet.left-waited)
			logf("  the machine is busy (other programs use %.0f%% of a core); measuring anyway", 100*used.Seconds()/window.Seconds())
			return
		}
	}
	waited := time.Since(start)
	b.quiet.left = max(0, b.quiet.left-waited)
	if waited > 2*window {
		logf("  waited %s for other programs to quiet down", waited.Round(time.Second))
	}
}

func (m *othersMeter) finish() time.Duration {
	close(m.stop)
	return <-m.done
}

// othersCPU returns the user + system time, per PID, of the processes an
// othersMeter watches: not in the fleet's mount namespaces, not in the
// process groups tool and store (0: none).
func othersCPU(fleet map[string]bool, tool, store int) map[int]int64 {
	self := os.Getpid()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	cpu := map[int]int64{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self || pid == 2 {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		_, rest, _ := strings.Cut(string(stat), ") ")
		fields := strings.Fields(rest) // state ppid pgrp … utime(11) stime(12)
		if len(fields) < 13 || fields[1] == "2" {
			continue // a kernel thread
		}
		if pgrp, _ := strconv.Atoi(fields[2]); pgrp != 0 && (pgrp == tool || pgrp == store) {
			continue
		}
		if ns, err := os.Readlink("/proc/" + e.Name() + "/ns/mnt"); err != nil || fleet[ns] {
			continue
		}
		utime, _ := strconv.ParseInt(fields[11], 10, 64)
		stime, _ := strconv.ParseInt(fields[12], 10, 64)
		cpu[pid] = utime + stime
	}
	return cpu
}

// processCPU is the user + system time of process pid and its threads (0
// for pid 0, or one that is gone).
func processCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	fields := strings.Fields(rest) // state ppid … utime(11) stime(12)
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return ticks(utime + stime)
}

// selfCPU is the CPU time of this process: the relays, mostly.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// hostsCPU is the CPU time the hosts' finished sessions used: each sshd
// listener's children (one sshd per connection) reaped what they ran, and
// the listener reaped them, so their time is in its cutime and cstime.
func (b *bench) hostsCPU() time.Duration {
	var sum int64
	for _, h := range b.fleet.Hosts {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", h.SSHDPid()))
		if err != nil {
			continue
		}
		// pid (comm) state ppid … utime stime cutime cstime: fields 14–17.
		_, rest, _ := strings.Cut(string(stat), ") ")
		fields := strings.Fields(rest)
		for _, i := range []int{11, 12, 13, 14} {
			if i < len(fields) {
				n, _ := strconv.ParseInt(fields[i], 10, 64)
				sum += n
			}
		}
	}
	return ticks(sum)
}

// waitSessionsReaped waits until no host's listener has a child left (the
// per-connection sshd processes of the run have exited and been reaped),
// so that hostsCPU counts all of the run.
func (b *bench) waitSessionsReaped() {
	deadline := time.Now().Add(5 * time.Second)
	for _, h := range b.fleet.Hosts {
		pid := h.SSHDPid()
		for time.Now().Before(deadline) {
			children, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
			if err != nil || len(strings.TrimSpace(string(children))) == 0 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

var logSeq atomic.Int64

// keepLog saves a tool's output in BENCH_LOGS, when set, for a closer
// look at where a tool spends its time.
func (b *bench) keepLog(label, name string, args []string, out []byte) {
	dir := os.Getenv("BENCH_LOGS")
	if dir == "" {
		return
	}
	path := filepath.Join(dir, fmt.Sprintf("%03d-%dhosts-%dfiles-%s.log", logSeq.Add(1), len(b.fleet.Hosts), b.app.spec.Files, label))
	header := fmt.Sprintf("$ %s %s\n", name, strings.Join(args, " "))
	err := os.MkdirAll(dir, 0o755)
	if err == nil {
		err = os.WriteFile(path, append([]byte(header), out...), 0o644)
	}
	if err != nil {
		logf("BENCH_LOGS: %v", err)
	}
}

func (b *bench) traffic() counts {
	var sum counts
	for _, r := range b.relays {
		c := r.snapshot()
		sum = counts{sum.conns + c.conns, sum.up + c.up, sum.down + c.down, sum.exchanges + c.exchanges}
	}
	return sum
}

// waitRelaysIdle waits until the connections of the run just ended are
// closed, so their last bytes are counted.
func (b *bench) waitRelaysIdle() {
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		busy := 0
		for _, r := range b.relays {
			busy += r.active()
		}
		if busy == 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sessions counts, per host, the sessions sshd started (a command, a
// shell or a subsystem such as sftp: one channel each).
func (b *bench) sessions() []int {
	n := make([]int, len(b.fleet.Hosts))
	for i, h := range b.fleet.Hosts {
		n[i] = strings.Count(h.Log(), "Starting session: ")
	}
	return n
}

// wipe removes a deploy directory from every host (a cold start).
func (b *bench) wipe(deployTo string) {
	for _, h := range b.fleet.Hosts {
		must(b.sc, os.RemoveAll(h.Path(deployTo)))
	}
}

// liveBuild returns the build number in the live release's changedFile on
// h, read through the host's current link (relative or absolute).
func (b *bench) liveBuild(h *testutil.Host, deployTo string) int {
	target, err := os.Readlink(h.Path(deployTo + "/current"))
	must(b.sc, err)
	data, err := os.ReadFile(h.Path(deployTo + "/releases/" + filepath.Base(target) + "/" + changedFile))
	must(b.sc, err)
	m := regexp.MustCompile(`'build' => '(\d+)'`).FindSubmatch(data)
	if m == nil {
		b.sc.Fatalf("%s: no build number in %s", h.Name, changedFile)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// expectLive fails the benchmark unless every host serves build.
func (b *bench) expectLive(tool, deployTo string, build int) {
	for _, h := range b.fleet.Hosts {
		if got := b.liveBuild(h, deployTo); got != build {
			b.sc.Fatalf("%s: %s: %s is live on build %d, want %d", tool, h.Name, deployTo, got, build)
		}
	}
}

func must(s *scope, err error) {
	if err != nil {
		s.Fatalf("%v", err)
	}
}

func tail(s string, lines int) string {
	all := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// lowerPeakRSS returns the memory this process no longer uses to the
// system and resets its peak resident set size to what it holds now
// (clear_refs, Linux 4.0 and later; where that fails the peak stays).
func lowerPeakRSS() {
	debug.FreeOSMemory()
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// selfPeakRSS is this process's own peak resident set size (VmHWM).
func selfPeakRSS() int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}
