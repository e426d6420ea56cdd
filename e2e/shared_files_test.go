package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-deploy/slipway/internal/testutil"
)

// slipway shared push, diff, pull and status's shared drift, on a fleet of
// real sshd hosts.

// Secrets the tests put in shared files: no output may ever show them.
var sharedSecrets = []string{"hunter2", "hunter3", "s3cr3tvalue"}

const sharedYAML = `shared:
  dirs: [storage]
  files: [.env]
env:
  MAIL_PASS: {value: s3cr3tvalue, secret: true}
hooks:
  after_shared_push:
    - echo "$SLIPWAY_SHARED_FILE on $SLIPWAY_HOST in $PWD" >> ../../pushed.log
`

// noSecrets fails the test if res shows a secret.
func noSecrets(t *testing.T, what string, res result) {
	t.Helper()
	for _, s := range sharedSecrets {
		if strings.Contains(res.stdout+res.stderr, s) {
			t.Errorf("%s shows the secret %q:\n%s", what, s, res)
		}
	}
}

func sumOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestSharedPushDiffPullHistoryAndDrift(t *testing.T) {
	p := newProject(t, 3, testutil.Options{})
	p.config(sharedYAML)
	p.putShared(".env", "APP_ENV=production\nDB_PASSWORD=hunter2\n")
	p.mustRun("deploy", "production")
	release := p.fleetLive()

	// The first push: the diff against every host's copy, identical hosts
	// grouped, secrets masked; then the file on every host.
	env := "APP_ENV=production\nDB_HOST=db2\nDB_PASSWORD=hunter3\nSMTP=s3cr3tvalue\n"
	p.write("env.production", env)
	res := p.mustRun("shared", "push", "production", "env.production", "--as", ".env", "--yes")
	noSecrets(t, "push", res)
	for _, want := range []string{
		"--- host1, host2, host3: /srv/app/shared/.env\n+++ env.production\n@@ -1,2 +1,4 @@\n APP_ENV=production\n-DB_PASSWORD=***\n+DB_HOST=db2\n+DB_PASSWORD=***\n+SMTP=***\n",
		".env: differs from env.production on all 3 hosts\n",
	} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("push output lacks %q:\n%s", want, res)
		}
	}
	if !strings.Contains(res.stderr, ".env: pushed env.production to host1, host2 and host3; the copies it replaced are kept in /srv/app/shared/.slipway/history/.env") {
		t.Errorf("push summary:\n%s", res.stderr)
	}
	for _, h := range p.fleet.Hosts {
		file := h.Path(deployTo + "/shared/.env")
		if got := readFile(t, file); got != env {
			t.Errorf("%s: .env = %q", h.Name, got)
		}
		if info, err := os.Stat(file); err != nil || info.Mode().Perm() != 0o640 {
			t.Errorf("%s: .env mode %v %v", h.Name, info, err)
		}
		// The live release reads it through its link.
		if got := readFile(t, h.Path(deployTo+"/current/.env")); got != env {
			t.Errorf("%s: current/.env = %q", h.Name, got)
		}
		if got := readFile(t, h.Path(deployTo+"/pushed.log")); got != ".env on "+h.Name+" in "+deployTo+"/releases/"+release+"\n" {
			t.Errorf("%s: after_shared_push ran as %q", h.Name, got)
		}
	}

	// diff: the same everywhere, exit 0.
	res = p.mustRun("shared", "diff", "production", ".env", "--file", "env.production")
	noSecrets(t, "diff", res)
	if !strings.Contains(res.stdout, ".env: /srv/app/shared/.env on all 3 hosts is the same as env.production") {
		t.Errorf("diff of the same file:\n%s", res)
	}

	// A host's copy edited by hand: status reports the drift (exit 1),
	// diff shows that host alone (exit 1).
	p.fleet.Hosts[1].Run(t, "echo 'DB_PASSWORD=hunter2' >> "+deployTo+"/shared/.env")
	res = p.expectCode(1, "status", "production")
	noSecrets(t, "status", res)
	good, edited := sumOf([]byte(env)), sumOf([]byte(env+"DB_PASSWORD=hunter2\n"))
	if want := "shared file .env differs between hosts: host1, host3 have " + good[:12] + "; host2 has " + edited[:12] + "\n"; !strings.Contains(res.stdout, want) {
		t.Errorf("status lacks %q:\n%s", want, res)
	}
	if !strings.Contains(res.stderr, "the hosts' copies of shared .env differ") {
		t.Errorf("status error:\n%s", res.stderr)
	}
	res = p.expectCode(1, "status", "production", "--json")
	var st struct {
		OK          bool `json:"ok"`
		SharedDrift []struct {
			Name   string `json:"name"`
			Copies []struct {
				Sum   string   `json:"sha256"`
				Hosts []string `json:"hosts"`
			} `json:"copies"`
		} `json:"shared_drift"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &st); err != nil || st.OK || len(st.SharedDrift) != 1 || st.SharedDrift[0].Copies[1].Sum != edited || !slices.Equal(st.SharedDrift[0].Copies[1].Hosts, []string{"host2"}) {
		t.Errorf("status --json: %v %+v\n%s", err, st, res.stdout)
	}
	res = p.expectCode(1, "shared", "diff", "production", ".env", "--file", "env.production")
	noSecrets(t, "diff", res)
	for _, want := range []string{
		"--- host2: /srv/app/shared/.env\n+++ env.production\n@@ -2,4 +2,3 @@\n DB_HOST=db2\n DB_PASSWORD=***\n SMTP=***\n-DB_PASSWORD=***\n",
		".env: 1 of 3 hosts differ from env.production; host1 and host3 have the same\n",
	} {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("diff lacks %q:\n%s", want, res)
		}
	}

	// pull: host2's copy by hand, 0600, never over a file without --force.
	res = p.mustRun("shared", "pull", "production", ".env", "--host", "host2", "-o", "from-host2.env")
	noSecrets(t, "pull", res)
	if got := readFile(t, filepath.Join(p.dir, "from-host2.env")); got != env+"DB_PASSWORD=hunter2\n" {
		t.Errorf("pulled %q", got)
	}
	if info, _ := os.Stat(filepath.Join(p.dir, "from-host2.env")); info.Mode().Perm() != 0o600 {
		t.Errorf("pulled file mode %v", info.Mode())
	}
	p.expectCode(2, "shared", "pull", "production", ".env", "-o", "from-host2.env")

	// Eleven more pushes: each host keeps the ten newest copies replaced;
	// pushing brings host2 back in line.
	for i := 1; i <= 11; i++ {
		p.write("env.production", fmt.Sprintf("APP_ENV=production\nVERSION=%d\nDB_PASSWORD=hunter3\n", i))
		res := p.mustRun("shared", "push", "production", "env.production", "--as", ".env", "--yes")
		noSecrets(t, "push", res)
	}
	p.mustRun("status", "production")
	for _, h := range p.fleet.Hosts {
		dir := h.Path(deployTo + "/shared/.slipway/history/.env")
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var kept []string
		for _, e := range entries {
			body := readFile(t, filepath.Join(dir, e.Name()))
			version := "first"
			if _, v, ok := strings.Cut(body, "VERSION="); ok {
				version, _, _ = strings.Cut(v, "\n")
			}
			kept = append(kept, version)
		}
		// Replaced: the deploy's copy, the first push's (host2's edit),
		// then versions 1 to 10; the oldest two are gone.
		if want := []string{"1", "2", "3", "4", "5", "6", "7", "8", "9", "10"}; !slices.Equal(kept, want) {
			t.Errorf("%s: history keeps %v, want %v", h.Name, kept, want)
		}
		if got := readFile(t, h.Path(deployTo+"/shared/.env")); !strings.Contains(got, "VERSION=11\n") {
			t.Errorf("%s: .env = %q", h.Name, got)
		}
	}
}

// TestSharedPushKilledLeavesEveryFileWhole SIGKILLs slipway in the middle
// of pushes of a large file, one host at a time: while the first host
// receives it, after the first host has it (before any rename), and after
// the first host's rename. Every host must then hold the old file or the
// new one, whole; the next push must take over the dead run's lock, clean
// up its temporary copies and bring every host to the new file.
func TestSharedPushKilledLeavesEveryFileWhole(t *testing.T) {
	p := newProject(t, 3, testutil.Options{})
	p.config("shared:\n  files: [big.env]\n")
	// Large enough that the first host takes a while to receive it.
	rng := rand.NewChaCha8([32]byte{7})
	content := func() []byte {
		b := make([]byte, 32<<20)
		_, _ = rng.Read(b)
		return b
	}
	versions := map[string]string{} // checksum -> version
	push := func(version string, body []byte) {
		if err := os.WriteFile(filepath.Join(p.dir, "big.env"), body, 0o600); err != nil {
			t.Fatal(err)
		}
		versions[sumOf(body)] = version
	}
	push("v0", content())
	p.mustRun("shared", "push", "production", "big.env", "--yes")

	hostSum := func(h *testutil.Host) string {
		b, err := os.ReadFile(h.Path(deployTo + "/shared/big.env"))
		if err != nil {
			t.Fatalf("%s: %v", h.Name, err)
		}
		return sumOf(b)
	}
	temps := func(h *testutil.Host) []string {
		found, _ := filepath.Glob(h.Path(deployTo + "/shared/.big.env.slipway-push-*"))
		return found
	}
	for i, kill := range []struct {
		point string
		// when reports whether to kill now, given the line slipway just
		// printed on stderr ("" while polling).
		when func(line string) bool
		// want is the version each host must hold after the kill; "" for
		// either.
		want []string
	}{
		{"while host1 receives the file", func(string) bool {
			for _, f := range temps(p.fleet.Hosts[0]) {
				if info, err := os.Stat(f); err == nil && info.Size() > 0 {
					return true
				}
			}
			return false
		}, []string{"old", "old", "old"}},
		{"after host1 received it", func(line string) bool {
			return strings.HasPrefix(line, "host1  upload ") && strings.Contains(line, " ok ")
		}, []string{"old", "old", "old"}},
		{"after host1 replaced it", func(line string) bool {
			return strings.HasPrefix(line, "host1  replace ") && strings.Contains(line, " ok ")
		}, []string{"new", "", ""}},
	} {
		var before []string
		for _, h := range p.fleet.Hosts {
			before = append(before, hostSum(h))
		}
		version := fmt.Sprintf("v%d", i+1)
		push(version, content())
		new := sumOf(mustRead(t, filepath.Join(p.dir, "big.env")))
		stderr, killed := p.runKilled(kill.when, "shared", "push", "production", "big.env", "--yes", "--parallel", "1")
		if !killed {
			t.Fatalf("kill %s: slipway ended before the kill point:\n%s", kill.point, stderr)
		}
		for _, h := range p.fleet.Hosts {
			waitFor(t, time.Minute, h.Name+": no connection served", func() bool { return len(h.Processes(t)) == 0 })
		}
		for j, h := range p.fleet.Hosts {
			got, old := hostSum(h), before[j]
			switch {
			case got != old && got != new:
				t.Errorf("kill %s: %s holds neither the old file nor the new one, whole (%s)", kill.point, h.Name, versions[got])
			case kill.want[j] == "old" && got != old, kill.want[j] == "new" && got != new:
				t.Errorf("kill %s: %s holds %s, want the %s file", kill.point, h.Name, versions[got], kill.want[j])
			}
		}
		t.Logf("killed %s: hosts hold %s, %s, %s", kill.point, versions[hostSum(p.fleet.Hosts[0])], versions[hostSum(p.fleet.Hosts[1])], versions[hostSum(p.fleet.Hosts[2])])
	}
	// The next push takes over the lock, removes the leftovers, and
	// brings every host to the newest file.
	res := p.mustRun("shared", "push", "production", "big.env", "--yes")
	if !strings.Contains(res.stderr, "taking over the lock") {
		t.Errorf("the dead run's lock was not taken over:\n%s", res.stderr)
	}
	want := sumOf(mustRead(t, filepath.Join(p.dir, "big.env")))
	for _, h := range p.fleet.Hosts {
		if got := hostSum(h); got != want {
			t.Errorf("%s: holds %s after the last push", h.Name, versions[got])
		}
		if left := temps(h); len(left) > 0 {
			t.Errorf("%s: temporary copies left: %v", h.Name, left)
		}
	}
}

// runKilled runs slipway and SIGKILLs it once when holds, asked with each
// line slipway prints on stderr and every millisecond in between. It
// returns what slipway printed, and whether it was killed.
func (p *project) runKilled(when func(line string) bool, args ...string) (string, bool) {
	p.t.Helper()
	cmd := exec.Command(p.bin, args...)
	cmd.Dir = p.dir
	cmd.Env = append(p.fleet.Env(), p.env...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		p.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var out bytes.Buffer
	killed := false
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for done := false; !done; {
		line := ""
		select {
		case l, ok := <-lines:
			if !ok {
				done = true
				continue
			}
			line = l
			out.WriteString(l + "\n")
		case <-tick.C:
		}
		if !killed && when(line) {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			killed = true
		}
	}
	_ = cmd.Wait()
	return out.String(), killed
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSharedPushWaitsForNoDeploy: a push while a deploy holds the lock is
// refused (exit 3), naming the deploy, and changes nothing.
func TestSharedPushRefusedWhileADeployHoldsTheLock(t *testing.T) {
	p := newProject(t, 3, testutil.Options{})
	p.config("shared:\n  files: [.env]\nhooks:\n  before_switch:\n    - sleep 4\n")
	p.putShared(".env", "APP_ENV=production")
	deploy := exec.Command(p.bin, "deploy", "production")
	deploy.Dir, deploy.Env = p.dir, p.fleet.Env()
	var deployOut bytes.Buffer
	deploy.Stdout, deploy.Stderr = &deployOut, &deployOut
	if err := deploy.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if deploy.ProcessState == nil {
			_ = deploy.Process.Kill()
			_ = deploy.Wait()
		}
	})
	for _, h := range p.fleet.Hosts {
		waitFor(t, 30*time.Second, h.Name+": the deploy holds the lock", func() bool {
			_, err := os.Stat(h.Path(deployTo + "/.slipway/lock/owner.json"))
			return err == nil
		})
	}
	p.write("env.production", "APP_ENV=staging\nDB_PASSWORD=hunter2\n")
	res := p.expectCode(3, "shared", "push", "production", "env.production", "--as", ".env", "--yes")
	noSecrets(t, "refused push", res)
	if !strings.Contains(res.stderr, "locked by") || !strings.Contains(res.stderr, `"deploy production"`) {
		t.Errorf("the refusal does not name the deploy:\n%s", res.stderr)
	}
	if err := deploy.Wait(); err != nil {
		t.Fatalf("the deploy failed: %v\n%s", err, deployOut.String())
	}
	for _, h := range p.fleet.Hosts {
		if got := readFile(t, h.Path(deployTo+"/shared/.env")); got != "APP_ENV=production" {
			t.Errorf("%s: .env = %q", h.Name, got)
		}
	}
	// Once the deploy is done, the push goes through.
	p.mustRun("shared", "push", "production", "env.production", "--as", ".env", "--yes")
}
