//go:build !windows

package source

import "os/exec"

// shellCommand runs a build command with sh.
func shellCommand(command string) *exec.Cmd { return exec.Command("sh", "-c", command) }
