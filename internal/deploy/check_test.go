package deploy

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/host"
)

// checkConfig is a local stage "demo" deploying to deployTo with extra
// applied to its configuration.
func checkConfig(deployTo string, hosts []config.Host, extra func(*config.Config)) Options {
	cfg := &config.Config{
		App: "demo", KeepReleases: 5, Symlink: "relative",
		Layout: config.Layout{Releases: "releases", Shared: "shared", Current: "current", Repo: "repo"},
		Source: config.Source{Strategy: "upload", Delta: true, Verify: "changed", Compress: "auto"},
	}
	if extra != nil {
		extra(cfg)
	}
	stage := &config.Stage{Name: "demo", DeployTo: deployTo, Hosts: hosts}
	cfg.Stages = []*config.Stage{stage}
	return Options{Config: cfg, Stage: stage, Hosts: hosts, Parallel: 4,
		Dial: func(context.Context, config.Host) (host.Executor, error) { return host.NewLocal(), nil }}
}

var localHost = []config.Host{{Name: "local", Host: "local", Local: true}}

// pathWithout sets PATH to a directory holding every tool a deploy runs,
// linked from this machine's PATH, but none of missing: a host where
// they are not installed.
func pathWithout(t *testing.T, missing ...string) {
	t.Helper()
	bin := t.TempDir()
	for _, tool := range baseTools {
		if path, err := exec.LookPath(tool.name); err == nil {
			if err := os.Symlink(path, filepath.Join(bin, tool.name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, m := range missing {
		os.Remove(filepath.Join(bin, m))
	}
	t.Setenv("PATH", bin)
}

func problemTexts(ps []Problem) string {
	var lines []string
	for _, p := range ps {
		lines = append(lines, p.What+" | fix: "+p.Fix)
	}
	return strings.Join(lines, "\n")
}

// TestCheckListsWhatADeployOfThisConfigNeeds: before setup, on a host
// without setfacl and sudo, check lists every problem a deploy of a
// configuration with writable.mode acl, cleanup.sudo and a shared file
// would meet, each with its own fix, and measures what it reports.
func TestCheckListsWhatADeployOfThisConfigNeeds(t *testing.T) {
	pathWithout(t, "setfacl", "sudo")
	deployTo := filepath.Join(t.TempDir(), "app")
	opts := checkConfig(deployTo, localHost, func(c *config.Config) {
		c.Shared = config.Shared{Dirs: []string{"storage"}, Files: []string{".env"}}
		c.Writable = config.Writable{Dirs: []string{"storage/cache"}, Mode: "acl", User: "root"}
		c.Cleanup.Sudo = true
	})
	reports, err := Check(context.Background(), opts)
	if err == nil {
		t.Fatal("check passed a host without the deploy directory, setfacl, sudo and the shared file")
	}
	rep := reports[0]
	if !rep.Reached || !rep.Read || rep.FreeKB < 0 || rep.User == "" {
		t.Errorf("report %+v: want reached, read, free space and user measured", rep)
	}
	got := problemTexts(rep.Problems)
	for _, want := range []string{
		deployTo + " does not exist yet, and setup prepares the writable directories inside shared ones, which a deploy never changes | fix: slipway setup demo",
		"setfacl is not installed (writable.mode: acl runs it) | fix: apt-get install acl (Debian/Ubuntu), apk add acl (Alpine), dnf install acl (RHEL); or set writable.mode: group",
		"sudo is not installed (cleanup.sudo runs it) | fix: apt-get install sudo",
		"shared file " + deployTo + "/shared/.env does not exist (every release links it) | fix: slipway setup demo (which creates its directory), then copy it there: cp FILE " + deployTo + "/shared/.env",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("problems lack %q:\n%s", want, got)
		}
	}
	if len(rep.Problems) != 4 {
		t.Errorf("%d problems, want 4:\n%s", len(rep.Problems), got)
	}
	var problem *Problem
	if !errors.As(err, &problem) {
		t.Errorf("error %v does not carry the problems", err)
	}

	// Set up, with the shared file, and with setfacl and sudo not needed:
	// nothing left to report.
	opts.Config.Writable.Mode = "group"
	opts.Config.Cleanup.Sudo = false
	if err := Setup(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(deployTo, "shared", ".env"), []byte("KEY=1"), 0o600); err != nil {
		t.Fatal(err)
	}
	if reports, err := Check(context.Background(), opts); err != nil || len(reports[0].Problems) != 0 {
		t.Errorf("after setup: %v\n%s", err, problemTexts(reports[0].Problems))
	}
}

// TestCheckLetsTheFirstDeployCreateTheDeployDirectory: with nothing only
// setup prepares (no shared files, no writable directory inside a shared
// one), a deploy directory that does not exist yet is no problem: the
// first deploy creates it. check says so, and passes.
func TestCheckLetsTheFirstDeployCreateTheDeployDirectory(t *testing.T) {
	deployTo := filepath.Join(t.TempDir(), "app")
	opts := checkConfig(deployTo, localHost, func(c *config.Config) {
		c.Shared = config.Shared{Dirs: []string{"storage"}}
		c.Writable = config.Writable{Dirs: []string{"bootstrap/cache"}, Mode: "group"}
	})
	reports, err := Check(context.Background(), opts)
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	if w := strings.Join(reports[0].Warnings, "\n"); !strings.Contains(w, deployTo+" does not exist yet; the first deploy creates it (slipway setup demo creates it now)") {
		t.Errorf("warnings: %q", w)
	}
}

// TestCheckGoesOnPastAnUnreachableHost: a host that cannot be reached is
// reported as such, with nothing measured, and the others are checked in
// full; the error is a ConnectError (exit 4).
func TestCheckGoesOnPastAnUnreachableHost(t *testing.T) {
	hosts := []config.Host{{Name: "web1", Host: "127.0.0.1", Port: 1}, {Name: "local", Host: "local", Local: true}}
	opts := checkConfig(t.TempDir(), hosts, nil)
	refused := errors.New("dial tcp 127.0.0.1:1: connect: connection refused")
	opts.Dial = func(_ context.Context, h config.Host) (host.Executor, error) {
		if h.Local {
			return host.NewLocal(), nil
		}
		return nil, refused
	}
	reports, err := Check(context.Background(), opts)
	var connectErr *ConnectError
	if !errors.As(err, &connectErr) || connectErr.Host != "web1" {
		t.Fatalf("error %v, want a ConnectError for web1", err)
	}
	down, up := reports[0], reports[1]
	if down.Reached || down.Read || !errors.Is(down.Err, refused) || down.FreeKB != -1 || down.User != "" || down.Lock != nil {
		t.Errorf("unreachable host's report %+v: want nothing measured and the reason", down)
	}
	if !up.Reached || !up.Read || up.FreeKB < 0 {
		t.Errorf("reachable host's report %+v: want it checked in full", up)
	}
}

// TestCheckFixesForTheLayout: a deploy directory its user may not create
// gets the exact commands, with the user the host named; a directory it
// may not write gets the chown.
func TestCheckFixesForTheLayout(t *testing.T) {
	r := newRun(context.Background(), checkConfig("/srv/app", localHost, nil))
	f := parseFacts([]byte("user deploy\nabsent-under /srv\nfree-kb 1048576\n"))
	got := problemTexts(r.accessProblems(f))
	want := "/srv/app does not exist, and deploy may not create it: /srv is not writable | fix: on the host: sudo mkdir -p /srv/app && sudo chown deploy /srv/app; then: slipway setup demo"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	f = parseFacts([]byte("user deploy\nnot-writable /srv/app/releases\nnot-dir /srv/app/shared\nfree-kb 1048576\n"))
	got = problemTexts(r.accessProblems(f))
	for _, want := range []string{
		"/srv/app/releases is not writable by deploy | fix: on the host: sudo chown deploy /srv/app/releases",
		"/srv/app/shared is not a directory | fix: move it aside: mv /srv/app/shared /srv/app/shared.old",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("problems lack %q:\n%s", want, got)
		}
	}
}

// cannedHost answers every query with probe (what checkScript would print
// there) and fails every change with stderr.
type cannedHost struct {
	host.Local
	probe, stderr string
}

func (c *cannedHost) Query(context.Context, host.Command) (host.Result, error) {
	return host.Result{Stdout: []byte(c.probe)}, nil
}

func (c *cannedHost) Exec(_ context.Context, cmd host.Command) (host.Result, error) {
	return host.Result{Stderr: []byte(c.stderr)}, &host.ExitError{Host: "web1", Script: cmd.Script, Code: 1, Stderr: []byte(c.stderr)}
}

// TestFailuresNameTheirCause: a script that fails writing the layout is
// explained by what the host shows, where its stderr points: the
// directory, the user and check's fix for "Permission denied"; the
// package for a missing tool; and nothing made up for anything else.
func TestFailuresNameTheirCause(t *testing.T) {
	r := newRun(context.Background(), checkConfig("/srv/app", localHost, func(c *config.Config) {
		c.Writable = config.Writable{Dirs: []string{"storage"}, Mode: "acl", User: "www-data"}
	}))
	const script = "umask 022 && mkdir -p -- '/srv/app/releases' && mkdir -- '/srv/app/releases/20260101000000' || exit"
	for _, tc := range []struct {
		name, probe, stderr string
		want, never         []string
	}{
		{name: "permission denied",
			probe:  "user deploy\nnot-writable /srv/app/releases\nfree-kb 1048576\n",
			stderr: "mkdir: cannot create directory '/srv/app/releases/20260101000000': Permission denied\n",
			want:   []string{"creating release failed (mkdir: cannot create directory '/srv/app/releases/20260101000000': Permission denied)", "/srv/app/releases is not writable by deploy", "fix: on the host: sudo chown deploy /srv/app/releases"},
			never:  []string{"umask", "setfacl"}},
		{name: "setfacl missing",
			probe:  "user deploy\nmissing-tool setfacl\nmissing-tool sudo\nfree-kb 1048576\n",
			stderr: "writable.mode acl needs setfacl on the host (apt-get install acl), or use writable.mode group\n",
			want:   []string{"setfacl is not installed", "apk add acl"},
			never:  []string{"sudo", "write access", "chown"}},
		{name: "web server user missing",
			probe:  "user deploy\nno-web-user\nfree-kb 1048576\n",
			stderr: "setfacl: Option -m: Invalid argument near character 3\n",
			want:   []string{"writable.user www-data does not exist on the host"}},
		{name: "disk full",
			probe:  "user deploy\nfree-kb 0\n",
			stderr: "tar: index.php: Cannot write: No space left on device\n",
			want:   []string{"no space left on the file system of /srv/app/releases", "slipway cleanup demo"}},
		{name: "disk full, then tar's summary",
			probe:  "user deploy\nfree-kb 0\n",
			stderr: "tar: index.php: Cannot write: No space left on device\ntar: Exiting with failure status due to previous errors\n",
			want:   []string{"creating release failed (tar: index.php: Cannot write: No space left on device)", "no space left on the file system"}},
		{name: "a cause the host does not show",
			probe:  "user deploy\nnot-writable /srv/app/shared\nfree-kb 1048576\n",
			stderr: "something else broke\n",
			want:   []string{"creating release (as deploy): command exited with status 1: something else broke"},
			never:  []string{"chown", "umask"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := &Target{Host: localHost[0], Exec: &cannedHost{probe: tc.probe, stderr: tc.stderr}}
			_, runErr := target.Exec.Exec(context.Background(), host.Command{Script: script})
			err := r.explainFailure(context.Background(), target, "creating release", runErr)
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("%q lacks %q", msg, w)
				}
			}
			for _, n := range tc.never {
				if strings.Contains(msg, n) {
					t.Errorf("%q says %q", msg, n)
				}
			}
			var exitErr *host.ExitError
			if !errors.As(err, &exitErr) {
				t.Errorf("%v does not wrap the command's failure", err)
			}
		})
	}
}

// TestSetupSaysSetfaclIsMissing: setup with writable.mode acl on a host
// without setfacl says so, with the package, and does not claim the deploy
// user lacks write access.
func TestSetupSaysSetfaclIsMissing(t *testing.T) {
	pathWithout(t, "setfacl")
	deployTo := filepath.Join(t.TempDir(), "app")
	opts := checkConfig(deployTo, localHost, func(c *config.Config) {
		c.Shared = config.Shared{Dirs: []string{"storage"}}
		c.Writable = config.Writable{Dirs: []string{"storage/cache"}, Mode: "acl", User: "root"}
	})
	err := Setup(context.Background(), opts)
	if err == nil {
		t.Fatal("setup with writable.mode acl succeeded without setfacl")
	}
	msg := err.Error()
	if !strings.Contains(msg, "setfacl is not installed") || !strings.Contains(msg, "apt-get install acl") {
		t.Errorf("setup's error does not name setfacl and its package: %s", msg)
	}
	if strings.Contains(msg, "write access") || strings.Contains(msg, "chown") || strings.Contains(msg, "umask") {
		t.Errorf("setup's error blames access, or shows the script: %s", msg)
	}
}
