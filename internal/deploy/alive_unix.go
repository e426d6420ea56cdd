//go:build unix

package deploy

import (
	"errors"
	"syscall"
)

// processAlive reports whether pid runs on this machine.
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
