package testutil

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

var slipwayBinary struct {
	once sync.Once
	path string
	err  error
}

// Slipway builds ./cmd/slipway of this checkout, once per test binary, and
// returns the path of the binary. It fails the test with the compiler's
// output if the build fails.
//
// The binary is written to a temporary name and renamed to
// $TMPDIR/slipway-testutil-UID/slipway-<hash of the module root>, so test
// binaries of several packages building at once never run a half-written
// file, and one file per checkout is left behind, not one per run.
func Slipway(t testing.TB) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	Require(t, "the go tool on PATH, to build ./cmd/slipway", err == nil)
	slipwayBinary.once.Do(func() {
		slipwayBinary.path, slipwayBinary.err = buildSlipway(goTool)
	})
	if slipwayBinary.err != nil {
		t.Fatalf("build slipway: %v", slipwayBinary.err)
	}
	return slipwayBinary.path
}

func buildSlipway(goTool string) (string, error) {
	root, err := ModuleRoot()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(os.TempDir(), fmt.Sprintf("slipway-testutil-%d", os.Getuid()))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, "slipway-*.building")
	if err != nil {
		return "", err
	}
	tmp.Close()
	defer os.Remove(tmp.Name()) // a no-op once renamed
	cmd := exec.Command(goTool, "build", "-o", tmp.Name(), "./cmd/slipway")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build -o %s ./cmd/slipway in %s: %w\n%s", tmp.Name(), root, err, strings.TrimSpace(string(out)))
	}
	sum := sha256.Sum256([]byte(root))
	binary := filepath.Join(dir, "slipway-"+hex.EncodeToString(sum[:6]))
	if err := os.Rename(tmp.Name(), binary); err != nil {
		return "", err
	}
	return binary, nil
}

// ModuleRoot returns the directory of the go.mod that holds the working
// directory (a test's working directory is its package directory).
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod in the working directory or any parent")
		}
		dir = parent
	}
}
