package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMain gives the package's tests a cache directory of their own
// (XDG_CACHE_HOME, which os.UserCacheDir reads): the deploys they run keep
// builds in the artifact cache, and that must not be the user's.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "slipway-cli-cache-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("XDG_CACHE_HOME", dir)
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// promoteProject deploys a built directory to two stages on this machine.
// Its build writes a new stamp each time it runs and counts its runs in
// marker, so a tree built again is told from one shipped as it was.
type promoteProject struct {
	*localProject
	marker string
}

func newPromoteProject(t *testing.T) *promoteProject {
	t.Helper()
	// Each test starts with an empty cache.
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	p := &promoteProject{localProject: &localProject{t: t, dir: t.TempDir()}}
	p.marker = filepath.Join(p.dir, "builds")
	p.write("site/index.html", "v1")
	p.write("slipway.yml", fmt.Sprintf(`app: demo
source:
  path: site
  build: ["date +%%s%%N > stamp.txt && echo built >> %s"]
stages:
  staging:
    hosts: [local]
    deploy_to: ./staging
  production:
    hosts: [local]
    deploy_to: ./production
`, p.marker))
	return p
}

func (p *promoteProject) mustRun(args ...string) (stdout, stderr string) {
	p.t.Helper()
	stdout, stderr, code := p.run(args...)
	if code != ExitOK {
		p.t.Fatalf("slipway %s: exit %d\n%s%s", strings.Join(args, " "), code, stdout, stderr)
	}
	return stdout, stderr
}

func (p *promoteProject) builds() int {
	p.t.Helper()
	data, err := os.ReadFile(p.marker)
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		p.t.Fatal(err)
	}
	return strings.Count(string(data), "built\n")
}

func (p *promoteProject) stamp(stage string) string {
	p.t.Helper()
	data, err := os.ReadFile(filepath.Join(p.dir, stage, "current", "stamp.txt"))
	if err != nil {
		p.t.Fatal(err)
	}
	return string(data)
}

func (p *promoteProject) liveRow(stage string) map[string]any {
	p.t.Helper()
	stdout, _ := p.mustRun("releases", stage, "--json")
	var rows []map[string]any
	if err := json.Unmarshal([]byte(stdout), &rows); err != nil {
		p.t.Fatal(err)
	}
	for _, r := range rows {
		if r["state"] == "live" {
			return r
		}
	}
	p.t.Fatalf("nothing live on %s:\n%s", stage, stdout)
	return nil
}

func cacheDir() string { return filepath.Join(os.Getenv("XDG_CACHE_HOME"), "slipway", "artifacts") }

func TestPromoteShipsTheTreeOfAnotherStage(t *testing.T) {
	p := newPromoteProject(t)
	p.mustRun("deploy", "staging")
	if p.builds() != 1 {
		t.Fatalf("%d builds", p.builds())
	}
	_, stderr := p.mustRun("deploy", "production", "--from", "staging")
	staging := p.liveRow("staging")
	if p.builds() != 1 || p.stamp("production") != p.stamp("staging") {
		t.Fatalf("promotion built again (%d builds) or shipped another tree (%q, %q)", p.builds(), p.stamp("production"), p.stamp("staging"))
	}
	if !strings.Contains(stderr, "promoting staging@"+staging["id"].(string)+": tree ") || !strings.Contains(stderr, "from the artifact cache") {
		t.Errorf("stderr does not say where the tree came from:\n%s", stderr)
	}
	production := p.liveRow("production")
	if production["promoted_from"] != "staging@"+staging["id"].(string) || production["digest"] != staging["digest"] || production["revision"] != staging["revision"] {
		t.Errorf("production's live release %v, staging's %v", production, staging)
	}
	if stdout, _ := p.mustRun("releases", "production"); !strings.Contains(stdout, "from staging@"+staging["id"].(string)) {
		t.Errorf("releases does not show the promotion:\n%s", stdout)
	}
	stdout, _ := p.mustRun("artifacts", "ls")
	if !strings.Contains(stdout, strings.TrimPrefix(staging["digest"].(string), "sha256:")[:12]) || !strings.Contains(stdout, "staging,production") {
		t.Errorf("artifacts ls:\n%s", stdout)
	}

	// Without the cache, the tree comes from staging's host, checked.
	if err := os.RemoveAll(cacheDir()); err != nil {
		t.Fatal(err)
	}
	before := p.stamp("production")
	_, stderr = p.mustRun("deploy", "production", "--from", "staging", "--force")
	if p.builds() != 1 || p.stamp("production") != before || !strings.Contains(stderr, "fetching it from local") ||
		!strings.Contains(stderr, "their digest is the one staging@") {
		t.Fatalf("fetched promotion (%d builds):\n%s", p.builds(), stderr)
	}
	if got := p.liveRow("production")["digest"]; got != staging["digest"] {
		t.Errorf("fetched promotion: digest %v, want %v", got, staging["digest"])
	}

	// A release changed on its host is refused, and production stays.
	if err := os.RemoveAll(cacheDir()); err != nil {
		t.Fatal(err)
	}
	live := p.liveRow("production")["id"]
	p.write("staging/current/index.html", "hotfix")
	_, stderr, code := p.run("deploy", "production", "--from", "staging", "--force")
	if code != ExitFailed || !strings.Contains(stderr, "is not what its deploy shipped") || !strings.Contains(stderr, "index.html") {
		t.Fatalf("tampered: exit %d\n%s", code, stderr)
	}
	if got := p.liveRow("production")["id"]; got != live {
		t.Errorf("production switched to %v", got)
	}
	if entries, _ := os.ReadDir(cacheDir()); len(entries) != 0 {
		t.Errorf("a refused tree was kept: %v", entries)
	}
}

