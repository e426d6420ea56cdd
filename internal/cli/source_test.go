package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A CI container whose home cannot hold the artifact cache (read-only,
// missing, or here a file): a build goes on without it, and a promotion
// fetches the tree into a temporary directory, each saying why and what
// to change.
func TestUnusableCacheWarnsAndGoesOn(t *testing.T) {
	p := newPromoteProject(t)
	home := filepath.Join(t.TempDir(), "home")
	if err := os.WriteFile(home, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("XDG_CACHE_HOME", home)
	temp := t.TempDir()
	t.Setenv("TMPDIR", temp)
	dir := filepath.Join(home, "slipway", "artifacts")
	fix := []string{dir, "not a directory", "point XDG_CACHE_HOME at a writable directory", "SLIPWAY_ARTIFACTS_MAX_SIZE=0"}

	_, stderr := p.mustRun("deploy", "staging")
	for _, want := range append(fix, "this build is not kept") {
		if !strings.Contains(stderr, want) {
			t.Errorf("deploy does not say %q:\n%s", want, stderr)
		}
	}
	if strings.Contains(stderr, "could not record this deploy") {
		t.Errorf("deploy warns twice:\n%s", stderr)
	}

	_, stderr = p.mustRun("deploy", "production", "--from", "staging")
	for _, want := range append(fix, "fetching it from local", "fetched into a temporary directory") {
		if !strings.Contains(stderr, want) {
			t.Errorf("promotion does not say %q:\n%s", want, stderr)
		}
	}
	if p.stamp("production") != p.stamp("staging") {
		t.Error("the promotion shipped another tree")
	}
	entries, _ := os.ReadDir(temp)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "slipway-artifact-") {
			t.Errorf("the fetched tree was left in %s", filepath.Join(temp, e.Name()))
		}
	}
}

// A promotion whose fetched tree is kept, but whose cache cannot drop an
// older tree to stay within its bounds, ships all the same, with a warning.
func TestPromoteGoesOnWhenEvictionFails(t *testing.T) {
	p := newPromoteProject(t)
	p.mustRun("deploy", "staging")
	digest := strings.TrimPrefix(p.liveRow("staging")["digest"].(string), "sha256:")
	// The tree is fetched, not taken from the cache...
	if err := os.RemoveAll(filepath.Join(cacheDir(), "sha256-"+digest)); err != nil {
		t.Fatal(err)
	}
	// ...and the cache holds one tree, and an older one it cannot remove
	// (tests may run as root, who may remove anything: its name is no
	// digest, so nothing can name it to remove it).
	stuck := filepath.Join(cacheDir(), "sha256-"+strings.Repeat("A", 64))
	if err := os.Mkdir(stuck, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"tree.tar":    "",
		"record.json": `{"digest": "sha256:` + strings.Repeat("A", 64) + `", "last_used": "2020-01-01T00:00:00Z"}`,
	} {
		if err := os.WriteFile(filepath.Join(stuck, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("SLIPWAY_ARTIFACTS_MAX_ENTRIES", "1")

	_, stderr := p.mustRun("deploy", "production", "--from", "staging")
	if !strings.Contains(stderr, "fetching it from local") || !strings.Contains(stderr, "the artifact cache kept tree "+digest[:12]+", but could not remove") {
		t.Errorf("promotion:\n%s", stderr)
	}
	if p.stamp("production") != p.stamp("staging") {
		t.Error("the promotion shipped another tree")
	}
}
