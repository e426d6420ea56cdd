package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/slipway-deploy/slipway/internal/testutil"
)

// promotion is a git project deployed to two stages of one fleet: staging
// on host1 and host2, production on host3 and host4. Its build writes a
// random build id into the tree, so a tree built twice differs, and counts
// its runs in a file on this machine, so a test knows whether it ran.
type promotion struct {
	*project
	repo   *gitRepo
	cache  string // XDG_CACHE_HOME of slipway: the artifact cache is under it
	marker string
}

func newPromotion(t *testing.T) *promotion {
	t.Helper()
	p, r := newGitProject(t, 4)
	pr := &promotion{repo: r, cache: t.TempDir(), marker: filepath.Join(t.TempDir(), "builds")}
	pr.project = p.withEnv("XDG_CACHE_HOME=" + pr.cache)
	pr.write("slipway.yml", "app: shop\ndeploy_to: "+deployTo+"\nsource:\n  subdir: app\n  exclude: [tests/]\n"+
		"  build:\n    - \"head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\\\n' > public/build-id.txt && echo built >> "+pr.marker+"\"\n"+
		uploadMode()+"stages:\n  staging:\n    hosts: [host1, host2]\n  production:\n    hosts: [host3, host4]\n")
	r.commit("config")
	return pr
}

func (p *promotion) staging() []*testutil.Host    { return p.fleet.Hosts[:2] }
func (p *promotion) production() []*testutil.Host { return p.fleet.Hosts[2:] }

