//go:build unix

package host

// posixOnly is nil: this is a POSIX system.
func posixOnly() error { return nil }
