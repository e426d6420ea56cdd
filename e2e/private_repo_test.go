package e2e

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slipway-deploy/slipway/internal/testutil"
)

// TestPrivateRepositoryOverSSH serves the repository from host1's sshd, as
// a private git server reached over ssh, and deploys it with strategy git:
// refused while a host does not know the server's host key, refused without
// credentials, then working with agent forwarding and with a deploy key.
func TestPrivateRepositoryOverSSH(t *testing.T) {
	p, r := newGitProject(t, 3)
	server := p.fleet.Hosts[0]
	repoOnServer := "/srv/git/app.git"
	serverRepo := server.Path(repoOnServer)
	if err := os.MkdirAll(filepath.Dir(serverRepo), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", r.bare, serverRepo).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if out, err := exec.Command("chown", "-R", testutil.DeployUser, filepath.Dir(serverRepo)).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	url := "ssh://" + testutil.DeployUser + "@127.0.0.1:" + strconv.Itoa(server.Port) + repoOnServer
	p.config("  strategy: git\n  repo: " + url + "\n  subdir: app\n")
	p.write("slipway.yml", strings.Replace(readFile(t, filepath.Join(p.dir, "slipway.yml")), "  path: app\n", "", 1))

	// The hosts do not know the git server's host key: refused, and
	// slipway does not work around it.
	res := p.expectCode(1, "deploy", "production")
	if !strings.Contains(res.stderr, "Host key verification failed") || !strings.Contains(res.stderr, "known_hosts") {
		t.Errorf("unknown git host key:\n%s", res.stderr)
	}
	for _, h := range p.fleet.Hosts {
		h.Run(t, "mkdir -p ~/.ssh && chmod 700 ~/.ssh && echo '"+server.KnownHostsLine()+"' > ~/.ssh/known_hosts")
	}

	// Known host, but no key on the hosts and no agent: refused with a hint.
	res = p.expectCode(1, "deploy", "production")
	if !strings.Contains(res.stderr, "deploy key") || !strings.Contains(res.stderr, "forward_agent") {
		t.Errorf("no credentials:\n%s", res.stderr)
	}

	// Agent forwarding: the deploying user's key, through the connection.
	agentSock := startAgent(t, p.fleet.IdentityFile())
	p.write("slipway.yml", "forward_agent: true\n"+readFile(t, filepath.Join(p.dir, "slipway.yml")))
	withAgent := p.withEnv("SSH_AUTH_SOCK=" + agentSock)
	withAgent.mustRun("deploy", "production")
	head := git(t, p.dir, "rev-parse", "HEAD")
	for _, h := range p.fleet.Hosts {
		if got := revisionOn(t, h); got != head {
			t.Errorf("%s: REVISION = %s, want %s", h.Name, got, head)
		}
	}

	// A deploy key on each host, no agent.
	key := readFile(t, p.fleet.IdentityFile())
	for _, h := range p.fleet.Hosts {
		h.Run(t, "umask 077 && cat > ~/.ssh/id_ed25519 <<'EOF'\n"+key+"EOF")
	}
	p.write("slipway.yml", strings.Replace(readFile(t, filepath.Join(p.dir, "slipway.yml")), "forward_agent: true\n", "", 1))
	p.mustRun("deploy", "production", "--force")
	if p.fleetLive() == "" {
		t.Fatal("nothing live after the deploy-key deploy")
	}
}

// startAgent runs an ssh-agent holding key for the test's duration.
func startAgent(t *testing.T, key string) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "agent.sock")
	agent := exec.Command("ssh-agent", "-D", "-a", sock)
	var stderr bytes.Buffer
	agent.Stderr = &stderr
	if err := agent.Start(); err != nil {
		t.Fatalf("ssh-agent: %v", err)
	}
	t.Cleanup(func() {
		_ = agent.Process.Kill()
		_ = agent.Wait()
	})
	// The socket exists from ssh-agent's bind, before its listen: wait
	// for a connection to be accepted, not for the file.
	waitFor(t, time.Minute, "ssh-agent listening", func() bool {
		c, err := net.Dial("unix", sock)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	add := exec.Command("ssh-add", key)
	add.Env = append(os.Environ(), "SSH_AUTH_SOCK="+sock)
	if out, err := add.CombinedOutput(); err != nil {
		t.Fatalf("ssh-add: %v %s %s", err, out, stderr.String())
	}
	return sock
}
