package e2e

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipway-deploy/slipway/internal/testutil"
)

func TestStaleLocksAreTakenOver(t *testing.T) {
	p := newProject(t, 3, testutil.Options{})
	p.config("")
	p.mustRun("deploy", "production")
	machine, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	// A lock left by a process of this machine that is gone.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	writeLock := func(h *testutil.Host, owner string) {
		h.Run(t, "mkdir -p "+deployTo+"/.slipway/lock && echo '"+owner+"' > "+deployTo+"/.slipway/lock/owner.json")
	}
	writeLock(p.fleet.Hosts[0], `{"user":"ci","machine":"`+machine+`","pid":`+strconv.Itoa(dead.Process.Pid)+`,"command":"deploy production"}`)
	// A lock from another machine that lapsed without being refreshed.
	writeLock(p.fleet.Hosts[1], `{"user":"alice","machine":"laptop","pid":7,"command":"deploy production","expires":"`+time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)+`"}`)
	p.writeApp("v2")
	res := p.mustRun("deploy", "production")
	for _, want := range []string{"host1  warning: taking over the lock", "is no longer running", "host2  warning: taking over the lock", "expired at"} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("output lacks %q:\n%s", want, res.stderr)
		}
	}
	// A fresh lock from another machine is respected.
	writeLock(p.fleet.Hosts[2], `{"user":"bob","machine":"ci-9","pid":7,"command":"deploy production","expires":"`+time.Now().Add(time.Hour).UTC().Format(time.RFC3339)+`"}`)
	p.writeApp("v3")
	res = p.expectCode(3, "deploy", "production")
	if !strings.Contains(res.stderr, "bob@ci-9") {
		t.Errorf("a live foreign lock was not respected:\n%s", res.stderr)
	}
}

// TestConcurrentDeploysExactlyOneRuns starts 20 deploys of one stage at
// once: one runs, every other is refused naming the holder, and the fleet
// ends on one release.
func TestConcurrentDeploysExactlyOneRuns(t *testing.T) {
	p := newProject(t, 3, testutil.Options{})
	p.config("hooks:\n  before_switch:\n    - sleep 3\n")
	const n = 20
	codes := make([]int, n)
	stderrs := make([]string, n)
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(p.bin, "deploy", "production")
			cmd.Dir, cmd.Env = p.dir, p.fleet.Env()
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			var exitErr *exec.ExitError
			if errors.As(err, &exitErr) {
				codes[i] = exitErr.ExitCode()
			} else if err != nil {
				codes[i] = -1
			}
			stderrs[i] = stderr.String()
		}()
	}
	wg.Wait()
	ran, refused := 0, 0
	for i, code := range codes {
		switch code {
		case 0:
			ran++
		case 3:
			refused++
			if !strings.Contains(stderrs[i], "locked by") || !strings.Contains(stderrs[i], "deploy production") {
				t.Errorf("refusal %d does not name the holder:\n%s", i, stderrs[i])
			}
		default:
			t.Errorf("deploy %d exited %d:\n%s", i, code, stderrs[i])
		}
	}
	if ran != 1 || refused != n-1 {
		t.Errorf("%d deploys ran and %d were refused; want 1 and %d", ran, refused, n-1)
	}
	id := p.fleetLive()
	for _, h := range p.fleet.Hosts {
		if rs := releases(t, h); len(rs) != 1 || rs[0] != id {
			t.Errorf("%s: releases = %v, want only %s", h.Name, rs, id)
		}
		if _, err := os.Stat(h.Path(deployTo + "/.slipway/lock")); !os.IsNotExist(err) {
			t.Errorf("%s: lock left behind", h.Name)
		}
	}
}