// builds is how many times the build ran.
func (p *promotion) builds() int {
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

// emptyCache removes every artifact.
func (p *promotion) emptyCache() {
	p.t.Helper()
	if err := os.RemoveAll(filepath.Join(p.cache, "slipway", "artifacts")); err != nil {
		p.t.Fatal(err)
	}
}

// liveOn asserts hosts are live on one release and returns it.
func (p *promotion) liveOn(hosts []*testutil.Host) string {
	p.t.Helper()
	id := live(p.t, hosts[0])
	for _, h := range hosts[1:] {
		if got := live(p.t, h); got != id {
			p.t.Fatalf("%s is live on %q, %s on %q", h.Name, got, hosts[0].Name, id)
		}
	}
	return id
}

// releaseTree lists every entry of the live release on h: type, mode and
// content (or link target), by path.
func releaseTree(t *testing.T, h *testutil.Host) map[string]string {
	t.Helper()
	return testutil.Tree(t, h.Path(deployTo+"/releases/"+live(t, h)))
}

// sameTrees asserts the live releases of hosts hold the same entries,
// byte for byte, as the first's.
func sameTrees(t *testing.T, want *testutil.Host, hosts ...*testutil.Host) {
	t.Helper()
	wantTree := releaseTree(t, want)
	if _, ok := wantTree["public/build-id.txt"]; !ok {
		t.Fatalf("%s: the build's output is not in the release", want.Name)
	}
	for _, h := range hosts {
		got := releaseTree(t, h)
		for rel, entry := range wantTree {
			if got[rel] != entry {
				t.Errorf("%s: %s is %q, on %s %q", h.Name, rel, got[rel], want.Name, entry)
			}
		}
		for rel := range got {
			if _, ok := wantTree[rel]; !ok {
				t.Errorf("%s: %s is not on %s", h.Name, rel, want.Name)
			}
		}
	}
}

// meta reads the record of h's live release.
func meta(t *testing.T, h *testutil.Host) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(readFile(t, h.Path(deployTo+"/.slipway/releases/"+live(t, h)+".json"))), &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func buildID(t *testing.T, h *testutil.Host) string {
	t.Helper()
	return readFile(t, h.Path(deployTo+"/current/public/build-id.txt"))
}

func TestPromoteShipsStagingsTreeByteForByte(t *testing.T) {
	p := newPromotion(t)
	p.mustRun("deploy", "staging")
	if p.builds() != 1 {
		t.Fatalf("staging: %d builds", p.builds())
	}
	stagingID := p.liveOn(p.staging())
	origin := "staging@" + stagingID
	stagingMeta := meta(t, p.staging()[0])
	if d, _ := stagingMeta["digest"].(string); !strings.HasPrefix(d, "sha256:") {
		t.Fatalf("staging recorded no digest: %v", stagingMeta)
	}

	// From the artifact cache: nothing is built, the bytes are staging's.
	res := p.mustRun("deploy", "production", "--from", "staging")
	if p.builds() != 1 {
		t.Fatalf("the promotion ran the build (%d builds)", p.builds())
	}
	if !strings.Contains(res.stderr, "promoting "+origin+": tree ") || !strings.Contains(res.stderr, "from the artifact cache") {
		t.Errorf("the promotion does not say where its tree came from:\n%s", res.stderr)
	}
	p.liveOn(p.production())
	sameTrees(t, p.staging()[0], append(p.production(), p.staging()[1])...)
	for _, h := range p.production() {
		m := meta(t, h)
		if m["digest"] != stagingMeta["digest"] || m["revision"] != stagingMeta["revision"] || m["promoted_from"] != origin {
			t.Errorf("%s records %v; staging %v", h.Name, m, stagingMeta)
		}
	}
	if res := p.mustRun("releases", "production"); !strings.Contains(res.stdout, "from "+origin) {
		t.Errorf("releases does not show where the release came from:\n%s", res.stdout)
	}

	// Without the cache: fetched from a staging host, checked, the same.
	p.emptyCache()
	before := p.liveOn(p.production())
	res = p.mustRun("deploy", "production", "--from", "staging", "--force")
	if p.builds() != 1 {
		t.Fatalf("the fetched promotion ran the build (%d builds)", p.builds())
	}
	if !strings.Contains(res.stderr, "not in the artifact cache; fetching it from host1") || !strings.Contains(res.stderr, "their digest is the one "+origin+" recorded") {
		t.Errorf("the fetched promotion does not say so:\n%s", res.stderr)
	}
	if after := p.liveOn(p.production()); after == before {
		t.Fatalf("production is still on %s", before)
	}
	sameTrees(t, p.staging()[0], p.production()...)
	for _, h := range p.production() {
		if m := meta(t, h); m["digest"] != stagingMeta["digest"] || m["promoted_from"] != origin {
			t.Errorf("%s records %v", h.Name, m)
		}
	}
	// The fetched tree is in the cache now.
	if res := p.mustRun("artifacts", "ls"); !strings.Contains(res.stdout, strings.TrimPrefix(stagingMeta["digest"].(string), "sha256:")[:12]) {
		t.Errorf("artifacts ls:\n%s", res.stdout)
	}

	// A file changed on a staging host after its deploy: refused, naming it.
	p.emptyCache()
	productionLive := p.liveOn(p.production())
	index := deployTo + "/releases/" + stagingID + "/public/index.php"
	p.staging()[0].Run(t, "echo '// hotfix' >> "+index)
	res = p.expectCode(1, "deploy", "production", "--from", "staging", "--force")
	if !strings.Contains(res.stderr, origin[len("staging@"):]+" on host1 is not what its deploy shipped") || !strings.Contains(res.stderr, "public/index.php") {
		t.Errorf("tampered file:\n%s", res.stderr)
	}
	if got := p.liveOn(p.production()); got != productionLive {
		t.Errorf("production switched to %s", got)
	}

	// The file and its manifest line changed alike: the manifest agrees,
	// the digest staging recorded does not.
	manifest := p.staging()[0].Path(deployTo + "/.slipway/manifests/" + stagingID)
	data := readFile(t, p.staging()[0].Path(index))
	sum := sha256.Sum256([]byte(data))
	var lines []string
	for _, line := range strings.Split(readFile(t, manifest), "\n") {
		if strings.HasSuffix(line, ` "public/index.php"`) {
			line = fmt.Sprintf(`f 644 %d %s "public/index.php"`, len(data), hex.EncodeToString(sum[:]))
		}
		lines = append(lines, line)
	}
	if err := os.WriteFile(manifest, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	res = p.expectCode(1, "deploy", "production", "--from", "staging", "--force")
	if !strings.Contains(res.stderr, "is not the one the release recorded: its digest is sha256:") || !strings.Contains(res.stderr, "not the "+stagingMeta["digest"].(string)+" recorded") {
		t.Errorf("tampered file and manifest:\n%s", res.stderr)
	}
	if got := p.liveOn(p.production()); got != productionLive {
		t.Errorf("production switched to %s", got)
	}
	if entries, _ := os.ReadDir(filepath.Join(p.cache, "slipway", "artifacts")); slices.ContainsFunc(entries, func(e fs.DirEntry) bool { return strings.HasPrefix(e.Name(), "sha256-") }) {
		t.Errorf("a refused tree was kept in the cache: %v", entries)
	}
}

func TestSameRevisionOnAnotherStageReusesTheBuild(t *testing.T) {
	p := newPromotion(t)
	p.mustRun("deploy", "staging")
	res := p.mustRun("deploy", "production")
	if p.builds() != 1 {
		t.Fatalf("production built the revision again (%d builds):\n%s", p.builds(), res.stderr)
	}
	if !strings.Contains(res.stderr, "was built before with this build configuration: shipping tree") {
		t.Errorf("the deploy does not say it reused the build:\n%s", res.stderr)
	}
	sameTrees(t, p.staging()[0], p.production()...)
	stagingMeta, productionMeta := meta(t, p.staging()[0]), meta(t, p.production()[0])
	if productionMeta["digest"] != stagingMeta["digest"] || productionMeta["promoted_from"] != nil {
		t.Errorf("production records %v, staging %v", productionMeta, stagingMeta)
	}
	res = p.mustRun("artifacts", "ls")
	if !strings.Contains(res.stdout, "staging,production") || !strings.Contains(res.stdout, "1 tree(s)") {
		t.Errorf("artifacts ls:\n%s", res.stdout)
	}

	// Another build configuration is another artifact.
	yml := readFile(t, filepath.Join(p.dir, "slipway.yml"))
	p.write("slipway.yml", strings.Replace(yml, "exclude: [tests/]", "exclude: [tests/, VERSION]", 1))
	p.repo.commit("exclude VERSION")
	p.mustRun("deploy", "staging")
	p.mustRun("deploy", "production")
	if p.builds() != 2 {
		t.Errorf("a new revision and configuration: %d builds, want 2", p.builds())
	}
	// --rebuild builds even so.
	before := buildID(t, p.production()[0])
	p.mustRun("deploy", "production", "--force", "--rebuild")
	if p.builds() != 3 || buildID(t, p.production()[0]) == before {
		t.Errorf("--rebuild: %d builds, build id %s (was %s)", p.builds(), buildID(t, p.production()[0]), before)
	}

	// Production is on staging's revision, but not on its tree (built
	// again): a promotion is not "already live", it ships staging's tree.
	res = p.mustRun("deploy", "production", "--from", "staging")
	if p.builds() != 3 || buildID(t, p.production()[0]) != buildID(t, p.staging()[0]) {
		t.Errorf("promotion onto the same revision built otherwise: %d builds, build id %s, staging's %s:\n%s", p.builds(), buildID(t, p.production()[0]), buildID(t, p.staging()[0]), res.stderr)
	}
	sameTrees(t, p.staging()[0], p.production()...)
}

func TestDiffBetweenTheLiveReleasesOfTwoStages(t *testing.T) {
	p := newPromotion(t)
	p.mustRun("deploy", "staging")
	p.mustRun("deploy", "production", "--from", "staging")
	if res := p.mustRun("diff", "production", "staging"); !strings.Contains(res.stdout, "ship the same files") {
		t.Fatalf("diff after a promotion:\n%s", res.stdout)
	}

	p.write("app/public/index.php", "<?php echo 'version 2';\n")
	p.write("app/public/new.js", "console.log(2)\n")
	if err := os.Remove(filepath.Join(p.dir, "app/bin/console")); err != nil {
		t.Fatal(err)
	}
	p.repo.commit("v2")
	p.mustRun("deploy", "staging")
	res := p.mustRun("diff", "production", "staging")
	// build-id.txt differs because every build writes a new one.
	var got []string
	for _, line := range strings.Split(res.stdout, "\n") {
		if len(line) > 2 && strings.Contains("+-~", line[:1]) && line[1] == ' ' {
			got = append(got, line)
		}
	}
	want := []string{"+ public/new.js", "- bin/", "- bin/console", "~ public/build-id.txt", "~ public/index.php"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("diff lists\n%s\nwant\n%s\n(all of it:\n%s)", strings.Join(got, "\n"), strings.Join(want, "\n"), res.stdout)
	}
	res = p.mustRun("diff", "production", "staging", "--json")
	var d struct {
		From, To                struct{ Stage, Release string }
		Added, Removed, Changed []struct{ Path, Type string }
	}
	if err := json.Unmarshal([]byte(res.stdout), &d); err != nil {
		t.Fatal(err)
	}
	if d.From.Release != p.liveOn(p.production()) || d.To.Release != p.liveOn(p.staging()) ||
		len(d.Added) != 1 || len(d.Removed) != 2 || len(d.Changed) != 2 || d.Removed[0].Type != "dir" {
		t.Errorf("diff --json:\n%s", res.stdout)
	}

	// Staging's hosts disagree: neither diff nor a promotion guesses.
	p.write("app/VERSION", "v3\n")
	p.repo.commit("v3")
	p.mustRun("--hosts", "host1", "deploy", "staging")
	for _, args := range [][]string{{"deploy", "production", "--from", "staging"}, {"diff", "production", "staging"}} {
		res := p.expectCode(1, args...)
		if !strings.Contains(res.stderr, "the hosts of staging disagree on the live release") || !strings.Contains(res.stderr, "on host1") || !strings.Contains(res.stderr, "on host2") {
			t.Errorf("%s with staging's hosts on different releases:\n%s", strings.Join(args, " "), res.stderr)
		}
	}
}
