package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-deploy/slipway/internal/testutil"
)

// gitRepo is a repository on this machine that the hosts can read: a bare
// "server" repository owned by the deploy user, and a working clone of it
// that is also the project directory slipway runs in.
type gitRepo struct {
	t    *testing.T
	bare string // path of the bare repository
	work string // the working clone (the project)
}

func git(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	// The bare repository belongs to the deploy user, as on a git server;
	// safe.directory lets the test (root) push to it all the same.
	global := filepath.Join(t.TempDir(), "gitconfig")
	if err := os.WriteFile(global, []byte("[safe]\n\tdirectory = *\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL="+global,
		"GIT_AUTHOR_NAME=dev", "GIT_AUTHOR_EMAIL=dev@example.com", "GIT_COMMITTER_NAME=dev", "GIT_COMMITTER_EMAIL=dev@example.com")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// newGitProject makes the project directory a git repository with the app
// committed, and a bare repository the hosts fetch from.
func newGitProject(t *testing.T, hosts int) (*project, *gitRepo) {
	t.Helper()
	p := newProject(t, hosts, testutil.Options{})
	shared, err := os.MkdirTemp("", "slipway-git-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shared) })
	if err := os.Chmod(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	r := &gitRepo{t: t, bare: filepath.Join(shared, "app.git"), work: p.dir}
	git(t, shared, "init", "--quiet", "--bare", "--initial-branch=main", r.bare)
	git(t, p.dir, "init", "--quiet", "--initial-branch=main")
	p.write(".gitignore", "/app/ignored.log\n")
	r.commit("initial")
	git(t, p.dir, "remote", "add", "origin", r.bare)
	r.push()
	return p, r
}

func (r *gitRepo) commit(msg string) string {
	r.t.Helper()
	git(r.t, r.work, "add", "-A")
	git(r.t, r.work, "commit", "--quiet", "--allow-empty", "-m", msg)
	return git(r.t, r.work, "rev-parse", "HEAD")
}

// push publishes to the bare repository and gives it to the deploy user,
// as a git server would own its repositories.
func (r *gitRepo) push() {
	r.t.Helper()
	git(r.t, r.work, "push", "--quiet", "--tags", "origin", "main")
	if out, err := exec.Command("chown", "-R", testutil.DeployUser, r.bare).CombinedOutput(); err != nil {
		r.t.Fatalf("chown: %v %s", err, out)
	}
}

func revisionOn(t *testing.T, h *testutil.Host) string {
	t.Helper()
	return strings.TrimSpace(readFile(t, h.Path(deployTo+"/current/REVISION")))
}

func TestBothFlowsDeployTheSameCommit(t *testing.T) {
	p, r := newGitProject(t, 3)
	// Build here: the app is exported from HEAD and built in the export.
	p.config("  build:\n    - mkdir -p public/build && echo compiled > public/build/app.js\n")
	p.write("slipway.yml", strings.Replace(readFile(t, filepath.Join(p.dir, "slipway.yml")), "  path: app\n", "  subdir: app\n", 1))
	head := r.commit("config")
	p.write("app/untracked.txt", "never ships")
	p.write("app/ignored.log", "never ships")

	res := p.mustRun("deploy", "production")
	if !strings.Contains(res.stderr, "build  | ") && !strings.Contains(res.stderr, "compiled") {
		t.Logf("build output:\n%s", res.stderr)
	}
	for _, h := range p.fleet.Hosts {
		if got := revisionOn(t, h); got != head {
			t.Errorf("%s: REVISION = %s, want HEAD %s", h.Name, got, head)
		}
		if got := readFile(t, h.Path(deployTo+"/current/public/build/app.js")); got != "compiled\n" {
			t.Errorf("%s: build output = %q", h.Name, got)
		}
		for _, never := range []string{"untracked.txt", "ignored.log", "tests"} {
			if _, err := os.Stat(h.Path(deployTo + "/current/" + never)); !os.IsNotExist(err) {
				t.Errorf("%s: %s shipped", h.Name, never)
			}
		}
	}
	res = p.mustRun("releases", "production")
	if !strings.Contains(res.stdout, head[:12]) {
		t.Errorf("releases does not show the commit:\n%s", res.stdout)
	}

	// Build on the server: the same commit from the hosts' mirrors.
	r.push()
	p.config("  strategy: git\n  repo: " + r.bare + "\n  branch: main\n  subdir: app\n  remote_build:\n    - echo built-on-$SLIPWAY_HOST > built.txt\n")
	p.write("slipway.yml", strings.Replace(readFile(t, filepath.Join(p.dir, "slipway.yml")), "  path: app\n", "", 1))
	p.mustRun("deploy", "production", "--force")
	for _, h := range p.fleet.Hosts {
		if got := revisionOn(t, h); got != head {
			t.Errorf("%s: git flow REVISION = %s, want %s", h.Name, got, head)
		}
		if got := readFile(t, h.Path(deployTo+"/current/built.txt")); got != "built-on-"+h.Name+"\n" {
			t.Errorf("%s: remote_build output = %q", h.Name, got)
		}
		if _, err := os.Stat(h.Path(deployTo + "/repo/HEAD")); err != nil {
			t.Errorf("%s: no mirror in repo/: %v", h.Name, err)
		}
	}
}

func TestFailingBuildChangesNothing(t *testing.T) {
	p, r := newGitProject(t, 3)
	p.config("  build:\n    - \"echo compiling assets; echo 'Error: missing module left-pad' >&2; exit 4\"\n")
	r.commit("config")
	res := p.expectCode(1, "deploy", "production")
	for _, want := range []string{"missing module left-pad", "exit", "no host was touched"} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("build failure output lacks %q:\n%s", want, res.stderr)
		}
	}
	for _, h := range p.fleet.Hosts {
		if _, err := os.Stat(h.Path(deployTo)); !os.IsNotExist(err) {
			t.Errorf("%s: the deploy directory was created despite the failed build", h.Name)
		}
	}
}

func TestGitMirrorReuseURLChangeTagsAndAlreadyLive(t *testing.T) {
	p, r := newGitProject(t, 3)
	gitConfig := func(repo string) {
		p.config("  strategy: git\n  repo: " + repo + "\n  subdir: app\n")
		p.write("slipway.yml", strings.Replace(readFile(t, filepath.Join(p.dir, "slipway.yml")), "  path: app\n", "", 1))
	}
	gitConfig(r.bare)
	first := r.commit("one")
	git(t, p.dir, "tag", "-a", "v1", "-m", "release 1")
	r.push()
	p.mustRun("deploy", "production")
	for _, h := range p.fleet.Hosts {
		h.Run(t, "touch "+deployTo+"/repo/marker-from-first-clone")
	}

	p.writeApp("v2")
	second := r.commit("two")
	r.push()
	p.mustRun("deploy", "production")
	for _, h := range p.fleet.Hosts {
		if got := revisionOn(t, h); got != second {
			t.Errorf("%s: REVISION = %s, want the new commit %s", h.Name, got, second)
		}
		if _, err := os.Stat(h.Path(deployTo + "/repo/marker-from-first-clone")); err != nil {
			t.Errorf("%s: the mirror was cloned again instead of fetched", h.Name)
		}
	}

	// Already live: nothing to do, unless forced.
	before := p.fleetLive()
	res := p.mustRun("deploy", "production")
	if !strings.Contains(res.stderr, "already live") || p.fleetLive() != before || len(releases(t, p.fleet.Hosts[0])) != 2 {
		t.Errorf("redeploying the live revision did something:\n%s", res.stderr)
	}
	p.mustRun("deploy", "production", "--force")
	if p.fleetLive() == before {
		t.Error("--force did not deploy")
	}

	// A revision pinned by tag.
	p.mustRun("deploy", "production", "--tag", "v1")
	for _, h := range p.fleet.Hosts {
		if got := revisionOn(t, h); got != first {
			t.Errorf("%s: --tag v1 deployed %s, want %s", h.Name, got, first)
		}
		if got := readFile(t, h.Path(deployTo+"/current/VERSION")); got != "v1\n" {
			t.Errorf("%s: VERSION = %q", h.Name, got)
		}
	}
	// An unknown revision fails before the switch, naming it.
	before = p.fleetLive()
	res = p.expectCode(1, "deploy", "production", "--tag", "v9.9")
	if !strings.Contains(res.stderr, `unknown revision "v9.9"`) || p.fleetLive() != before {
		t.Errorf("unknown tag:\n%s", res.stderr)
	}

	// A changed repository URL: the mirror is cloned again from the new one.
	moved := filepath.Join(filepath.Dir(r.bare), "moved.git")
	if out, err := exec.Command("cp", "-a", r.bare, moved).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	gitConfig(moved)
	p.mustRun("deploy", "production", "--force")
	for _, h := range p.fleet.Hosts {
		if _, err := os.Stat(h.Path(deployTo + "/repo/marker-from-first-clone")); !os.IsNotExist(err) {
			t.Errorf("%s: the mirror was not re-cloned after the URL changed", h.Name)
		}
		if url := strings.TrimSpace(h.Run(t, "git --git-dir="+deployTo+"/repo config remote.origin.url")); url != moved {
			t.Errorf("%s: mirror URL = %s, want %s", h.Name, url, moved)
		}
		if got := revisionOn(t, h); got != second {
			t.Errorf("%s: REVISION = %s, want the default branch %s", h.Name, got, second)
		}
	}
}

func TestUploadFlowTagsDirtyAndUnknownRevision(t *testing.T) {
	p, r := newGitProject(t, 3)
	p.config("")
	p.write("slipway.yml", strings.Replace(readFile(t, filepath.Join(p.dir, "slipway.yml")), "  path: app\n", "  subdir: app\n", 1))
	first := r.commit("config")
	git(t, p.dir, "tag", "v1")
	p.writeApp("v2")
	r.commit("v2")

	p.mustRun("deploy", "production", "--tag", "v1")
	for _, h := range p.fleet.Hosts {
		if got := revisionOn(t, h); got != first {
			t.Errorf("%s: --tag v1 REVISION = %s, want %s", h.Name, got, first)
		}
	}
	// A dirty working tree is refused unless --allow-dirty; then marked.
	p.write("app/VERSION", "uncommitted\n")
	res := p.expectCode(1, "deploy", "production")
	if !strings.Contains(res.stderr, "uncommitted changes") || !strings.Contains(res.stderr, "--allow-dirty") {
		t.Errorf("dirty tree:\n%s", res.stderr)
	}
	p.mustRun("deploy", "production", "--allow-dirty")
	for _, h := range p.fleet.Hosts {
		if got := readFile(t, h.Path(deployTo+"/current/VERSION")); got != "uncommitted\n" {
			t.Errorf("%s: --allow-dirty shipped VERSION %q", h.Name, got)
		}
	}
	res = p.mustRun("releases", "production")
	if !strings.Contains(res.stdout, "(dirty)") {
		t.Errorf("releases does not mark the dirty release:\n%s", res.stdout)
	}
	before := p.fleetLive()
	res = p.expectCode(1, "deploy", "production", "--revision", "no-such-branch")
	if !strings.Contains(res.stderr, "no-such-branch") || p.fleetLive() != before {
		t.Errorf("unknown revision:\n%s", res.stderr)
	}
	p.expectCode(2, "deploy", "production", "--revision", "--upload-pack=touch /tmp/pwned")
}

// TestBuildDirectoryIsRemovedOnFailureAndCtrlC: the clean export lives in a
// temporary directory that must not outlive the deploy, whatever ends it.
func TestBuildDirectoryIsRemovedOnFailureAndCtrlC(t *testing.T) {
	p, r := newGitProject(t, 1)
	tmp := t.TempDir()
	p = p.withEnv("TMPDIR=" + tmp)
	leftovers := func() []string {
		entries, _ := os.ReadDir(tmp)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		return names
	}

	p.config("  build:\n    - echo building in $SLIPWAY_BUILD_DIR; exit 1\n")
	p.write("slipway.yml", strings.Replace(readFile(t, filepath.Join(p.dir, "slipway.yml")), "  path: app\n", "  subdir: app\n", 1))
	r.commit("failing build")
	res := p.expectCode(1, "deploy", "production")
	if !strings.Contains(res.stderr, "building in "+tmp) {
		t.Fatalf("the build did not run in a temporary directory under TMPDIR:\n%s", res.stderr)
	}
	if l := leftovers(); len(l) != 0 {
		t.Errorf("a failed build left %v behind", l)
	}

	p.config("  build:\n    - touch " + tmp + "/started; sleep 30\n")
	p.write("slipway.yml", strings.Replace(readFile(t, filepath.Join(p.dir, "slipway.yml")), "  path: app\n", "  subdir: app\n", 1))
	r.commit("slow build")
	cmd := exec.Command(p.bin, "deploy", "production")
	cmd.Dir, cmd.Env = p.dir, append(p.fleet.Env(), p.env...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the build started", func() bool { _, err := os.Stat(filepath.Join(tmp, "started")); return err == nil })
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if code := cmd.ProcessState.ExitCode(); code != 130 {
		t.Errorf("exit code after Ctrl-C during the build = %d, want 130", code)
	}
	if l := leftovers(); len(l) != 1 || l[0] != "started" {
		t.Errorf("Ctrl-C during the build left %v behind", l)
	}
	if _, err := os.Stat(p.fleet.Hosts[0].Path(deployTo)); !os.IsNotExist(err) {
		t.Error("an interrupted build touched the host")
	}
}
