package cli

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/slipway-deploy/slipway/internal/deploy"
)

// terminalInput is standard input that is a terminal, with what the user
// types.
type terminalInput struct{ io.Reader }

func (terminalInput) IsTerminal() bool { return true }

const sharedConfig = "shared: {files: [.env, config/app.yml]}\nenv:\n  MAIL_PASS: {value: s3cr3tvalue, secret: true}\n"

// runIn runs slipway in-process with in as standard input.
func (p *localProject) runIn(in io.Reader, args ...string) (stdout, stderr string, code int) {
	p.t.Helper()
	var out, errOut bytes.Buffer
	code = Main(context.Background(), append([]string{"-c", filepath.Join(p.dir, "slipway.yml")}, args...), IO{In: in, Out: &out, Err: &errOut})
	return out.String(), errOut.String(), code
}

func (p *localProject) read(rel string) string {
	p.t.Helper()
	b, err := os.ReadFile(filepath.Join(p.dir, rel))
	if err != nil {
		p.t.Fatal(err)
	}
	return string(b)
}

func TestSharedPushAsksAndMasks(t *testing.T) {
	p := newLocalProject(t, sharedConfig)
	p.write("deployed/shared/.env", "APP=1\nDB_PASSWORD=hunter1\nSMTP=s3cr3tvalue\n")
	p.write("env.production", "APP=2\nDB_PASSWORD=hunter2\nSMTP=s3cr3tvalue\n")
	env := filepath.Join(p.dir, "env.production")

	// Without a terminal to ask at, and without --yes: refused before any
	// host is touched.
	_, stderr, code := p.run("shared", "push", "demo", env, "--as", ".env")
	if code != ExitUsage || !strings.Contains(stderr, "pass --yes") {
		t.Fatalf("no terminal: exit %d\n%s", code, stderr)
	}
	// At a terminal, the answer no: nothing written, exit 1.
	stdout, stderr, code := p.runIn(terminalInput{strings.NewReader("n\n")}, "shared", "push", "demo", env, "--as", ".env")
	if code != ExitFailed || !strings.Contains(stderr, "[y/N]") || !strings.Contains(stderr, "nothing was changed") {
		t.Fatalf("answered no: exit %d\n%s", code, stderr)
	}
	if got := p.read("deployed/shared/.env"); !strings.HasPrefix(got, "APP=1\n") {
		t.Fatalf(".env changed: %q", got)
	}
	wantDiff := []string{
		"@@ -1,3 +1,3 @@",
		"-APP=1",
		"-DB_PASSWORD=***",
		"+APP=2",
		"+DB_PASSWORD=***",
		" SMTP=***",
	}
	for _, line := range wantDiff {
		if !slices.Contains(strings.Split(stdout, "\n"), line) {
			t.Errorf("diff lacks %q:\n%s", line, stdout)
		}
	}
	// The answer yes: written.
	stdout, stderr, code = p.runIn(terminalInput{strings.NewReader("y\n")}, "shared", "push", "demo", env, "--as", ".env")
	if code != ExitOK || !strings.Contains(stderr, ".env: pushed "+env+" to local") {
		t.Fatalf("answered yes: exit %d\n%s", code, stderr)
	}
	if got := p.read("deployed/shared/.env"); got != "APP=2\nDB_PASSWORD=hunter2\nSMTP=s3cr3tvalue\n" {
		t.Fatalf(".env = %q", got)
	}
	for _, out := range []string{stdout, stderr} {
		for _, secret := range []string{"hunter", "s3cr3t"} {
			if strings.Contains(out, secret) {
				t.Errorf("output shows %q:\n%s", secret, out)
			}
		}
	}
	// Pushed again: every host has it; nothing to ask.
	_, stderr, code = p.run("shared", "push", "demo", env, "--as", ".env")
	if code != ExitUsage {
		t.Errorf("no terminal, no --yes: exit %d\n%s", code, stderr)
	}
	_, stderr, code = p.run("shared", "push", "demo", env, "--as", ".env", "--yes")
	if code != ExitOK || !strings.Contains(stderr, "every host has "+env+" already; nothing pushed") {
		t.Errorf("unchanged: exit %d\n%s", code, stderr)
	}
}

