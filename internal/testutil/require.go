// Package testutil holds the helpers of slipway's end-to-end tests: a fleet
// of real OpenSSH servers on loopback, each seeing its own /srv, and the
// slipway binary built from this checkout.
//
// The fleet needs Linux, root, OpenSSH's sshd and util-linux (unshare,
// nsenter, runuser, mount); hosts that differ need more: tcsh or fish as
// login shells, busybox, mkfs.xfs (xfsprogs) or mkfs.ext4 and a loop
// device for a file system of their own, perl for a PID namespace's init.
// Where one is missing the test is skipped with a message saying what to
// install; with CI=true it fails instead.
package testutil

import (
	"fmt"
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

// requireHostOptions checks what the options of opts need, before the
// fleet changes anything.
func requireHostOptions(t testing.TB, opts Options) {
	t.Helper()
	ownPIDs := opts.PIDNamespaces
	for i, o := range opts.Hosts {
		if o.Shell != "" {
			login, ok := loginShells[o.Shell]
			if !ok {
				t.Fatalf("StartFleet: host%d: login shell %q; the shells are bash, dash, tcsh and fish", i+1, o.Shell)
			}
			Require(t, fmt.Sprintf("%s at %s, the login shell of host%d's user: apt-get install %s", o.Shell, login.path, i+1, login.pkg), isExecutable(login.path))
		}
		if o.BusyBox {
			_, err := exec.LookPath("busybox")
			Require(t, "busybox on PATH, for a host whose PATH is BusyBox only: apt-get install busybox", err == nil)
		}
		if o.FileSystem != "" {
			fs, ok := fileSystems[o.FileSystem]
			if !ok {
				t.Fatalf("StartFleet: host%d: file system %q; the choices are xfs and ext4", i+1, o.FileSystem)
			}
			_, err := exec.LookPath(fs.command[0])
			Require(t, fmt.Sprintf("%s on PATH, for host%d's %s: apt-get install %s", fs.command[0], i+1, o.FileSystem, fs.pkg), err == nil)
			probe := probeLoopDevice()
			Require(t, "a free loop device, for a host's own file system (losetup --find: "+probe+"); in a container: docker run --privileged, or -v /dev:/dev", probe == "")
			ownPIDs = true
		}
	}
	if ownPIDs {
		_, err := exec.LookPath("perl")
		Require(t, "perl on PATH, the init of a host's PID namespace: apt-get install perl-base", err == nil)
		probe := probePIDNamespace()
		Require(t, "permission to create PID namespaces (unshare --pid --fork --mount --mount-proc true failed: "+probe+"); run on a VM or in a privileged container", probe == "")
	}
}

var loopProbe, pidNamespaceProbe struct {
	once   sync.Once
	result string
}

// probeLoopDevice returns "" if a loop device can be had, else why not.
func probeLoopDevice() string {
	loopProbe.once.Do(func() {
		out, err := exec.Command("losetup", "--find").CombinedOutput()
		if err != nil {
			loopProbe.result = strings.TrimSpace(err.Error() + ": " + string(out))
		}
	})
	return loopProbe.result
}

// probePIDNamespace returns "" if this process can create a PID namespace
// with its own /proc, else what went wrong.
func probePIDNamespace() string {
	pidNamespaceProbe.once.Do(func() {
		out, err := exec.Command("unshare", "--pid", "--fork", "--mount", "--propagation", "private", "--mount-proc", "true").CombinedOutput()
		if err != nil {
			pidNamespaceProbe.result = strings.TrimSpace(err.Error() + ": " + string(out))
		}
	})
	return pidNamespaceProbe.result
}
