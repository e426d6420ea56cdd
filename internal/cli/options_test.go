package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runIn runs slipway in-process in dir, with captured streams.
func runIn(t *testing.T, dir string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	t.Chdir(dir)
	var out, errOut bytes.Buffer
	code = Main(context.Background(), args, IO{In: strings.NewReader(""), Out: &out, Err: &errOut})
	return out.String(), errOut.String(), code
}

func mkdir(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestConfigIsFoundInAParentUpToTheRepositoryRoot(t *testing.T) {
	p := newLocalProject(t, "")
	mkdir(t, filepath.Join(p.dir, ".git"))
	sub := mkdir(t, filepath.Join(p.dir, "app", "src"))
	// source.path and the local deploy_to are relative to slipway.yml's
	// directory, not to where slipway runs.
	if _, stderr, code := runIn(t, sub, "deploy", "demo"); code != ExitOK {
		t.Fatalf("deploy from a subdirectory: exit %d\n%s", code, stderr)
	}
	if got, err := os.ReadFile(filepath.Join(p.dir, "deployed", "current", "index.html")); err != nil || string(got) != "v1" {
		t.Fatalf("deployed/current/index.html = %q, %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(sub, "deployed")); !os.IsNotExist(err) {
		t.Errorf("deployed into the working directory: %v", err)
	}
	// Errors name the file as found, relative to the working directory.
	p.write("slipway.yml", "app: demo\nstages: {}\nbogus: 1\n")
	_, stderr, code := runIn(t, sub, "releases", "demo")
	if want := filepath.Join("..", "..", "slipway.yml") + ":"; code != ExitUsage || !strings.Contains(stderr, want) {
		t.Errorf("config error: exit %d, want %d naming %s:\n%s", code, ExitUsage, want, stderr)
	}
}

func TestConfigSearchStopsAtTheRepositoryRoot(t *testing.T) {
	p := newLocalProject(t, "") // its slipway.yml is above the repository
	repo := mkdir(t, filepath.Join(p.dir, "repo"))
	// A worktree's or a submodule's .git is a file.
	if err := os.WriteFile(filepath.Join(repo, ".git"), []byte("gitdir: elsewhere\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sub := mkdir(t, filepath.Join(repo, "sub"))
	_, stderr, code := runIn(t, sub, "deploy", "demo")
	want := "no slipway.yml in " + sub + " or its parents up to the repository root " + repo + "; create one with: cd " + repo + " && slipway init; or pass -c FILE"
	if code != ExitUsage || !strings.Contains(stderr, want) {
		t.Errorf("exit %d, want %d and %q:\n%s", code, ExitUsage, want, stderr)
	}
	if _, err := os.Stat(filepath.Join(p.dir, "deployed")); !os.IsNotExist(err) {
		t.Errorf("deployed with the configuration above the repository: %v", err)
	}
	_, stderr, code = runIn(t, repo, "deploy", "demo")
	if want := "no slipway.yml in " + repo + " (the repository root); create one with: slipway init; or pass -c FILE"; code != ExitUsage || !strings.Contains(stderr, want) {
		t.Errorf("at the repository root: exit %d, want %d and %q:\n%s", code, ExitUsage, want, stderr)
	}
}

func TestConfigOutsideARepositoryIsOnlyLookedForHere(t *testing.T) {
	p := newLocalProject(t, "")
	sub := mkdir(t, filepath.Join(p.dir, "sub"))
	if _, root := configDirs(sub); root != "" {
		t.Skipf("the temporary directory %s is inside the repository %s", sub, root)
	}
	if _, _, code := runIn(t, p.dir, "releases", "demo"); code != ExitOK {
		t.Errorf("releases in the configuration's directory: exit %d", code)
	}
	_, stderr, code := runIn(t, sub, "releases", "demo")
	if want := "no slipway.yml in " + sub + " (not in a git repository, so its parents were not searched); create one with: slipway init; or pass -c FILE"; code != ExitUsage || !strings.Contains(stderr, want) {
		t.Errorf("exit %d, want %d and %q:\n%s", code, ExitUsage, want, stderr)
	}
}

func TestConfigFlagWinsOverTheSearch(t *testing.T) {
	p := newLocalProject(t, "")
	mkdir(t, filepath.Join(p.dir, ".git"))
	p.write("other.yml", "app: other\nsource:\n  path: site\nstages:\n  elsewhere:\n    hosts: [local]\n    deploy_to: ./other\n")
	stdout, _, code := runIn(t, p.dir, "-c", "other.yml", "__complete", "deploy", "")
	if code != ExitOK || !strings.Contains(stdout, "elsewhere") || strings.Contains(stdout, "demo") {
		t.Errorf("stages completed with -c other.yml (exit %d):\n%s", code, stdout)
	}
	// Without -c, the same completion finds slipway.yml.
	if stdout, _, _ := runIn(t, p.dir, "__complete", "deploy", ""); !strings.Contains(stdout, "demo") {
		t.Errorf("stages completed without -c:\n%s", stdout)
	}
	// A -c file that is missing is an error, even with slipway.yml here;
	// so is -c slipway.yml given in a subdirectory.
	_, stderr, code := runIn(t, p.dir, "-c", "missing.yml", "releases", "demo")
	if want := "-c missing.yml: no such file; create it with: slipway init -c missing.yml"; code != ExitUsage || !strings.Contains(stderr, want) {
		t.Errorf("missing -c file: exit %d, want %d and %q:\n%s", code, ExitUsage, want, stderr)
	}
	sub := mkdir(t, filepath.Join(p.dir, "sub"))
	if _, stderr, code := runIn(t, sub, "releases", "demo", "--config", "slipway.yml"); code != ExitUsage || !strings.Contains(stderr, "-c slipway.yml: no such file") {
		t.Errorf("--config slipway.yml in a subdirectory: exit %d, want %d:\n%s", code, ExitUsage, stderr)
	}
}
