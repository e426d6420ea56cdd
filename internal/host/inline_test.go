package host

import (
	"bytes"
	"context"
	"os/exec"
	"strings"
	"testing"

	"github.com/slipway-deploy/slipway/internal/shell"
	"github.com/slipway-deploy/slipway/internal/testutil"
)

// inlineScripts are scripts whose every byte must reach /bin/sh as it was:
// quotes of each kind, printf's % and \, tcsh's !, fish's \\ and \', a
// leading -, newlines, non-ASCII, and every byte there is but NUL.
func inlineScripts() map[string]string {
	var all []byte
	for c := 1; c < 256; c++ {
		all = append(all, byte(c))
	}
	odd := []string{`'`, `"`, "`", `\`, `\\`, `\'`, `%`, `%s`, `%%`, `!`, `!!`, `$HOME`, `${x}`, `$(id)`, "\t", "a\nb", "é☃", `-n`, `--`, `~`, `*`, `{a,b}`, `#`}
	return map[string]string{
		"every byte":          shell.Script("printf '%s' {{v}}", shell.Args{"v": string(all)}),
		"odd words":           shell.Script("printf '%s|' {{v}}", shell.Args{"v": odd}),
		"lines and percent":   "x=5\nprintf '%d%%\\n' \"$x\"\nif [ \"$x\" -gt 1 ]; then echo 'yes!'; fi\n",
		"leading dash":        "-n 2>/dev/null; echo after",
		"a group report line": groupReport + "echo done",
		"empty":               "",
	}
}

// TestInlineLineThroughEveryLoginShell: the command line that carries a
// script (inlineLine) runs exactly that script under each login shell a
// deploy user may have, as sshd runs it (SHELL -c LINE).
func TestInlineLineThroughEveryLoginShell(t *testing.T) {
	shells := []string{"/bin/bash", "/bin/dash", "/usr/bin/tcsh", "/usr/bin/fish"}
	if _, err := exec.LookPath("zsh"); err == nil {
		shells = append(shells, "zsh")
	}
	if _, err := exec.LookPath("busybox"); err == nil {
		shells = append(shells, "busybox sh")
	}
	for _, sh := range shells {
		argv := strings.Fields(sh)
		_, err := exec.LookPath(argv[0])
		testutil.Require(t, sh+" (apt-get install tcsh fish)", err == nil)
		for name, script := range inlineScripts() {
			// What the line must do: eval the script, as readAll does.
			want, err := exec.Command("/bin/sh", "-c", `eval "$1"`, "sh", script).CombinedOutput()
			if err != nil {
				t.Fatalf("%s: /bin/sh itself: %v\n%s", name, err, want)
			}
			line, ok := inlineLine(script)
			if !ok {
				t.Fatalf("%s: not inline", name)
			}
			got, err := exec.Command(argv[0], append(argv[1:], "-c", line)...).CombinedOutput()
			if err != nil {
				t.Errorf("%s, %s: %v\n%s", sh, name, err, got)
				continue
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s, %s: the script ran as another:\ngot  %q\nwant %q\nline %s", sh, name, got, want, line)
			}
		}
	}
}

// TestInlineLineLimit: a script whose line would be too long for one
// argument goes on standard input instead.
func TestInlineLineLimit(t *testing.T) {
	if _, ok := inlineLine(strings.Repeat("a", maxInline-100)); !ok {
		t.Error("a script under the limit is not inline")
	}
	if _, ok := inlineLine(strings.Repeat("'", maxInline/4+1)); ok {
		t.Error("a script whose encoding is over the limit is inline")
	}
}

// TestScriptsOfEveryLength: a script that fits its command line and one
// that does not (on stdin, read whole, or read exactly when the command
// has input of its own) each run as written, their input intact.
func TestScriptsOfEveryLength(t *testing.T) {
	env := newSSHTestEnv(t)
	conn := env.dial(t, targetFor(env.knownServer(t)))
	pad := "# " + strings.Repeat("x", maxInline) + "\n"
	for _, tc := range []struct {
		name, script, stdin, want string
	}{
		{"inline", "echo 'a b'; echo \"$((1+2))%\"", "", "a b\n3%\n"},
		{"inline with input", "wc -c", "12345", "5\n"},
		{"on stdin", pad + "echo 'a b'", "", "a b\n"},
		{"on stdin with input", pad + "cat; echo", "the input", "the input\n"},
	} {
		cmd := Command{Script: tc.script}
		if tc.stdin != "" {
			cmd.Stdin = strings.NewReader(tc.stdin)
		}
		res, err := conn.Exec(context.Background(), cmd)
		if got := strings.TrimLeft(string(res.Stdout), " "); err != nil || got != tc.want {
			t.Errorf("%s: %q (%v), want %q", tc.name, res.Stdout, err, tc.want)
		}
	}
}
