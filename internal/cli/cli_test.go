package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// localProject is a project deploying to this machine with `hosts: [local]`,
// the embedded default: the whole command path without SSH.
type localProject struct {
	t   *testing.T
	dir string
}

func newLocalProject(t *testing.T, extra string) *localProject {
	t.Helper()
	p := &localProject{t: t, dir: t.TempDir()}
	p.write("site/index.html", "v1")
	p.write("slipway.yml", "app: demo\nsource:\n  path: site\n"+extra+"stages:\n  demo:\n    hosts: [local]\n    deploy_to: ./deployed\n")
	return p
}

func (p *localProject) write(rel, content string) {
	p.t.Helper()
	path := filepath.Join(p.dir, rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// run runs slipway in-process with captured streams.
func (p *localProject) run(args ...string) (stdout, stderr string, code int) {
	p.t.Helper()
	var out, errOut bytes.Buffer
	code = Main(context.Background(), append([]string{"-c", filepath.Join(p.dir, "slipway.yml")}, args...), IO{In: strings.NewReader(""), Out: &out, Err: &errOut})
	return out.String(), errOut.String(), code
}

func (p *localProject) live() string {
	p.t.Helper()
	target, err := os.Readlink(filepath.Join(p.dir, "deployed", "current"))
	if err != nil {
		p.t.Fatal(err)
	}
	return filepath.Base(target)
}

func TestLocalDeployRollbackReleases(t *testing.T) {
	p := newLocalProject(t, "")
	if _, stderr, code := p.run("deploy", "demo"); code != ExitOK {
		t.Fatalf("deploy: exit %d\n%s", code, stderr)
	}
	first := p.live()
	p.write("site/index.html", "v2")
	_, stderr, code := p.run("deploy", "demo")
	if code != ExitOK {
		t.Fatalf("second deploy: exit %d\n%s", code, stderr)
	}
	for _, want := range []string{"local  upload", "ok", "deploy done"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("progress lacks %q:\n%s", want, stderr)
		}
	}
	second := p.live()
	if second == first {
		t.Fatal("second deploy reused the release id")
	}
	got, _ := os.ReadFile(filepath.Join(p.dir, "deployed", "current", "index.html"))
	if string(got) != "v2" {
		t.Fatalf("current/index.html = %q", got)
	}
	stdout, _, code := p.run("releases", "demo")
	if code != ExitOK || !strings.Contains(stdout, second+"  live") || !strings.Contains(stdout, first+"  previous") {
		t.Fatalf("releases (exit %d):\n%s", code, stdout)
	}
	if _, stderr, code := p.run("rollback", "demo"); code != ExitOK {
		t.Fatalf("rollback: exit %d\n%s", code, stderr)
	}
	if p.live() != first {
		t.Fatalf("rollback went to %s, want %s", p.live(), first)
	}
}

func TestExitCodes(t *testing.T) {
	p := newLocalProject(t, "")
	if _, _, code := p.run("deploy"); code != ExitUsage {
		t.Errorf("deploy without a stage: exit %d, want %d", code, ExitUsage)
	}
	if _, _, code := p.run("deploy", "demo", "--no-such-flag"); code != ExitUsage {
		t.Errorf("unknown flag: exit %d, want %d", code, ExitUsage)
	}
	if _, stderr, code := p.run("deploy", "nope"); code != ExitUsage || !strings.Contains(stderr, "demo") {
		t.Errorf("unknown stage: exit %d, want %d and the stage list:\n%s", code, ExitUsage, stderr)
	}
	// A held lock: exit 3, and the holder named.
	lock := filepath.Join(p.dir, "deployed", ".slipway", "lock")
	if err := os.MkdirAll(lock, 0o755); err != nil {
		t.Fatal(err)
	}
	p.write("deployed/.slipway/lock/owner.json", `{"user":"alice","machine":"laptop","pid":7,"command":"deploy demo"}`)
	if _, stderr, code := p.run("deploy", "demo"); code != ExitLocked || !strings.Contains(stderr, "alice@laptop") {
		t.Errorf("locked: exit %d, want %d naming alice@laptop:\n%s", code, ExitLocked, stderr)
	}
	// alice may still be deploying from her laptop: unlock refuses, naming
	// her, until --force.
	if _, stderr, code := p.run("unlock", "demo"); code != ExitLocked || !strings.Contains(stderr, "alice@laptop") || !strings.Contains(stderr, "--force") {
		t.Errorf("unlock of a live lock: exit %d, want %d naming alice@laptop and --force:\n%s", code, ExitLocked, stderr)
	}
	if _, stderr, code := p.run("unlock", "demo", "--force"); code != ExitOK || !strings.Contains(stderr, "alice@laptop") {
		t.Errorf("unlock --force: exit %d\n%s", code, stderr)
	}
	// A failing after_switch hook: live, but exit 5.
	p.write("slipway.yml", "app: demo\nsource:\n  path: site\nhooks:\n  after_switch: [exit 9]\nstages:\n  demo:\n    hosts: [local]\n    deploy_to: ./deployed\n")
	if _, stderr, code := p.run("deploy", "demo"); code != ExitAfterSwitch {
		t.Errorf("after_switch failure: exit %d, want %d\n%s", code, ExitAfterSwitch, stderr)
	}
	if _, err := os.Stat(lock); !os.IsNotExist(err) {
		t.Error("lock left behind after an after_switch failure")
	}
}

func TestCheckAndSetup(t *testing.T) {
	p := newLocalProject(t, "shared:\n  dirs: [uploads]\n  files: [.env]\n")
	if _, stderr, code := p.run("setup", "demo"); code != ExitOK || !strings.Contains(stderr, ".env does not exist yet") {
		t.Fatalf("setup: exit %d\n%s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(p.dir, "deployed", "shared", "uploads")); err != nil {
		t.Errorf("setup did not create the shared dir: %v", err)
	}
	stdout, _, code := p.run("check", "demo")
	if code != ExitFailed || !strings.Contains(stdout, ".env does not exist") {
		t.Errorf("check with a missing shared file: exit %d\n%s", code, stdout)
	}
	p.write("deployed/shared/.env", "KEY=1")
	if stdout, stderr, code := p.run("check", "demo"); code != ExitOK || !strings.Contains(stdout, "ok") {
		t.Errorf("check: exit %d\n%s\n%s", code, stdout, stderr)
	}
}

// TestHostileValuesNeverRunOnTheHost deploys with shell metacharacters in
// every value that reaches a host script: nothing may execute, and each
// value must arrive literally.
func TestHostileValuesNeverRunOnTheHost(t *testing.T) {
	p := &localProject{t: t, dir: t.TempDir()}
	canary := filepath.Join(p.dir, "pwned")
	evil := "$(touch " + canary + ")`touch " + canary + "`;touch " + canary
	p.write("site/index.html", "ok")
	p.write("site/"+"odd 'name' $(x).txt", "odd")
	p.write("slipway.yml", `app: demo
source:
  path: site
shared:
  dirs: ['`+strings.ReplaceAll(evil, "'", "''")+`/data']
hooks:
  before_switch:
    - printf '%s' "$SLIPWAY_STAGE" > stage-seen
stages:
  demo:
    hosts: [local]
    deploy_to: './dep $(touch `+canary+`) q"x'
`)
	_, stderr, code := p.run("deploy", "demo")
	if code != ExitOK {
		t.Fatalf("deploy: exit %d\n%s", code, stderr)
	}
	if _, err := os.Stat(canary); err == nil {
		t.Fatal("a value from the config ran as a command")
	}
	current := filepath.Join(p.dir, `dep $(touch `+canary+`) q"x`, "current")
	if b, err := os.ReadFile(filepath.Join(current, "odd 'name' $(x).txt")); err != nil || string(b) != "odd" {
		t.Errorf("odd file name did not ship intact: %q %v", b, err)
	}
	if b, _ := os.ReadFile(filepath.Join(current, "stage-seen")); string(b) != "demo" {
		t.Errorf("hook saw SLIPWAY_STAGE = %q", b)
	}
	if _, err := os.Stat(filepath.Join(current, evil, "data")); err != nil {
		t.Errorf("shared dir with metacharacters not linked: %v", err)
	}
}

// TestNotifyPostsTheOutcome deploys with two webhooks on a local HTTP
// server, one of them failing: the deploy still succeeds.
func TestNotifyPostsTheOutcome(t *testing.T) {
	var mu sync.Mutex
	bodies := map[string]string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies[r.URL.Path] = string(b)
		mu.Unlock()
		if r.URL.Path == "/down" {
			w.WriteHeader(http.StatusBadGateway)
		}
	}))
	defer srv.Close()
	p := newLocalProject(t, "notify:\n  - {url: "+srv.URL+"/json}\n  - {url: "+srv.URL+"/slack, format: slack}\n  - {url: "+srv.URL+"/down}\n")
	_, stderr, code := p.run("deploy", "demo")
	if code != ExitOK {
		t.Fatalf("a failing webhook failed the deploy: exit %d\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "warning: notify") || !strings.Contains(stderr, "status 502") {
		t.Errorf("the failing webhook is not reported:\n%s", stderr)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(bodies["/json"]), &doc); err != nil || doc["result"] != "ok" || doc["stage"] != "demo" || doc["release"] != p.live() || doc["revision"] == "" {
		t.Errorf("json webhook got %s", bodies["/json"])
	}
	if !strings.Contains(bodies["/slack"], `"text":`) || !strings.Contains(bodies["/slack"], "to *demo*: ok") {
		t.Errorf("slack webhook got %s", bodies["/slack"])
	}
}

