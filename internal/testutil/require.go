// Package testutil holds the helpers of slipway's end-to-end tests: a fleet
// of real OpenSSH servers on loopback, each seeing its own /srv, and the
// slipway binary built from this checkout.
//
// The fleet needs Linux, root, OpenSSH's sshd and util-linux (unshare,
// nsenter, runuser, mount). Where one is missing the test is skipped with a
// message saying what to install; with CI=true it fails instead.
package testutil

import (
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Require reports a missing prerequisite of an end-to-end test. what names
// the prerequisite and how to get it. In CI (CI=true) a missing
// prerequisite fails the test, so a broken CI image cannot pass by skipping
// everything; elsewhere the test is skipped, loudly.
func Require(t testing.TB, what string, ok bool) {
	t.Helper()
	if ok {
		return
	}
	if inCI() {
		t.Fatalf("MISSING END-TO-END PREREQUISITE (CI=true, so this is a failure, not a skip): %s", what)
	}
	t.Skipf("SKIPPED END-TO-END TEST, MISSING PREREQUISITE: %s (set CI=true to turn this skip into a failure)", what)
}

func inCI() bool {
	ci, err := strconv.ParseBool(os.Getenv("CI"))
	return err == nil && ci
}

const sshdPath = "/usr/sbin/sshd"

// requireFleet checks everything StartFleet needs before it changes anything.
func requireFleet(t testing.TB) {
	t.Helper()
	Require(t, "Linux: the SSH fleet gives every host its own mount namespace", runtime.GOOS == "linux")
	Require(t, "root: the SSH fleet creates the deploy user "+DeployUser+", mount namespaces and sshd servers; run the tests as root (sudo -E go test ./...)", os.Geteuid() == 0)
	Require(t, "OpenSSH server at "+sshdPath+": apt-get install openssh-server (Fedora: dnf install openssh-server)", isExecutable(sshdPath))
	for _, tool := range []string{"unshare", "nsenter", "runuser", "mount"} {
		_, err := exec.LookPath(tool)
		Require(t, tool+" on PATH: apt-get install util-linux mount", err == nil)
	}
	for _, tool := range []string{"useradd", "usermod"} {
		_, err := exec.LookPath(tool)
		Require(t, tool+" on PATH: apt-get install passwd", err == nil)
	}
	probe := probeMountNamespace()
	Require(t, "permission to create mount namespaces and bind mounts (unshare --mount --propagation private -- mount --bind $TMPDIR $TMPDIR failed: "+probe+"); run on a VM or in a privileged container (docker run --privileged)", probe == "")
}

var mountNamespaceProbe struct {
	once   sync.Once
	result string
}

// probeMountNamespace returns "" if this process can create a mount
// namespace and bind-mount in it, else what went wrong.
func probeMountNamespace() string {
	mountNamespaceProbe.once.Do(func() {
		tmp := os.TempDir()
		out, err := exec.Command("unshare", "--mount", "--propagation", "private", "--",
			"mount", "--bind", tmp, tmp).CombinedOutput()
		if err != nil {
			mountNamespaceProbe.result = strings.TrimSpace(err.Error() + ": " + string(out))
		}
	})
	return mountNamespaceProbe.result
}

func isExecutable(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.Mode().IsRegular() && info.Mode()&0o111 != 0
}
