package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-deploy/slipway/internal/testutil"
)

// interruptProject deploys a git project to this machine (`hosts:
// [local]`) with a build, so each deploy exports the source into a
// temporary directory of its own ($TMPDIR/slipway-export-*), and a
// before_switch hook that sleeps 30 s when HOOK_PID_FILE is set (after
// writing its pid there), ignoring SIGTERM when HOOK_IGNORE_TERM is set.
type interruptProject struct {
	t        *testing.T
	bin      string
	dir      string // the git checkout with slipway.yml
	deployTo string
	tmp      string // slipway's TMPDIR
	home     string
	commits  int
}

const sleepingHook = `if [ -n "$HOOK_PID_FILE" ]; then [ -z "$HOOK_IGNORE_TERM" ] || trap "" TERM; echo $$ > "$HOOK_PID_FILE"; sleep 30; fi`

func newInterruptProject(t *testing.T) *interruptProject {
	t.Helper()
	testutil.Require(t, "Linux: the test reads /proc to find what a run left running", runtime.GOOS == "linux")
	_, err := exec.LookPath("git")
	testutil.Require(t, "git on PATH: apt-get install git", err == nil)
	root := t.TempDir()
	p := &interruptProject{
		t: t, bin: testutil.Slipway(t),
		dir: filepath.Join(root, "project"), deployTo: filepath.Join(root, "deployed"),
		tmp: filepath.Join(root, "tmp"), home: filepath.Join(root, "home"),
	}
	for _, dir := range []string{p.dir, p.tmp, p.home} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	config := "app: demo\nsource:\n  subdir: site\n  build: [echo built > built.txt]\n" +
		"hooks:\n  before_switch:\n    - '" + sleepingHook + "'\n" +
		"stages:\n  demo:\n    hosts: [local]\n    deploy_to: " + p.deployTo + "\n"
	if err := os.WriteFile(filepath.Join(p.dir, "slipway.yml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	git(t, p.dir, "init", "--quiet", "--initial-branch=main")
	p.commit()
	p.deploy("the first deploy")
	return p
}

// commit commits a new version of the site, so the next deploy ships a
// new release.
func (p *interruptProject) commit() {
	p.t.Helper()
	p.commits++
	if err := os.MkdirAll(filepath.Join(p.dir, "site"), 0o755); err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(p.dir, "site", "index.html"), []byte(fmt.Sprintf("version %d\n", p.commits)), 0o644); err != nil {
		p.t.Fatal(err)
	}
	git(p.t, p.dir, "add", "-A")
	git(p.t, p.dir, "commit", "--quiet", "-m", fmt.Sprintf("version %d", p.commits))
}

// command is slipway deploy demo, or slipway args, run with env added.
func (p *interruptProject) command(env ...string) *exec.Cmd {
	return p.slipway([]string{"deploy", "demo"}, env...)
}

func (p *interruptProject) slipway(args []string, env ...string) *exec.Cmd {
	cmd := exec.Command(p.bin, args...)
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), "TMPDIR="+p.tmp, "HOME="+p.home, "XDG_CACHE_HOME="+filepath.Join(p.home, ".cache"), "NO_COLOR=1")
	cmd.Env = append(cmd.Env, env...)
	// Signals reach slipway only as the test sends them, as `kill PID`
	// (a CI cancel) does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// deploy runs a plain deploy and requires it to succeed.
func (p *interruptProject) deploy(what string) string {
	p.t.Helper()
	out, err := p.command().CombinedOutput()
	if err != nil {
		p.t.Fatalf("%s: %v\n%s", what, err, out)
	}
	return string(out)
}

// live is the release current points to.
func (p *interruptProject) live() string {
	p.t.Helper()
	target, err := os.Readlink(filepath.Join(p.deployTo, "current"))
	if err != nil {
		p.t.Fatal(err)
	}
	return filepath.Base(target)
}

// lockedOutput collects a process's output for reading while it runs.
type lockedOutput struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (o *lockedOutput) Write(b []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.Write(b)
}

func (o *lockedOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.buf.String()
}

// slipwayRun is a deploy running in the background.
type slipwayRun struct {
	t      *testing.T
	cmd    *exec.Cmd
	output *lockedOutput
	exited chan struct{}
	code   int
}

