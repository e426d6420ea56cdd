package cli

import (
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestCheckTableShowsUnreachableHosts: a host on a closed port next to
// this machine is shown unreachable, with nothing measured; this machine
// is checked in full; check exits 4 and says why under the table.
func TestCheckTableShowsUnreachableHosts(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	l.Close()
	t.Setenv("HOME", t.TempDir())
	p := &localProject{t: t, dir: t.TempDir()}
	p.write("site/index.html", "v1")
	p.write("slipway.yml", "app: demo\nsource:\n  path: site\nstages:\n  demo:\n    hosts: [local, '"+down+"']\n    deploy_to: "+filepath.Join(p.dir, "deployed")+"\n")
	if _, stderr, code := p.run("setup", "demo", "--hosts", "local"); code != ExitOK {
		t.Fatalf("setup: exit %d\n%s", code, stderr)
	}
	stdout, stderr, code := p.run("check", "demo")
	if code != ExitUnreachable {
		t.Errorf("check: exit %d, want %d\n%s\n%s", code, ExitUnreachable, stdout, stderr)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(stdout, "\n") {
		if f := strings.Fields(line); len(f) > 1 && rows[f[0]] == "" {
			rows[f[0]] = strings.Join(f[1:], " ")
		}
	}
	if got := rows[down]; got != "- - - - - - unreachable" {
		t.Errorf("unreachable host's row: %q, want nothing measured\n%s", got, stdout)
	}
	if got := rows["local"]; !strings.HasSuffix(got, " GB local free ok") || strings.HasPrefix(got, "-") {
		t.Errorf("local row: %q, want its user, free space, switch path, lock and ok\n%s", got, stdout)
	}
	if !strings.Contains(stdout, "\n"+down+" unreachable: ") || !strings.Contains(stderr, "check demo: 1 host unreachable") {
		t.Errorf("check does not say why:\n%s\n%s", stdout, stderr)
	}
}
