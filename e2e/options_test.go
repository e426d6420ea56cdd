package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-deploy/slipway/internal/testutil"
)

func TestHooksSeeTheirEnvironmentAndOnceRunsOnce(t *testing.T) {
	p := newProject(t, 3, testutil.Options{})
	p.config(`hooks:
  before_switch:
    - run: echo "$SLIPWAY_HOST" >> /srv/migrated
      once: true
    - env | grep '^SLIPWAY_' | sort > /srv/hook-env; pwd >> /srv/hook-env
  after_switch:
    - readlink "$SLIPWAY_DEPLOY_PATH/current" > /srv/after-switch
`)
	p.mustRun("deploy", "production")
	first := p.fleetLive()
	p.writeApp("v2")
	p.mustRun("deploy", "production")
	second := p.fleetLive()
	for i, h := range p.fleet.Hosts {
		migrated, err := os.ReadFile(h.Path("/srv/migrated"))
		if i == 0 {
			if string(migrated) != "host1\nhost1\n" {
				t.Errorf("once hook on the primary host ran as %q, want once per deploy", migrated)
			}
		} else if err == nil {
			t.Errorf("%s: a once hook ran on a non-primary host", h.Name)
		}
		env := readFile(t, h.Path("/srv/hook-env"))
		want := strings.Join([]string{
			"SLIPWAY_DEPLOY_PATH=" + deployTo,
			"SLIPWAY_HOST=" + h.Name,
			"SLIPWAY_PREVIOUS_RELEASE=" + first,
			"SLIPWAY_RELEASE_ID=" + second,
			"SLIPWAY_RELEASE_PATH=" + deployTo + "/releases/" + second,
			"SLIPWAY_SHARED_PATH=" + deployTo + "/shared",
			"SLIPWAY_STAGE=production",
			deployTo + "/releases/" + second,
		}, "\n") + "\n"
		if env != want {
			t.Errorf("%s: hook environment:\n%s\nwant:\n%s", h.Name, env, want)
		}
		if got := readFile(t, h.Path("/srv/after-switch")); got != "releases/"+second+"\n" {
			t.Errorf("%s: after_switch hook ran before the switch: current was %q", h.Name, got)
		}
	}
}

func TestAbsoluteSymlinksAndAppSymlinks(t *testing.T) {
	p := newProject(t, 2, testutil.Options{})
	p.config("symlink: absolute\nshared:\n  dirs: [storage]\n")
	if err := os.Symlink("public/index.php", filepath.Join(p.dir, "app", "entry.php")); err != nil {
		t.Fatal(err)
	}
	p.mustRun("deploy", "production")
	id := p.fleetLive()
	for _, h := range p.fleet.Hosts {
		if target, _ := os.Readlink(h.Path(deployTo + "/current")); target != deployTo+"/releases/"+id {
			t.Errorf("%s: current -> %q, want an absolute link", h.Name, target)
		}
		if target, _ := os.Readlink(h.Path(deployTo + "/releases/" + id + "/storage")); target != deployTo+"/shared/storage" {
			t.Errorf("%s: storage -> %q, want an absolute link", h.Name, target)
		}
		if target, _ := os.Readlink(h.Path(deployTo + "/releases/" + id + "/entry.php")); target != "public/index.php" {
			t.Errorf("%s: the app's own symlink became %q", h.Name, target)
		}
	}
	// A symlink out of the app is refused before any host is touched.
	if err := os.Symlink("/etc/passwd", filepath.Join(p.dir, "app", "passwd")); err != nil {
		t.Fatal(err)
	}
	res := p.expectCode(1, "deploy", "production")
	if !strings.Contains(res.stderr, "passwd is a symlink to /etc/passwd, outside the shipped directory") {
		t.Errorf("escaping symlink:\n%s", res.stderr)
	}
	// So is a directory its owner could not write into (no release
	// holding it could be removed).
	if err := os.Remove(filepath.Join(p.dir, "app", "passwd")); err != nil {
		t.Fatal(err)
	}
	p.write("app/vendor/pkg/src.php", "<?php\n")
	locked := filepath.Join(p.dir, "app", "vendor", "pkg")
	if err := os.Chmod(locked, 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(locked, 0o755) })
	res = p.expectCode(1, "deploy", "production")
	if !strings.Contains(res.stderr, "vendor/pkg is a directory of mode 0555") || !strings.Contains(res.stderr, "chmod u+wx") {
		t.Errorf("read-only directory:\n%s", res.stderr)
	}
	for _, h := range p.fleet.Hosts {
		if rs := releases(t, h); len(rs) != 1 {
			t.Errorf("%s: releases = %v after a refused deploy", h.Name, rs)
		}
	}
}

func TestProxyJump(t *testing.T) {
	p := newProject(t, 2, testutil.Options{})
	// host2 is reached only through host1, as behind a bastion.
	cfg := readFile(t, p.fleet.SSHConfig())
	cfg = strings.Replace(cfg, "Host host2\n", "Host host2\n  ProxyJump host1\n", 1)
	if err := os.WriteFile(p.fleet.SSHConfig(), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p.config("")
	p.mustRun("deploy", "production")
	p.fleetLive()
	// host1 served two logins: its own deploy, and the jump to host2.
	if n := strings.Count(p.fleet.Hosts[0].Log(), "Accepted publickey for"); n != 2 {
		t.Errorf("host1 accepted %d logins, want 2 (its own and the jump):\n%s", n, p.fleet.Hosts[0].Log())
	}
}

func TestInterruptReleasesLockAndRemovesPartialRelease(t *testing.T) {
	p := newProject(t, 3, testutil.Options{})
	p.config("")
	p.mustRun("deploy", "production")
	before := p.fleetLive()
	p.config("hooks:\n  before_switch:\n    - touch /srv/hook-started; sleep 30\n")
	p.writeApp("v2")
	cmd := exec.Command(p.bin, "deploy", "production")
	cmd.Dir, cmd.Env = p.dir, p.fleet.Env()
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the before_switch hook running on every host", func() bool {
		for _, h := range p.fleet.Hosts {
			if _, err := os.Stat(h.Path("/srv/hook-started")); err != nil {
				return false
			}
		}
		return true
	})
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatal("slipway did not stop within 60s of Ctrl-C")
	}
	if code := cmd.ProcessState.ExitCode(); code != 130 {
		t.Errorf("exit code after Ctrl-C = %d, want 130\n%s", code, stderr.String())
	}
	for _, h := range p.fleet.Hosts {
		if got := live(t, h); got != before {
			t.Errorf("%s: live = %s, want %s", h.Name, got, before)
		}
		if rs := releases(t, h); len(rs) != 1 {
			t.Errorf("%s: releases after Ctrl-C = %v, want only %s", h.Name, rs, before)
		}
		if _, err := os.Stat(h.Path(deployTo + "/.slipway/lock")); !os.IsNotExist(err) {
			t.Errorf("%s: lock left after Ctrl-C", h.Name)
		}
	}
}