func (p *interruptProject) start(cmd *exec.Cmd, output *lockedOutput) *slipwayRun {
	p.t.Helper()
	r := &slipwayRun{t: p.t, cmd: cmd, output: output, exited: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	go func() {
		err := cmd.Wait()
		var exitErr *exec.ExitError
		switch {
		case errors.As(err, &exitErr):
			r.code = exitErr.ExitCode()
		case err != nil:
			r.code = -1
		}
		close(r.exited)
	}()
	return r
}

func (r *slipwayRun) signal(sig syscall.Signal) {
	r.t.Helper()
	if err := r.cmd.Process.Signal(sig); err != nil {
		r.t.Fatalf("send %v to slipway: %v", sig, err)
	}
}

// wait waits for slipway to exit, at most limit, and returns how long that
// took.
func (r *slipwayRun) wait(limit time.Duration) time.Duration {
	r.t.Helper()
	start := time.Now()
	select {
	case <-r.exited:
		return time.Since(start)
	case <-time.After(limit):
		r.t.Fatalf("slipway did not exit within %v of the interrupt\n%s", limit, r.outputText())
		return 0
	}
}

func (r *slipwayRun) outputText() string {
	if r.output == nil {
		return "(output went to a pipe the test closed)"
	}
	return r.output.String()
}

// hookGroup waits for the hook to write its pid and returns its process
// group, where every process of the hook runs.
func (r *slipwayRun) hookGroup(pidFile string) int {
	r.t.Helper()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		select {
		case <-r.exited:
			r.t.Fatalf("slipway exited (%d) before the hook started\n%s", r.code, r.outputText())
		default:
		}
		if content, err := os.ReadFile(pidFile); err == nil && strings.HasSuffix(string(content), "\n") {
			pid, _ := strconv.Atoi(strings.TrimSpace(string(content)))
			if stat, ok := procStat(pid); ok {
				return stat.pgrp
			}
			r.t.Fatalf("the hook (pid %d) is not running", pid)
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("the hook did not start\n%s", r.outputText())
		}
	}
}

type procInfo struct {
	comm  string
	state string
	pgrp  int
}

func procStat(pid int) (procInfo, bool) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procInfo{}, false
	}
	open, closing := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
	fields := strings.Fields(string(stat[closing+1:]))
	if open < 0 || closing < open || len(fields) < 3 {
		return procInfo{}, false
	}
	pgrp, _ := strconv.Atoi(fields[2])
	return procInfo{comm: string(stat[open+1 : closing]), state: fields[0], pgrp: pgrp}, true
}

// liveInGroup lists the processes of group pgrp that are alive (not
// zombies, which only wait to be reaped) as "name (pid N)".
func liveInGroup(t *testing.T, pgrp int) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var live []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if info, ok := procStat(pid); ok && info.pgrp == pgrp && info.state != "Z" && info.state != "X" {
			live = append(live, fmt.Sprintf("%s (pid %d)", info.comm, pid))
		}
	}
	return live
}

// requireCleanedUp checks what an interrupted deploy must not leave: a
// process of its hook, the lock, a temporary directory, a new release;
// then that a plain deploy goes through.
func (p *interruptProject) requireCleanedUp(r *slipwayRun, hookGroup int, live string, releases []string) {
	p.t.Helper()
	if hookGroup > 0 {
		if left := liveInGroup(p.t, hookGroup); len(left) > 0 {
			p.t.Errorf("the hook's processes outlived slipway: %v", left)
			_ = syscall.Kill(-hookGroup, syscall.SIGKILL)
		}
	}
	if _, err := os.Stat(filepath.Join(p.deployTo, ".slipway", "lock")); !errors.Is(err, os.ErrNotExist) {
		p.t.Errorf("the lock is left (%v)\n%s", err, r.outputText())
	}
	left, err := os.ReadDir(p.tmp)
	if err != nil {
		p.t.Fatal(err)
	}
	for _, e := range left {
		p.t.Errorf("temporary %s left in TMPDIR", e.Name())
		_ = os.RemoveAll(filepath.Join(p.tmp, e.Name()))
	}
	if got := p.live(); got != live {
		p.t.Errorf("current is %s, want the previous release %s", got, live)
	}
	if got := p.releases(); strings.Join(got, " ") != strings.Join(releases, " ") {
		p.t.Errorf("releases %v after the interrupted deploy, want %v as before", got, releases)
	}
	p.commit()
	p.deploy("the deploy after the interrupted one")
	if p.live() == live {
		p.t.Error("the deploy after the interrupted one did not switch")
	}
}

