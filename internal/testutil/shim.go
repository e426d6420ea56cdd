package testutil

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Shim puts a command called name first on the PATH of h's sessions, in
// h's own mount namespace only: a directory holding just the shim (an sh
// script) is mounted over /usr/local/bin, which comes first on sshd's
// default PATH, until the test ends. The shim reaches the real command by
// its full path. A test uses it to hold a command at a moment it must
// catch (the copy of a release's files, say), which polling may miss on a
// fast machine.
func (h *Host) Shim(t testing.TB, name, script string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "slipway-shim-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	mount := append(h.nsenterArgs(), "--", "mount", "--bind", dir, "/usr/local/bin")
	if out, err := exec.Command("nsenter", mount...).CombinedOutput(); err != nil {
		t.Fatalf("%s: shim %s: %v: %s", h.Name, name, err, out)
	}
	t.Cleanup(func() {
		umount := append(h.nsenterArgs(), "--", "umount", "/usr/local/bin")
		_ = exec.Command("nsenter", umount...).Run()
	})
}