func TestSharedPushRefusesWhatIsNotASharedFile(t *testing.T) {
	p := newLocalProject(t, sharedConfig)
	p.write(".env.staging", "A=1\n")
	file := filepath.Join(p.dir, ".env.staging")
	// The name defaults to the file's base name.
	_, stderr, code := p.run("shared", "push", "demo", file, "--yes")
	if code != ExitUsage || !strings.Contains(stderr, `".env.staging" is not a shared file of`) || !strings.Contains(stderr, "shared.files: .env, config/app.yml") {
		t.Errorf("unknown name: exit %d\n%s", code, stderr)
	}
	_, stderr, code = p.run("shared", "push", "demo", filepath.Join(p.dir, "nope"), "--as", ".env", "--yes")
	if code != ExitUsage || !strings.Contains(stderr, "no file") {
		t.Errorf("missing local file: exit %d\n%s", code, stderr)
	}
	_, stderr, code = p.run("shared", "push", "demo")
	if code != ExitUsage || !strings.Contains(stderr, "needs a stage and a local file") {
		t.Errorf("no file: exit %d\n%s", code, stderr)
	}
	q := newLocalProject(t, "")
	q.write(".env", "A=1\n")
	_, stderr, code = q.run("shared", "push", "demo", filepath.Join(q.dir, ".env"), "--yes")
	if code != ExitUsage || !strings.Contains(stderr, "lists no shared files") {
		t.Errorf("no shared files: exit %d\n%s", code, stderr)
	}
}