func (p *interruptProject) releases() []string {
	p.t.Helper()
	entries, err := os.ReadDir(filepath.Join(p.deployTo, "releases"))
	if err != nil {
		p.t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestInterruptedDeployCleansUp interrupts a deploy on the local host
// while its hook sleeps, the way each of them happens: Ctrl-C or kill
// -INT, a CI cancel's SIGTERM, a closed terminal's SIGHUP, and the reader of
// its output going away (`slipway deploy … | head -3`). Each time slipway
// exits at once with the interrupt's code, and leaves nothing behind.
func TestInterruptedDeployCleansUp(t *testing.T) {
	p := newInterruptProject(t)
	for _, tc := range []struct {
		sig  syscall.Signal
		name string
		code int
	}{
		{syscall.SIGINT, "SIGINT", 130},
		{syscall.SIGTERM, "SIGTERM", 143},
		{syscall.SIGHUP, "SIGHUP", 129},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.t = t
			p.commit()
			live, releases := p.live(), p.releases()
			pidFile := filepath.Join(t.TempDir(), "hook.pid")
			output := &lockedOutput{}
			cmd := p.command("HOOK_PID_FILE=" + pidFile)
			cmd.Stdout, cmd.Stderr = output, output
			r := p.start(cmd, output)
			group := r.hookGroup(pidFile)
			r.signal(tc.sig)
			took := r.wait(10 * time.Second)
			t.Logf("exited %d in %v", r.code, took)
			if took > 3*time.Second {
				t.Errorf("slipway took %v to exit after %s", took, tc.name)
			}
			if r.code != tc.code {
				t.Errorf("exit %d, want %d\n%s", r.code, tc.code, output)
			}
			text := output.String()
			for _, want := range []string{
				"interrupted (" + tc.name + "): stopping every command this run started, then cleaning up; interrupt again to exit at once\n",
				"deploy interrupted: no host was switched",
				"error: interrupted (" + tc.name + ")\n",
			} {
				if !strings.Contains(text, want) {
					t.Errorf("output lacks %q:\n%s", want, text)
				}
			}
			if strings.Contains(text, "context canceled") {
				t.Errorf("output says context canceled:\n%s", text)
			}
			p.requireCleanedUp(r, group, live, releases)
		})
	}
	// Under nohup, SIGHUP is ignored, and stays so: the deploy goes on.
	t.Run("SIGHUP under nohup", func(t *testing.T) {
		p.t = t
		p.commit()
		live, releases := p.live(), p.releases()
		pidFile := filepath.Join(t.TempDir(), "hook.pid")
		output := &lockedOutput{}
		cmd := p.command("HOOK_PID_FILE=" + pidFile)
		cmd.Args = append([]string{"sh", "-c", `trap "" HUP; exec "$0" "$@"`}, cmd.Args...)
		cmd.Path = "/bin/sh"
		cmd.Stdout, cmd.Stderr = output, output
		r := p.start(cmd, output)
		group := r.hookGroup(pidFile)
		r.signal(syscall.SIGHUP)
		select {
		case <-r.exited:
			t.Fatalf("slipway started with SIGHUP ignored exited (%d) on SIGHUP\n%s", r.code, output)
		case <-time.After(500 * time.Millisecond):
		}
		if left := liveInGroup(t, group); len(left) == 0 {
			t.Errorf("the hook stopped on a SIGHUP slipway was to ignore\n%s", output)
		}
		r.signal(syscall.SIGTERM)
		r.wait(10 * time.Second)
		if r.code != 143 {
			t.Errorf("exit %d after SIGTERM, want 143\n%s", r.code, output)
		}
		p.requireCleanedUp(r, group, live, releases)
	})
	t.Run("closed output", func(t *testing.T) {
		p.t = t
		p.commit()
		live, releases := p.live(), p.releases()
		reader, writer, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		cmd := p.command()
		cmd.Stdout, cmd.Stderr = writer, writer
		r := p.start(cmd, nil)
		writer.Close()
		// Read until the run holds the lock, then go away, as `head` does.
		lines := bufio.NewScanner(reader)
		var seen []string
		for lines.Scan() {
			seen = append(seen, lines.Text())
			if fields := strings.Fields(lines.Text()); len(fields) >= 3 && fields[1] == "lock" && fields[2] == "ok" {
				break
			}
		}
		reader.Close()
		took := r.wait(10 * time.Second)
		t.Logf("exited %d in %v after reading %q", r.code, took, seen)
		if r.code != 141 {
			t.Errorf("exit %d, want 141", r.code)
		}
		p.requireCleanedUp(r, 0, live, releases)
	})
}

