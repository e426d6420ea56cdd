// Package e2e proves slipway against real OpenSSH servers: each test starts
// a fleet of sshd hosts on loopback (see internal/testutil), runs the
// slipway binary as a user would, and asserts what is on each host.
package e2e

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slipway-deploy/slipway/internal/layout"
	"github.com/slipway-deploy/slipway/internal/testutil"
)

const deployTo = "/srv/app"

// project is a checkout on the deploying machine: a slipway.yml and an app
// directory, plus the fleet it deploys to.
type project struct {
	t     *testing.T
	fleet *testutil.Fleet
	dir   string
	bin   string
	env   []string // added to the fleet's environment
}

// withEnv returns the project running slipway with extra environment.
func (p *project) withEnv(env ...string) *project {
	q := *p
	q.env = append(append([]string{}, p.env...), env...)
	return &q
}

func newProject(t *testing.T, hosts int, opts testutil.Options) *project {
	t.Helper()
	// Every host sees only its own processes, as real servers do. Sharing
	// this machine's, a host's cleanup and recycling would take another
	// host's (or another test's) process in releases/X, the same path
	// with the same release id, for one using its own releases/X, keep
	// that release, and fail the test by the timing of the hosts.
	opts.PIDNamespaces = true
	fleet := testutil.StartFleet(t, hosts, opts)
	p := &project{t: t, fleet: fleet, dir: t.TempDir(), bin: testutil.Slipway(t)}
	p.writeApp("v1")
	return p
}

// writeApp replaces the app with a small PHP-shaped site of the given version.
func (p *project) writeApp(version string) {
	p.t.Helper()
	app := filepath.Join(p.dir, "app")
	if err := os.RemoveAll(app); err != nil {
		p.t.Fatal(err)
	}
	p.write("app/public/index.php", "<?php echo 'version "+version+"';\n")
	p.write("app/VERSION", version+"\n")
	p.write("app/storage/logs/.gitkeep", "")
	p.write("app/tests/ExampleTest.php", "<?php // must not ship\n")
	p.write("app/bin/console", "#!/bin/sh\necho console\n")
	if err := os.Chmod(filepath.Join(app, "bin/console"), 0o755); err != nil {
		p.t.Fatal(err)
	}
}

func (p *project) write(rel, content string) {
	p.t.Helper()
	path := filepath.Join(p.dir, rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// config writes slipway.yml with a production stage over every host of the
// fleet; extra is YAML added at the top level.
func (p *project) config(extra string) {
	p.t.Helper()
	var hosts []string
	for _, h := range p.fleet.Hosts {
		hosts = append(hosts, "      - "+h.Name)
	}
	mode := uploadMode()
	if strings.Contains(extra, "strategy: git") {
		mode = ""
	}
	yml := "app: shop\ndeploy_to: " + deployTo + "\nsource:\n  path: app\n  exclude: [tests/]\n" + mode + extra +
		"stages:\n  production:\n    hosts:\n" + strings.Join(hosts, "\n") + "\n"
	p.write("slipway.yml", yml)
}

type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return "exit " + strconv.Itoa(r.code) + "\nstdout:\n" + r.stdout + "\nstderr:\n" + r.stderr
}

// run runs the slipway binary in the project directory with the fleet's HOME.
func (p *project) run(args ...string) result {
	p.t.Helper()
	cmd := exec.Command(p.bin, args...)
	cmd.Dir = p.dir
	cmd.Env = append(p.fleet.Env(), p.env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	res := result{stdout: stdout.String(), stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		res.code = exitErr.ExitCode()
	default:
		p.t.Fatalf("running slipway: %v", err)
	}
	return res
}

// mustRun runs slipway and fails the test unless it exits 0.
func (p *project) mustRun(args ...string) result {
	p.t.Helper()
	res := p.run(args...)
	if res.code != 0 {
		p.t.Fatalf("slipway %s failed:\n%s", strings.Join(args, " "), res)
	}
	return res
}

// expectCode runs slipway and fails the test unless it exits with code.
func (p *project) expectCode(code int, args ...string) result {
	p.t.Helper()
	res := p.run(args...)
	if res.code != code {
		p.t.Fatalf("slipway %s: want exit %d, got:\n%s", strings.Join(args, " "), code, res)
	}
	return res
}

// live returns the release current points at on h, "" if none.
func live(t *testing.T, h *testutil.Host) string {
	t.Helper()
	target, err := os.Readlink(h.Path(deployTo + "/current"))
	if errors.Is(err, os.ErrNotExist) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Base(target)
}

// releases lists release directories on h.
func releases(t *testing.T, h *testutil.Host) []string {
	t.Helper()
	entries, err := os.ReadDir(h.Path(deployTo + "/releases"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range entries {
		if layout.IsReleaseID(e.Name()) {
			ids = append(ids, e.Name())
		}
	}
	return ids
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// fleetLive asserts every host is live on the same release and returns it.
func (p *project) fleetLive() string {
	p.t.Helper()
	first := live(p.t, p.fleet.Hosts[0])
	for _, h := range p.fleet.Hosts[1:] {
		if got := live(p.t, h); got != first {
			p.t.Fatalf("%s is live on %q, %s on %q", h.Name, got, p.fleet.Hosts[0].Name, first)
		}
	}
	return first
}

// putShared creates a shared file on every host, as an operator would.
func (p *project) putShared(rel, content string) {
	p.t.Helper()
	for _, h := range p.fleet.Hosts {
		h.Run(p.t, "mkdir -p "+deployTo+"/shared && printf %s '"+content+"' > "+deployTo+"/shared/"+rel)
	}
}

// waitFor polls cond every millisecond until it holds, failing the test,
// naming what it waited for, once timeout has passed. The fault tests act
// the moment a state is reached (an upload in flight), hence the short
// interval.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(time.Millisecond)
	}
}

// uploadMode forces full, gzipped uploads when SLIPWAY_E2E_UPLOAD=full:
// make test runs the suite both ways, so the full path and the delta path
// (the default for every deploy after the first), and the compressed
// stream (which compress: auto never picks for these loopback hosts) and
// the plain one, pass every scenario.
func uploadMode() string {
	if os.Getenv("SLIPWAY_E2E_UPLOAD") == "full" {
		return "  delta: false\n  compress: gzip\n"
	}
	return ""
}
