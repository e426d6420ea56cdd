// Package shell builds POSIX sh command lines. It is the only place where a
// string from outside the program (config, flags, file names, hook output)
// becomes part of a command that a remote shell will parse.
package shell

import (
	"fmt"
	"strings"
)

// Quote returns s as one POSIX shell word that the shell reads back as
// exactly s, whatever bytes s holds. The word is wrapped in single quotes,
// inside which sh treats every byte literally; an embedded single quote
// closes the quoting, adds an escaped quote and reopens it.
//
// A NUL byte cannot be passed to a program as part of an argument, so Quote
// panics on one: callers validate input at its boundary (see Check).
func Quote(s string) string {
	if strings.IndexByte(s, 0) >= 0 {
		panic(fmt.Sprintf("shell.Quote: NUL byte in %q", s))
	}
	if s != "" && isSafe(s) {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Join quotes each word and joins them with spaces into one command line.
func Join(words ...string) string {
	quoted := make([]string, len(words))
	for i, w := range words {
		quoted[i] = Quote(w)
	}
	return strings.Join(quoted, " ")
}

// Check reports whether s can be quoted: every string can, except one with a
// NUL byte, which no argument or environment value can hold.
func Check(s string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return fmt.Errorf("contains a NUL byte")
	}
	return nil
}

// isSafe reports whether s consists only of bytes no shell treats specially,
// so it can go unquoted and command lines stay readable in -v output.
// A leading '-' is safe for the shell: option parsing is the caller's job
// (pass "--" first).
func isSafe(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case c == '-' || c == '_' || c == '.' || c == '/' || c == ',' || c == ':' || c == '+' || c == '@' || c == '%':
		default:
			return false
		}
	}
	// '~' never appears (not in the list), so no tilde expansion; '=' is
	// excluded because a first word like a=b is an assignment.
	return true
}
