package host

import (
	"strings"
	"testing"
)

// TestExitErrorLeavesTheScriptOut: an error names the exit status and what
// the command printed last, never slipway's own script (-v shows that).
func TestExitErrorLeavesTheScriptOut(t *testing.T) {
	script := "umask 022 && mkdir -p -- '/srv/app/releases' && mkdir -- '/srv/app/releases/20260101000000' || exit"
	for _, tc := range []struct {
		stderr string
		want   string
	}{
		{"", "command exited with status 1"},
		{"mkdir: cannot create directory '/srv/app/releases/20260101000000': Permission denied\n",
			"command exited with status 1: mkdir: cannot create directory '/srv/app/releases/20260101000000': Permission denied"},
		{"first\nsecond\n", "command exited with status 1:\nfirst\nsecond"},
	} {
		got := (&ExitError{Host: "web1", Script: script, Code: 1, Stderr: []byte(tc.stderr)}).Error()
		if got != tc.want {
			t.Errorf("stderr %q: Error() = %q, want %q", tc.stderr, got, tc.want)
		}
		if strings.Contains(got, "umask") {
			t.Errorf("the script is in the message: %q", got)
		}
	}
}
