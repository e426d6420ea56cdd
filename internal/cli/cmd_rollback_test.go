package cli

import (
	"slices"
	"strings"
	"testing"
)

func TestRollbackToCompletesReleaseIDsNewestFirst(t *testing.T) {
	p := newLocalProject(t, "")
	if _, stderr, code := p.run("deploy", "demo"); code != ExitOK {
		t.Fatalf("deploy: exit %d\n%s", code, stderr)
	}
	first := p.live()
	p.write("site/index.html", "v2")
	if _, stderr, code := p.run("deploy", "demo"); code != ExitOK {
		t.Fatalf("second deploy: exit %d\n%s", code, stderr)
	}
	second := p.live()
	stdout, stderr, code := p.run("__complete", "rollback", "demo", "--to", "")
	if code != ExitOK {
		t.Fatalf("completion: exit %d\n%s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	want := []string{second + "\tlive", first + "\tprevious", ":36"} // 36: no file completion, keep the order
	if !slices.Equal(lines, want) {
		t.Errorf("completions of --to:\n%s\nwant:\n%s", stdout, strings.Join(want, "\n"))
	}
	if stdout, _, _ := p.run("__complete", "rollback", "--to", ""); strings.TrimSpace(stdout) != ":4" {
		t.Errorf("completion of --to before the stage: %q, want nothing", stdout)
	}
}