func TestInitWritesAWorkingConfigAndNeverOverwrites(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte("<h1>hi</h1>"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "slipway.yml")
	run := func(args ...string) (string, int) {
		var out, errOut bytes.Buffer
		code := Main(context.Background(), append([]string{"-c", cfg}, args...), IO{In: strings.NewReader(""), Out: &out, Err: &errOut})
		return errOut.String(), code
	}
	if stderr, code := run("init"); code != ExitOK || !strings.Contains(stderr, "static project") {
		t.Fatalf("init: exit %d\n%s", code, stderr)
	}
	if stderr, code := run("deploy", "demo"); code != ExitOK {
		t.Fatalf("deploy demo with the starter config: exit %d\n%s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, ".slipway-demo", "current", "index.html")); err != nil {
		t.Errorf("the demo deploy did not ship the site: %v", err)
	}
	if err := os.WriteFile(cfg, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if stderr, code := run("init"); code != ExitUsage || !strings.Contains(stderr, "--force") {
		t.Errorf("init over an existing file: exit %d\n%s", code, stderr)
	}
	if b, _ := os.ReadFile(cfg); string(b) != "mine" {
		t.Error("init overwrote an existing file")
	}
	if _, code := run("init", "--force"); code != ExitOK {
		t.Error("init --force failed")
	}
}

func TestCompletionOffersStages(t *testing.T) {
	p := newLocalProject(t, "")
	stdout, _, code := p.run("__complete", "deploy", "")
	if code != ExitOK || !strings.Contains(stdout, "demo") {
		t.Errorf("completion of a stage: exit %d\n%s", code, stdout)
	}
	for _, shell := range []string{"bash", "zsh", "fish"} {
		if out, _, code := p.run("completion", shell); code != ExitOK || len(out) < 100 {
			t.Errorf("completion %s: exit %d, %d bytes", shell, code, len(out))
		}
	}
}

func TestVerboseShowsRemoteCommandsAndQuietOnlyTheEnd(t *testing.T) {
	p := newLocalProject(t, "")
	_, stderr, code := p.run("deploy", "demo", "-v")
	if code != ExitOK || !strings.Contains(stderr, "|   tar -x ") || !strings.Contains(stderr, "| $ rename ") {
		t.Errorf("-v does not show the commands (exit %d):\n%s", code, stderr)
	}
	p.write("site/index.html", "v2")
	_, stderr, code = p.run("deploy", "demo", "-q")
	if code != ExitOK || strings.Contains(stderr, " ok ") || !strings.Contains(stderr, "deploy done") {
		t.Errorf("-q output (exit %d):\n%s", code, stderr)
	}
}

// TestManualLock: slipway lock holds the stage with a reason that a
// refused deploy shows, status marks, and unlock removes without --force.
func TestManualLock(t *testing.T) {
	p := newLocalProject(t, "")
	if _, stderr, code := p.run("lock", "demo"); code != ExitUsage || !strings.Contains(stderr, "-m") {
		t.Errorf("lock without a reason: exit %d, want %d asking for -m:\n%s", code, ExitUsage, stderr)
	}
	if _, stderr, code := p.run("lock", "demo", "-m", "Black Friday freeze"); code != ExitOK {
		t.Fatalf("lock: exit %d\n%s", code, stderr)
	}
	if _, stderr, code := p.run("deploy", "demo"); code != ExitLocked || !strings.Contains(stderr, "Black Friday freeze") {
		t.Errorf("deploy under a manual lock: exit %d, want %d with the reason:\n%s", code, ExitLocked, stderr)
	}
	if stdout, _, _ := p.run("status", "demo"); !strings.Contains(stdout, "Black Friday freeze") {
		t.Errorf("status does not show the manual lock:\n%s", stdout)
	}
	if _, stderr, code := p.run("unlock", "demo"); code != ExitOK {
		t.Errorf("unlock of a manual lock: exit %d\n%s", code, stderr)
	}
	if _, stderr, code := p.run("deploy", "demo"); code != ExitOK {
		t.Errorf("deploy after unlock: exit %d\n%s", code, stderr)
	}
}
