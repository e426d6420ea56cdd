package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestHostOptions starts one host of each kind and checks, through the
// system ssh client, that each is what its options say: the login shell,
// a PATH of BusyBox applets, no SFTP, its own file system, its own PID
// namespace (with a private network too: the namespaces combine), and
// that a host with a file system of its own keeps it across Stop and
// Start.
func TestHostOptions(t *testing.T) {
	t.Parallel()
	requireSSHClient(t)
	f := StartFleet(t, 4, Options{Hosts: []HostOptions{
		{Shell: "tcsh", FileSystem: "xfs"},
		{Shell: "fish", BusyBox: true, FileSystem: "ext4"},
		{Shell: "dash", NoSFTP: true},
	}, PIDNamespaces: true, PrivateNetwork: true})
	shells := []string{"/usr/bin/tcsh", "/usr/bin/fish", "/bin/dash", "/bin/bash"}
	for i, h := range f.Hosts {
		// Each login shell runs this one line, which every shell parses
		// alike, and /bin/sh runs the rest.
		got := mustSSH(t, f, h.Name, `exec /bin/sh -c 'echo "$(id -un) $SHELL"; stat -f -c %T /srv; ls /proc | grep -c "^[0-9]"'`)
		lines := strings.Split(strings.TrimSpace(got), "\n")
		if len(lines) != 3 {
			t.Fatalf("%s: %q, want 3 lines", h.Name, got)
		}
		if want := h.User + " " + shells[i]; lines[0] != want {
			t.Errorf("%s: user and login shell %q, want %q", h.Name, lines[0], want)
		}
		wantFS := map[int]string{0: "xfs", 1: "ext2/ext3"}[i]
		if wantFS != "" && lines[1] != wantFS {
			t.Errorf("%s: /srv is on %q, want %q", h.Name, lines[1], wantFS)
		}
		// The host's /proc holds its init, the session's sshd processes
		// and this command's: a handful, not this machine's hundreds.
		if n := lines[2]; len(n) > 1 {
			t.Errorf("%s: the host's /proc lists %s processes; want only its own, fewer than 10", h.Name, n)
		}
	}

	// Each host's mount is its own: this machine sees the file system
	// through the host's init only.
	out, err := exec.Command("stat", "-f", "-c", "%T", f.Hosts[0].Root).Output()
	if err != nil || strings.TrimSpace(string(out)) != "xfs" {
		t.Errorf("stat -f %s (host1's Root): %q, %v; want xfs", f.Hosts[0].Root, out, err)
	}
	if mounts, err := os.ReadFile("/proc/self/mounts"); err != nil || strings.Contains(string(mounts), "xfs") {
		t.Errorf("this machine's mounts show an xfs (or cannot be read: %v); a host's file system must be mounted in its namespace only", err)
	}

	if got := mustSSH(t, f, "host2", `exec /bin/sh -c 'for c in tar sha256sum cp find xargs stat date; do readlink "$(command -v $c)"; done | sort -u'`); strings.TrimSpace(got) != mustLookPath(t, "busybox") {
		t.Errorf("host2 (BusyBox): tar, sha256sum, cp, find, xargs, stat, date resolve to %q, want busybox only", got)
	}

	if _, stderr, err := runSSH(t, f, "-s", "host3", "sftp"); err == nil || !strings.Contains(stderr, "subsystem request failed") {
		t.Errorf("host3 (no SFTP): ssh -s sftp: %v, %q; want the subsystem refused", err, stderr)
	}
	if out, err := exec.Command("sftp", "-F", f.SSHConfig(), "-b", "/dev/null", "host4").CombinedOutput(); err != nil {
		t.Errorf("host4 (SFTP): sftp: %v: %s", err, out)
	}

	// A job left running is in its host's PID namespace and no other's,
	// and once it ends the host's init reaps it: no zombie is left. The
	// job runs until it is killed, so a busy machine cannot end it before
	// it is looked for.
	f.Hosts[0].Run(t, "setsid sleep 600 </dev/null >/dev/null 2>&1 &")
	var job []string
	for deadline := time.Now().Add(10 * time.Second); len(job) == 0 && time.Now().Before(deadline); {
		if job = strings.Fields(f.Hosts[0].Run(t, "pgrep -x sleep || true")); len(job) == 0 {
			time.Sleep(50 * time.Millisecond)
		}
	}
	if len(job) == 0 {
		t.Fatalf("host1 does not see its own job")
	}
	if got := f.Hosts[1].Run(t, "pgrep -x sleep || true"); got != "" {
		t.Errorf("host2 sees host1's job: pgrep -x sleep = %q", got)
	}
	f.Hosts[0].Run(t, "kill "+strings.Join(job, " "))
	deadline := time.Now().Add(10 * time.Second)
	for f.Hosts[0].Run(t, "ps -eo stat=,comm= | grep sleep || true") != "" {
		if time.Now().After(deadline) {
			t.Fatalf("host1's job, ended, is still listed (a zombie init did not reap?): %s", f.Hosts[0].Run(t, "ps -eo pid,stat,comm"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	procs := f.Hosts[0].Processes(t)
	if slices.ContainsFunc(procs, func(p Process) bool { return p.PID == f.Hosts[0].InitPID() }) {
		t.Errorf("Processes lists the host's init: %v", procs)
	}

	h := f.Hosts[0]
	h.Run(t, "echo kept > /srv/marker")
	h.Stop(t)
	if got, err := os.ReadFile(h.Path("/srv/marker")); err != nil || string(got) != "kept\n" {
		t.Errorf("%s stopped: /srv/marker = %q, %v; want its file system still there", h.Name, got, err)
	}
	h.Start(t)
	if got := mustSSH(t, f, h.Name, "exec /bin/sh -c 'cat /srv/marker; stat -f -c %T /srv'"); got != "kept\nxfs\n" {
		t.Errorf("%s restarted: %q, want its marker on its xfs", h.Name, got)
	}
}

func mustLookPath(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestInstallScriptInstallsWhatHostOptionsNeed: every package a
// HostOptions needs is one make test's install script installs, so that a
// CI image made with it runs those hosts rather than failing on them.
func TestInstallScriptInstallsWhatHostOptionsNeed(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile(filepath.Join(root, "scripts", "install-test-deps.sh"))
	if err != nil {
		t.Fatal(err)
	}
	pkgs := []string{"busybox", "perl-base"}
	for name, login := range loginShells {
		if name != "bash" && name != "dash" { // essential: on every Debian
			pkgs = append(pkgs, login.pkg)
		}
	}
	for _, fs := range fileSystems {
		pkgs = append(pkgs, fs.pkg)
	}
	for _, pkg := range pkgs {
		if !strings.Contains(string(script), "need+=("+pkg+")") {
			t.Errorf("scripts/install-test-deps.sh does not install %s", pkg)
		}
	}
}
