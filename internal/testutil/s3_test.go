package testutil

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestInstallScriptBuildsWeed: make test's install script builds the
// SeaweedFS the tests run, so that no test pays for the build.
func TestInstallScriptBuildsWeed(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile(filepath.Join(root, "scripts", "install-test-deps.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(script), "\nweed_version="+SeaweedFSVersion+"\n") {
		t.Errorf("scripts/install-test-deps.sh does not build weed %s (testutil.SeaweedFSVersion)", SeaweedFSVersion)
	}
}
