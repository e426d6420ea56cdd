package deploy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/layout"
	"github.com/slipway-deploy/slipway/internal/source"
	"github.com/slipway-deploy/slipway/internal/testutil"
)

// TestDownloadPackScript runs the download script with each tool against
// an HTTP server: a good pack lands in the release; a wrong one, a failed
// download, or one from a server that stops answering, leaves nothing and
// exits with the status that makes the host fall back to a push.
func TestDownloadPackScript(t *testing.T) {
	pack := []byte("the pack's bytes")
	sum := sha256.Sum256(pack)
	good := hex.EncodeToString(sum[:])
	defer func(s int) { downloadStallSeconds = s }(downloadStallSeconds)
	downloadStallSeconds = 1
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/pack":
			_, _ = w.Write(pack)
		case "/stall":
			// Accepted, then nothing: until the client gives up.
			<-r.Context().Done()
		default:
			http.NotFound(w, r)
		}
	}))
	defer server.Close()
	// A host with the download tool and rm, and nothing to check a
	// SHA-256 with.
	noSums := filepath.Join(t.TempDir(), "bin")
	if err := os.Mkdir(noSums, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tool := range []string{fetchCurl, fetchWget, "rm", "grep"} {
		if p, err := exec.LookPath(tool); err == nil {
			if err := os.Symlink(p, filepath.Join(noSums, tool)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, fetcher := range []string{fetchCurl, fetchWget} {
		if _, err := exec.LookPath(fetcher); err != nil {
			t.Logf("%s is not installed here: not tried", fetcher)
			continue
		}
		for _, tc := range []struct {
			name, path, sum string
			status          int
			pathEnv         string
		}{
			{"good", "/pack", good, 0, ""},
			{"another pack", "/pack", strings.Repeat("0", 64), packMismatchStatus, ""},
			{"not found", "/missing", good, fetchFailedStatus, ""},
			{"the store stalls", "/stall", good, fetchFailedStatus, ""},
			{"no tool to check it", "/pack", good, fetchFailedStatus, noSums},
		} {
			dir := t.TempDir()
			l := layout.Layout{DeployTo: dir, Releases: "releases", Shared: "shared", Current: "current", Repo: "repo"}
			const id = "20261122103015"
			if err := os.MkdirAll(l.ReleaseDir(id), 0o755); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			cmd := exec.CommandContext(ctx, "/bin/sh", "-c", downloadPackScript(l, id, fetcher, tc.sum))
			cmd.Stdin = strings.NewReader(server.URL + tc.path + "\n")
			if tc.pathEnv != "" {
				cmd.Env = append(os.Environ(), "PATH="+tc.pathEnv)
			}
			// On the deadline, the tool goes with the shell.
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
			out, err := cmd.CombinedOutput()
			if ctx.Err() != nil {
				t.Errorf("%s, %s: the download did not give up within a minute", fetcher, tc.name)
			}
			cancel()
			status := 0
			var exit *exec.ExitError
			if errors.As(err, &exit) {
				status = exit.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if status != tc.status {
				t.Errorf("%s, %s: exit %d, want %d: %s", fetcher, tc.name, status, tc.status, out)
			}
			got, err := os.ReadFile(filepath.Join(l.ReleaseDir(id), packName))
			switch {
			case tc.status == 0 && string(got) != string(pack):
				t.Errorf("%s, %s: the pack is %q (%v)", fetcher, tc.name, got, err)
			case tc.status != 0 && !os.IsNotExist(err):
				t.Errorf("%s, %s: the pack was left behind", fetcher, tc.name)
			}
			if strings.Contains(string(out), server.URL) {
				t.Errorf("%s, %s: the URL is in the output: %s", fetcher, tc.name, out)
			}
		}
	}
}

// startStore starts a real S3 server for t, with its credentials in the
// environment (and no session token from outside), or skips t with
// -short.
func startStore(t *testing.T) *testutil.S3 {
	t.Helper()
	if testing.Short() {
		t.Skip("-short: starts an S3 server")
	}
	s3 := testutil.StartS3(t)
	for _, kv := range s3.Env() {
		name, value, _ := strings.Cut(kv, "=")
		t.Setenv(name, value)
	}
	t.Setenv("AWS_SESSION_TOKEN", "")
	return s3
}

// TestDeployThroughStore deploys a directory to this machine through a
// real S3 server (SeaweedFS, built once per machine): each pack is
// uploaded once, a deploy of a tree the store has already uploads nothing,
// and the release is the one a push makes.
func TestDeployThroughStore(t *testing.T) {
	s3 := startStore(t)
	dir := t.TempDir()
	site := filepath.Join(dir, "site")
	writeFile(t, filepath.Join(site, "index.html"), "v1")
	writeFile(t, filepath.Join(site, "css/site.css"), "body{}")
	newConfig := func(deployTo string, artifacts *config.Artifacts) Options {
		cfg := &config.Config{
			App: "demo", KeepReleases: 5, Symlink: "relative",
			Layout:    config.Layout{Releases: "releases", Shared: "shared", Current: "current", Repo: "repo"},
			Source:    config.Source{Strategy: "upload", Path: site, Delta: true, Verify: "changed", Compress: "auto"},
			Artifacts: artifacts,
		}
		stage := &config.Stage{Name: "demo", DeployTo: deployTo, Hosts: []config.Host{{Name: "local", Host: "local", Local: true}}}
		cfg.Stages = []*config.Stage{stage}
		return Options{Config: cfg, Stage: stage, Hosts: stage.Hosts, Parallel: 1, Events: &eventLog{},
			Dial: func(context.Context, config.Host) (host.Executor, error) { return host.NewLocal(), nil }}
	}
	viaStore := newConfig(filepath.Join(dir, "store"), &config.Artifacts{Bucket: s3.Bucket, Prefix: "unit", Endpoint: s3.Endpoint, Region: "us-east-1"})
	pushed := newConfig(filepath.Join(dir, "pushed"), nil)
	deploy := func(opts Options, force bool) string {
		t.Helper()
		tree, err := source.Scan(site, nil)
		if err != nil {
			t.Fatal(err)
		}
		opts.Force = force
		res, err := Deploy(context.Background(), opts, Source{Tree: tree, Revision: tree.Digest})
		if err != nil {
			t.Fatal(err)
		}
		return res.ReleaseID
	}
	same := func(a, b string) {
		t.Helper()
		for _, rel := range []string{"index.html", "css/site.css", "REVISION"} {
			x, errX := os.ReadFile(filepath.Join(a, rel))
			y, errY := os.ReadFile(filepath.Join(b, rel))
			if errX != nil || errY != nil || string(x) != string(y) {
				t.Errorf("%s: %q (%v) against %q (%v)", rel, x, errX, y, errY)
			}
		}
	}

	id := deploy(viaStore, false)
	packs := s3.Objects(t)
	if len(packs) != 1 {
		t.Fatalf("packs after one deploy: %v", packs)
	}
	log := viaStore.Events.(*eventLog)
	if !log.has("full upload from the artifact store") || !log.has(": uploaded") {
		t.Errorf("events:\n%s", log)
	}
	same(filepath.Join(dir, "store/releases", id), filepath.Join(dir, "pushed/releases", deploy(pushed, false)))
	if _, err := os.Stat(filepath.Join(dir, "store/releases", id, packName)); !os.IsNotExist(err) {
		t.Errorf("the pack was left in the release: %v", err)
	}

	writeFile(t, filepath.Join(site, "index.html"), "v2")
	id = deploy(viaStore, false)
	if got := s3.Objects(t); len(got) != 2 {
		t.Fatalf("packs after a change: %v", got)
	}
	if !log.has("delta (") {
		t.Errorf("the second deploy was not a delta:\n%s", log)
	}
	same(filepath.Join(dir, "store/releases", id), filepath.Join(dir, "pushed/releases", deploy(pushed, false)))

	// The same tree to an empty directory, twice: the full pack of v2 is
	// uploaded the first time only.
	for i := range 2 {
		log.reset()
		if err := os.RemoveAll(filepath.Join(dir, "store")); err != nil {
			t.Fatal(err)
		}
		deploy(viaStore, true)
		if reused := log.has("already in the store"); reused != (i == 1) {
			t.Errorf("deploy %d of the same tree: reused %v:\n%s", i+1, reused, log)
		}
	}
	if got := s3.Objects(t); len(got) != 3 {
		t.Errorf("packs after the same tree twice: %v", got)
	}
}

// eventLog keeps the lines of a run's info and warning events.
type eventLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *eventLog) Event(e Event) {
	if e.Kind == Info || e.Kind == Warning {
		l.mu.Lock()
		l.lines = append(l.lines, e.Host+" "+e.Step+": "+e.Line)
		l.mu.Unlock()
	}
}

func (l *eventLog) reset() {
	l.mu.Lock()
	l.lines = nil
	l.mu.Unlock()
}

func (l *eventLog) has(s string) bool { return strings.Contains(l.String(), s) }

func (l *eventLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// countingExec counts the commands a run sends a host.
type countingExec struct {
	host.Executor
	n atomic.Int64
}

func (c *countingExec) Query(ctx context.Context, cmd host.Command) (host.Result, error) {
	c.n.Add(1)
	return c.Executor.Query(ctx, cmd)
}

func (c *countingExec) Exec(ctx context.Context, cmd host.Command) (host.Result, error) {
	c.n.Add(1)
	return c.Executor.Exec(ctx, cmd)
}

// TestStoreUploadFolds: through the store, the creation of the release,
// the pack's download and extraction, and the steps after it up to the
// switch (shared links, the sync) are one command on a host, as a push's
// are; a host whose download fails is pushed its upload in one more
// command, which carries those steps, so its release is linked, synced
// and switched all the same.
func TestStoreUploadFolds(t *testing.T) {
	s3 := startStore(t)
	dir := t.TempDir()
	site := filepath.Join(dir, "site")
	writeFile(t, filepath.Join(site, "index.html"), "v1")
	try := func(name string, artifacts *config.Artifacts) (*Result, *eventLog, int64, error) {
		t.Helper()
		cfg := &config.Config{
			App: "demo", KeepReleases: 5, Symlink: "relative",
			Layout:    config.Layout{Releases: "releases", Shared: "shared", Current: "current", Repo: "repo"},
			Source:    config.Source{Strategy: "upload", Path: site, Delta: true, Verify: "changed", Compress: "auto"},
			Shared:    config.Shared{Dirs: []string{"storage"}},
			Artifacts: artifacts,
		}
		stage := &config.Stage{Name: "demo", DeployTo: filepath.Join(dir, name), Hosts: []config.Host{{Name: "local", Host: "local", Local: true}}}
		cfg.Stages = []*config.Stage{stage}
		ex := &countingExec{Executor: host.NewLocal()}
		log := &eventLog{}
		opts := Options{Config: cfg, Stage: stage, Hosts: stage.Hosts, Parallel: 1, Events: log,
			Dial: func(context.Context, config.Host) (host.Executor, error) { return ex, nil }}
		tree, err := source.Scan(site, nil)
		if err != nil {
			t.Fatal(err)
		}
		res, err := Deploy(context.Background(), opts, Source{Tree: tree, Revision: tree.Digest})
		return res, log, ex.n.Load(), err
	}
	deploy := func(name string, artifacts *config.Artifacts) (string, *eventLog, int64) {
		t.Helper()
		res, log, n, err := try(name, artifacts)
		if err != nil {
			t.Fatalf("%s: %v\n%s", name, err, log)
		}
		live, err := os.Readlink(filepath.Join(dir, name, "current"))
		if err != nil || filepath.Base(live) != res.ReleaseID {
			t.Errorf("%s: current -> %q (%v), want release %s", name, live, err, res.ReleaseID)
		}
		if target, err := os.Readlink(filepath.Join(dir, name, "releases", res.ReleaseID, "storage")); err != nil || target != "../../shared/storage" {
			t.Errorf("%s: the release's storage -> %q (%v), want the shared directory", name, target, err)
		}
		return res.ReleaseID, log, n
	}
	store := func(prefix string) *config.Artifacts {
		return &config.Artifacts{Bucket: s3.Bucket, Prefix: prefix, Endpoint: s3.Endpoint, Region: "us-east-1"}
	}

	_, _, pushed := deploy("pushed", nil)
	_, log, stored := deploy("stored", store("fold"))
	if !log.has("full upload from the artifact store") {
		t.Fatalf("the host did not download its pack:\n%s", log)
	}
	if stored != pushed {
		t.Errorf("commands sent to the host: %d through the store, %d for a push; want as many", stored, pushed)
	}

	// A download that fails (curl cannot connect): the push carries the
	// steps after the upload.
	shimOnPath(t, "curl", "#!/bin/sh\necho 'curl: (7) Failed to connect' >&2\nexit 7\n")
	_, log, fellBack := deploy("fellback", store("fallback"))
	if !log.has("could not download its pack") {
		t.Fatalf("no fallback to a push:\n%s", log)
	}
	if fellBack != pushed+1 {
		t.Errorf("commands sent to the host that fell back to a push: %d, want %d (a push's and the failed download)", fellBack, pushed+1)
	}

	// A step folded after the download that fails with the status of a
	// failed download (ln exiting 75) fails the deploy: it is no reason
	// to push the upload.
	shimOnPath(t, "curl", "#!/bin/sh\nexec /usr/bin/curl \"$@\"\n")
	shimOnPath(t, "ln", "#!/bin/sh\necho 'ln: failed' >&2\nexit 75\n")
	_, log, _, err := try("member", store("member"))
	if err == nil {
		t.Fatal("the deploy succeeded with its shared link failing")
	}
	if log.has("could not download its pack") {
		t.Errorf("a folded step's exit 75 taken for a failed download:\n%s", log)
	}
}

// TestStoreWithoutCredentials: a deploy through a store this machine has
// no credentials for stops before it reaches any host (not after the
// build, with the fleet locked), naming the fix; plan warns of it.
func TestStoreWithoutCredentials(t *testing.T) {
	testutil.NoAWSCredentials(t)
	dir := t.TempDir()
	ex := &countingExec{Executor: host.NewLocal()}
	opts := localStage(t, dir, ex)
	opts.Config.Artifacts = &config.Artifacts{Bucket: "acme", Prefix: "shop", Endpoint: "http://127.0.0.1:1", Region: "us-east-1", Where: "slipway.yml:12"}
	writeFile(t, filepath.Join(opts.Config.Source.Path, "index.html"), "v1")
	tree, err := source.Scan(opts.Config.Source.Path, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Deploy(context.Background(), opts, Source{Tree: tree, Revision: tree.Digest})
	if err == nil || !strings.Contains(err.Error(), "no credentials for the artifact store") || !strings.Contains(err.Error(), "slipway.yml:12: artifacts.store") {
		t.Fatalf("deploy without credentials: %v", err)
	}
	if n := ex.n.Load(); n != 0 {
		t.Errorf("the deploy sent the host %d commands before it stopped, want none", n)
	}
	plan, err := PlanDeploy(context.Background(), opts, Source{Tree: tree, Revision: tree.Digest})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(plan.Warnings, func(w string) bool { return strings.Contains(w, "no credentials for the artifact store") }) {
		t.Errorf("plan does not warn of the missing credentials: %v", plan.Warnings)
	}
}
