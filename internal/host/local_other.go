//go:build !unix

package host

import "errors"

// errNotPOSIX is what the local host says on a system without /bin/sh and
// process groups: its scripts and renames are POSIX ones.
var errNotPOSIX = errors.New("the local host needs a POSIX system (Linux, macOS); from Windows, deploy to SSH hosts")

func posixOnly() error { return errNotPOSIX }