func TestPromoteRefusesWhatItCannotPromote(t *testing.T) {
	p := newPromoteProject(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"deploy", "production", "--from", "production"}, "that is the stage being deployed"},
		{[]string{"deploy", "production", "--from", "staging", "--revision", "HEAD"}, "do not apply"},
		{[]string{"deploy", "production", "--from", "nope"}, "nope"},
		{[]string{"artifacts", "prune", "--keep", "1", "--older-than", "1d"}, "give one of --keep and --older-than"},
		{[]string{"artifacts", "prune", "--older-than", "soon"}, "give a duration such as 72h or 30d"},
		{[]string{"diff", "staging"}, "two stage names"},
		{[]string{"diff", "staging", "staging"}, "two different stages"},
	} {
		_, stderr, code := p.run(c.args...)
		if code != ExitUsage || !strings.Contains(stderr, c.want) {
			t.Errorf("%s: exit %d, want %d and %q:\n%s", strings.Join(c.args, " "), code, ExitUsage, c.want, stderr)
		}
	}
	_, stderr, code := p.run("deploy", "production", "--from", "staging")
	if code != ExitFailed || !strings.Contains(stderr, "nothing is live on staging") {
		t.Errorf("from an empty stage: exit %d\n%s", code, stderr)
	}
	t.Setenv("SLIPWAY_ARTIFACTS_MAX_SIZE", "lots")
	_, stderr, code = p.run("deploy", "staging")
	if code != ExitUsage || !strings.Contains(stderr, `SLIPWAY_ARTIFACTS_MAX_SIZE="lots"`) {
		t.Errorf("bad cache size: exit %d\n%s", code, stderr)
	}
}

func TestArtifactsListAndPrune(t *testing.T) {
	p := newPromoteProject(t)
	for i := range 3 {
		p.write("site/index.html", fmt.Sprintf("v%d", i))
		p.mustRun("deploy", "staging")
	}
	stdout, _ := p.mustRun("artifacts", "ls")
	if !strings.Contains(stdout, "DIGEST") || !strings.Contains(stdout, "3 tree(s)") || !strings.Contains(stdout, "keeps at most 5.0 GB and 50 trees") {
		t.Fatalf("ls:\n%s", stdout)
	}
	stdout, _ = p.mustRun("artifacts", "ls", "--json")
	var records []struct {
		Digest   string
		LastUsed string `json:"last_used"`
		Stages   []struct{ Stage, Release string }
	}
	if err := json.Unmarshal([]byte(stdout), &records); err != nil || len(records) != 3 || records[0].Stages[0].Stage != "staging" {
		t.Fatalf("ls --json (%v):\n%s", err, stdout)
	}
	stdout, _ = p.mustRun("artifacts", "prune", "--keep", "1")
	if !strings.Contains(stdout, "removed 2 tree(s)") || !strings.Contains(stdout, "1 left") {
		t.Fatalf("prune --keep 1:\n%s", stdout)
	}
	if stdout, _ = p.mustRun("artifacts", "prune", "--older-than", "30d"); !strings.Contains(stdout, "removed 0 tree(s)") {
		t.Fatalf("prune --older-than 30d:\n%s", stdout)
	}
	t.Setenv("SLIPWAY_ARTIFACTS_MAX_ENTRIES", "0")
	if stdout, _ = p.mustRun("artifacts", "prune"); !strings.Contains(stdout, "removed 1 tree(s)") {
		t.Fatalf("prune with the cache off:\n%s", stdout)
	}
	if stdout, _ = p.mustRun("artifacts", "ls"); !strings.Contains(stdout, "0 tree(s)") || !strings.Contains(stdout, "off") {
		t.Fatalf("ls with the cache off:\n%s", stdout)
	}
	// Off, nothing is kept, and a deploy goes on as before.
	p.mustRun("deploy", "staging", "--force")
	if entries, _ := os.ReadDir(cacheDir()); len(entries) != 0 {
		t.Errorf("the cache is off, and kept %v", entries)
	}
}