func TestSharedDiffAndPull(t *testing.T) {
	p := newLocalProject(t, sharedConfig)
	p.write("deployed/shared/.env", "APP=1\nDB_PASSWORD=hunter1\n")

	// No local copy yet: said so, with the way to get one.
	_, stderr, code := p.run("shared", "diff", "demo", ".env")
	if code != ExitUsage || !strings.Contains(stderr, "shared pull") {
		t.Fatalf("no local copy: exit %d\n%s", code, stderr)
	}
	// Pull it beside slipway.yml, 0600; never over an existing file.
	_, stderr, code = p.run("shared", "pull", "demo", ".env")
	if code != ExitOK || !strings.Contains(stderr, "pulled") {
		t.Fatalf("pull: exit %d\n%s", code, stderr)
	}
	info, err := os.Stat(filepath.Join(p.dir, ".env"))
	if err != nil || info.Mode().Perm() != 0o600 || p.read(".env") != "APP=1\nDB_PASSWORD=hunter1\n" {
		t.Fatalf("pulled file: %v %v", info, err)
	}
	p.write(".env", "mine\n")
	_, stderr, code = p.run("shared", "pull", "demo", ".env")
	if code != ExitUsage || !strings.Contains(stderr, "--force") || p.read(".env") != "mine\n" {
		t.Fatalf("pull over a file: exit %d\n%s", code, stderr)
	}
	if _, stderr, code = p.run("shared", "pull", "demo", ".env", "--force"); code != ExitOK || p.read(".env") != "APP=1\nDB_PASSWORD=hunter1\n" {
		t.Fatalf("pull --force: exit %d\n%s", code, stderr)
	}
	stdout, _, code := p.run("shared", "pull", "demo", ".env", "-o", "-")
	if code != ExitOK || stdout != "APP=1\nDB_PASSWORD=hunter1\n" {
		t.Fatalf("pull -o -: exit %d %q", code, stdout)
	}
	if _, stderr, code = p.run("shared", "pull", "demo", "config/app.yml", "-o", filepath.Join(p.dir, "x")); code != ExitFailed || !strings.Contains(stderr, "does not exist") {
		t.Errorf("pull of a missing file: exit %d\n%s", code, stderr)
	}
	if _, stderr, code = p.run("shared", "pull", "demo", ".env", "--host", "web9"); code != ExitUsage || !strings.Contains(stderr, "web9") {
		t.Errorf("pull from an unknown host: exit %d\n%s", code, stderr)
	}

	// The same: exit 0. Without NAME, every shared file with a local copy.
	stdout, stderr, code = p.run("shared", "diff", "demo")
	if code != ExitOK || !strings.Contains(stdout, "is the same as") || !strings.Contains(stderr, "config/app.yml: no local copy") {
		t.Fatalf("same: exit %d\n%s\n%s", code, stdout, stderr)
	}
	// Different: exit 1, the diff masked.
	p.write(".env.production", "APP=1\nDB_PASSWORD=hunter2\n")
	stdout, stderr, code = p.run("shared", "diff", "demo", ".env", "--file", filepath.Join(p.dir, ".env.production"))
	if code != ExitFailed || !strings.Contains(stdout, "-DB_PASSWORD=***\n+DB_PASSWORD=***\n") || strings.Contains(stdout+stderr, "hunter") {
		t.Fatalf("differs: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if _, stderr, code = p.run("shared", "diff", "demo", "--file", "x"); code != ExitUsage || !strings.Contains(stderr, "name the shared file") {
		t.Errorf("--file without NAME: exit %d\n%s", code, stderr)
	}
}

func TestStatusShowsSharedDrift(t *testing.T) {
	st := &deploy.FleetStatus{
		Stage: "production", Agree: true, Live: "20261122103015",
		Hosts: []deploy.HostStatus{{Host: "web1", Reachable: true, Live: "20261122103015"}, {Host: "web2", Reachable: true, Live: "20261122103015"}, {Host: "web3", Reachable: true, Live: "20261122103015"}},
		SharedDrift: []deploy.SharedDrift{{Name: ".env", Copies: []deploy.SharedCopies{
			{Sum: strings.Repeat("3f", 32), Hosts: []string{"web1", "web2"}}, {Sum: "", Hosts: []string{"web3"}},
		}}},
	}
	var out bytes.Buffer
	printStatus(&out, st)
	if want := "shared file .env differs between hosts: web1, web2 have 3f3f3f3f3f3f; web3 has none\n"; !strings.Contains(out.String(), want) {
		t.Errorf("status lacks %q:\n%s", want, out.String())
	}
	err := statusProblem(st)
	if err == nil || err.Error() != "stage production: the hosts' copies of shared .env differ" {
		t.Errorf("status problem: %v", err)
	}
}

// TestSharedHelpListsExitCodes: the EXIT STATUS of each subcommand (the
// parent's is checked with every command's in exit_test.go).
func TestSharedHelpListsExitCodes(t *testing.T) {
	interrupted := []int{ExitHangup, ExitInterrupted, ExitOutputClosed, ExitTerminated}
	for sub, codes := range map[string][]int{
		"push": append([]int{ExitOK, ExitFailed, ExitUsage, ExitLocked, ExitUnreachable}, interrupted...),
		"diff": append([]int{ExitOK, ExitFailed, ExitUsage, ExitUnreachable}, interrupted...),
		"pull": append([]int{ExitOK, ExitFailed, ExitUsage, ExitUnreachable}, interrupted...),
	} {
		var out bytes.Buffer
		if code := Main(context.Background(), []string{"shared", sub, "--help"}, IO{In: strings.NewReader(""), Out: &out, Err: io.Discard}); code != ExitOK {
			t.Fatalf("shared %s --help: exit %d", sub, code)
		}
		_, section, _ := strings.Cut(out.String(), "\nEXIT STATUS\n")
		section, _, _ = strings.Cut(section, "\n\n")
		var listed []int
		for _, line := range strings.Split(section, "\n") {
			number, _, _ := strings.Cut(strings.TrimSpace(line), " ")
			code, _ := strconv.Atoi(number)
			listed = append(listed, code)
		}
		if !slices.Equal(listed, codes) {
			t.Errorf("shared %s --help lists %v, want %v", sub, listed, codes)
		}
	}
}
