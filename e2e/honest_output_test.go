package e2e

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/slipway-deploy/slipway/internal/testutil"
)

// closedPort is a port of 127.0.0.1 nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// asRoot runs a command on this machine as root, as an administrator of
// the hosts would with sudo.
func asRoot(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// TestCheckShowsAnUnreachableHostAsUnreachable: a host on a closed port
// next to a real one is shown unreachable, with nothing measured, and
// check fails with exit 4; the real host is checked in full.
func TestCheckShowsAnUnreachableHostAsUnreachable(t *testing.T) {
	p := newProject(t, 1, testutil.Options{})
	p.config("")
	p.mustRun("setup", "production")
	down := "127.0.0.1:" + strconv.Itoa(closedPort(t))
	p.write("slipway.yml", strings.Replace(readFile(t, filepath.Join(p.dir, "slipway.yml")), "      - host1\n", "      - host1\n      - "+down+"\n", 1))

	res := p.expectCode(4, "check", "production")
	if row := statusRow(t, res, down); strings.Join(row[1:], " ") != "- - - - - - unreachable" {
		t.Errorf("the unreachable host's row is %q, want nothing measured and unreachable:\n%s", row, res)
	}
	if row := statusRow(t, res, "host1"); row[1] != p.fleet.User || row[4] == "-" || row[6] != "sftp" || row[7] != "free" || row[8] != "ok" {
		t.Errorf("host1's row is %q, want its user, free space, lock and ok:\n%s", row, res)
	}
	if !strings.Contains(res.stdout, "\n"+down+" unreachable: ") || !strings.Contains(res.stdout, "refused") {
		t.Errorf("the output does not say why the host is unreachable:\n%s", res)
	}
	if !strings.Contains(res.stderr, "check production: 1 host unreachable") {
		t.Errorf("the error line does not count the unreachable host:\n%s", res)
	}
}

// TestCheckBeforeSetupListsEveryProblemWithItsFix: a fresh host, and a
// configuration with writable.mode acl and a shared file: check lists the
// missing deploy directory, setfacl (when this machine, whose /usr the
// hosts share, lacks it) and the shared file, each with its fix, and
// fails; setup then names setfacl, not write access; once all is fixed,
// check passes.
func TestCheckBeforeSetupListsEveryProblemWithItsFix(t *testing.T) {
	p := newProject(t, 1, testutil.Options{})
	acl := "writable:\n  dirs: [storage/cache]\n  mode: acl\n  user: nobody\n"
	p.config("shared:\n  dirs: [storage]\n  files: [.env]\n" + acl)
	_, err := exec.LookPath("setfacl")
	noSetfacl := err != nil

	res := p.expectCode(1, "check", "production")
	want := []string{
		"host1: /srv/app does not exist yet, and setup prepares the writable directories inside shared ones, which a deploy never changes\n  fix: slipway setup production\n",
		"host1: shared file /srv/app/shared/.env does not exist (every release links it)\n  fix: slipway setup production (which creates its directory), then copy it there: scp FILE host1:/srv/app/shared/.env\n",
	}
	setfacl := "host1: setfacl is not installed (writable.mode: acl runs it)\n  fix: apt-get install acl (Debian/Ubuntu), apk add acl (Alpine), dnf install acl (RHEL); or set writable.mode: group\n"
	if noSetfacl {
		want = append(want, setfacl)
	} else if strings.Contains(res.stdout, "setfacl") {
		t.Errorf("setfacl is installed, but check says it is not:\n%s", res)
	}
	for _, w := range want {
		if !strings.Contains(res.stdout, w) {
			t.Errorf("check's output lacks\n%s\n%s", w, res)
		}
	}
	if row := statusRow(t, res, "host1"); row[1] != p.fleet.User || row[8] != strconv.Itoa(len(want)) || row[9] != "problems" {
		t.Errorf("host1's row is %q, want the deploy user and %d problems:\n%s", row, len(want), res)
	}
	if !strings.Contains(res.stderr, "check production: "+strconv.Itoa(len(want))+" problems on 1 host (listed above)") {
		t.Errorf("the error line does not count the problems:\n%s", res)
	}

	if noSetfacl {
		res = p.expectCode(1, "setup", "production")
		if !strings.Contains(res.stderr, "setfacl is not installed") || !strings.Contains(res.stderr, "apt-get install acl") {
			t.Errorf("setup does not say setfacl is missing:\n%s", res)
		}
		if strings.Contains(res.stderr, "write access") || strings.Contains(res.stderr, "chown") || strings.Contains(res.stderr, "umask") {
			t.Errorf("setup blames write access, or shows its script:\n%s", res)
		}
		p.config("shared:\n  dirs: [storage]\n  files: [.env]\nwritable:\n  dirs: [storage/cache]\n  mode: group\n")
	}
	p.mustRun("setup", "production")
	p.putShared(".env", "APP_KEY=1")
	res = p.mustRun("check", "production")
	if row := statusRow(t, res, "host1"); row[8] != "ok" {
		t.Errorf("after setup and the shared file, host1's row is %q:\n%s", row, res)
	}
}

// TestDeployIntoDirectoriesTheUserCannotWrite: the releases directory was
// made by root (sudo mkdir), so the lock works and creating the release
// does not. The error names the directory, the deploy user and the fix
// check gives, not slipway's script; -v shows the script. Then a
// deploy_to whose parent the user may not write: check gives the exact
// sudo commands.
func TestDeployIntoDirectoriesTheUserCannotWrite(t *testing.T) {
	p := newProject(t, 1, testutil.Options{})
	p.config("")
	h := p.fleet.Hosts[0]
	for _, dir := range []string{deployTo, deployTo + "/releases"} {
		if err := os.MkdirAll(h.Path(dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	asRoot(t, "chown", p.fleet.User, h.Path(deployTo))
	user := p.fleet.User
	fix := "fix: on the host: sudo chown " + user + " /srv/app/releases"

	res := p.expectCode(1, "deploy", "production")
	for _, want := range []string{"/srv/app/releases is not writable by " + user, fix, "Permission denied"} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("deploy's error lacks %q:\n%s", want, res)
		}
	}
	if strings.Contains(res.stderr, "umask") || strings.Contains(res.stderr, "mkdir --") {
		t.Errorf("deploy's error shows slipway's script:\n%s", res)
	}
	if res := p.expectCode(1, "deploy", "production", "-v"); !strings.Contains(res.stderr, "umask 022") {
		t.Errorf("-v does not show the script:\n%s", res)
	}
	res = p.expectCode(1, "check", "production")
	if !strings.Contains(res.stdout, "host1: /srv/app/releases is not writable by "+user+"\n  "+fix+"\n") {
		t.Errorf("check does not give the same fix:\n%s", res)
	}
	asRoot(t, "chown", user, h.Path(deployTo+"/releases"))
	p.mustRun("deploy", "production")

	asRoot(t, "mkdir", "-p", h.Path("/srv/locked"))
	p.write("slipway.yml", strings.Replace(readFile(t, filepath.Join(p.dir, "slipway.yml")), "deploy_to: /srv/app", "deploy_to: /srv/locked/app", 1))
	res = p.expectCode(1, "check", "production")
	want := "host1: /srv/locked/app does not exist, and " + user + " may not create it: /srv/locked is not writable\n" +
		"  fix: on the host: sudo mkdir -p /srv/locked/app && sudo chown " + user + " /srv/locked/app; then: slipway setup production\n"
	if !strings.Contains(res.stdout, want) {
		t.Errorf("check's output lacks\n%s\n%s", want, res)
	}
	res = p.expectCode(1, "setup", "production")
	if !strings.Contains(res.stderr, "sudo mkdir -p /srv/locked/app && sudo chown "+user+" /srv/locked/app") {
		t.Errorf("setup's error does not give check's fix:\n%s", res)
	}
}

// TestGitFetchRefusedForDubiousOwnership: strategy git from a repository
// another user owns: git on the host refuses it, and the advice is
// safe.directory, not a deploy key. Following it makes the deploy work.
func TestGitFetchRefusedForDubiousOwnership(t *testing.T) {
	p, r := newGitProject(t, 1)
	p.config("  strategy: git\n  repo: " + r.bare + "\n  subdir: app\n")
	p.write("slipway.yml", strings.Replace(readFile(t, filepath.Join(p.dir, "slipway.yml")), "  path: app\n", "", 1))
	asRoot(t, "chown", "-R", "root", r.bare)

	res := p.expectCode(1, "deploy", "production")
	if !strings.Contains(res.stderr, "dubious ownership") || !strings.Contains(res.stderr, "git config --global --add safe.directory "+r.bare) {
		t.Errorf("the advice is not safe.directory:\n%s", res)
	}
	if strings.Contains(res.stderr, "deploy key") || strings.Contains(res.stderr, "forward_agent") {
		t.Errorf("deploy-key advice for a refused owner:\n%s", res)
	}
	p.fleet.Hosts[0].Run(t, "git config --global --add safe.directory "+r.bare)
	p.mustRun("deploy", "production")
	if got, want := revisionOn(t, p.fleet.Hosts[0]), git(t, p.dir, "rev-parse", "HEAD"); got != want {
		t.Errorf("REVISION = %s, want %s", got, want)
	}
}
