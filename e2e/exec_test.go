package e2e

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/slipway-deploy/slipway/internal/testutil"
)

func TestExecRunsInCurrentOnEveryHost(t *testing.T) {
	p := newProject(t, 3, testutil.Options{})
	p.config("")
	p.mustRun("deploy", "production")
	res := p.mustRun("exec", "production", "--", "cat VERSION && echo on $(hostname -s >/dev/null; echo ok)")
	for _, h := range p.fleet.Hosts {
		if !strings.Contains(res.stdout, h.Name+" | v1") {
			t.Errorf("no output from %s:\n%s", h.Name, res.stdout)
		}
	}
	// Several words are one command with quoted arguments, not a shell line.
	res = p.mustRun("exec", "production", "--hosts", "host2", "--", "printf", "%s\\n", "a b; echo injected")
	if !strings.Contains(res.stdout, "host2 | a b; echo injected") || strings.Contains(res.stdout, "host1") {
		t.Errorf("exec with arguments:\n%s", res.stdout)
	}
	res = p.expectCode(1, "exec", "production", "--", "test $(cat VERSION) = v2")
	if !strings.Contains(res.stderr, "exited with status 1") {
		t.Errorf("a failing command:\n%s", res.stderr)
	}
	p.expectCode(2, "exec", "production")
}

func TestSSHOpensAShellInCurrent(t *testing.T) {
	p := newProject(t, 2, testutil.Options{})
	p.config("")
	p.mustRun("deploy", "production")
	cmd := exec.Command(p.bin, "ssh", "production", "host2")
	cmd.Dir, cmd.Env = p.dir, p.fleet.Env()
	cmd.Stdin = strings.NewReader("pwd -P; cat VERSION; exit\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("slipway ssh: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), deployTo+"/releases/") || !strings.Contains(string(out), "v1") {
		t.Errorf("the shell did not start in current on host2:\n%s", out)
	}
}