// TestSecondInterruptExitsAtOnce: the first SIGTERM stops the hook, which
// ignores it, so stopping takes until SIGKILL; a second signal meanwhile
// makes slipway exit at once, saying what it may leave and how each is
// recovered, and the next deploy from this machine recovers.
func TestSecondInterruptExitsAtOnce(t *testing.T) {
	p := newInterruptProject(t)
	p.commit()
	live, before := p.live(), p.releases()
	pidFile := filepath.Join(t.TempDir(), "hook.pid")
	output := &lockedOutput{}
	cmd := p.command("HOOK_PID_FILE="+pidFile, "HOOK_IGNORE_TERM=1")
	cmd.Stdout, cmd.Stderr = output, output
	r := p.start(cmd, output)
	group := r.hookGroup(pidFile)
	t.Cleanup(func() { _ = syscall.Kill(-group, syscall.SIGKILL) })
	start := time.Now()
	r.signal(syscall.SIGTERM)
	for !strings.Contains(output.String(), "interrupt again to exit at once") {
		if time.Since(start) > 3*time.Second {
			t.Fatalf("no notice of the interrupt:\n%s", output)
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.signal(syscall.SIGINT)
	r.wait(2 * time.Second)
	took := time.Since(start)
	t.Logf("exited %d %v after the first signal", r.code, took)
	if took > 3*time.Second {
		t.Errorf("slipway took %v: it waited for the hook instead of exiting at once", took)
	}
	if r.code != 143 {
		t.Errorf("exit %d, want 143 (the first interrupt's)\n%s", r.code, output)
	}
	for _, want := range []string{"interrupted again (SIGINT): exiting at once", "slipway unlock STAGE", "the next deploy removes it"} {
		if !strings.Contains(output.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, output)
		}
	}
	// What it said it may leave: the hook that ignores SIGTERM, the lock,
	// the release being prepared, the export.
	if left := liveInGroup(t, group); len(left) == 0 {
		t.Error("the hook that ignores SIGTERM is gone: did slipway wait for it?")
	}
	_ = syscall.Kill(-group, syscall.SIGKILL)
	if _, err := os.Stat(filepath.Join(p.deployTo, ".slipway", "lock")); err != nil {
		t.Errorf("no lock left (%v): did slipway clean up instead of exiting at once?", err)
	}
	preparing := slices.DeleteFunc(p.releases(), func(r string) bool { return slices.Contains(before, r) })
	if len(preparing) != 1 {
		t.Errorf("releases %v after the exit, want one more than %v: the one being prepared", p.releases(), before)
	}
	if err := os.RemoveAll(p.tmp); err != nil || os.Mkdir(p.tmp, 0o755) != nil {
		t.Fatalf("emptying TMPDIR: %v", err)
	}
	out := p.deploy("the deploy after slipway exited holding the lock")
	if !strings.Contains(out, "taking over the lock") {
		t.Errorf("the next deploy did not say it takes over the lock:\n%s", out)
	}
	if p.live() == live {
		t.Error("the next deploy did not switch")
	}
	for _, release := range preparing {
		if slices.Contains(p.releases(), release) {
			t.Errorf("release %s, left being prepared, is still there after the next deploy", release)
		}
	}
}
