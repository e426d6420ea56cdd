package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slipway-deploy/slipway/internal/testutil"
)

func TestFirstDeployAndRedeploy(t *testing.T) {
	p := newProject(t, 3, testutil.Options{})
	p.config("shared:\n  dirs: [storage]\n  files: [.env]\n")
	p.putShared(".env", "APP_KEY=secret")

	p.mustRun("deploy", "production")
	first := p.fleetLive()
	if first == "" {
		t.Fatal("nothing live after the first deploy")
	}
	for _, h := range p.fleet.Hosts {
		cur := h.Path(deployTo + "/current")
		target, _ := os.Readlink(cur)
		if target != "releases/"+first {
			t.Errorf("%s: current -> %q, want the relative link releases/%s", h.Name, target, first)
		}
		if got := readFile(t, cur+"/VERSION"); got != "v1\n" {
			t.Errorf("%s: VERSION = %q", h.Name, got)
		}
		if _, err := os.Stat(cur + "/tests"); !os.IsNotExist(err) {
			t.Errorf("%s: excluded tests/ shipped", h.Name)
		}
		if info, err := os.Stat(cur + "/bin/console"); err != nil || info.Mode().Perm() != 0o755 {
			t.Errorf("%s: bin/console mode not kept: %v %v", h.Name, info, err)
		}
		if got := readFile(t, cur+"/.env"); got != "APP_KEY=secret" {
			t.Errorf("%s: .env through the shared link = %q", h.Name, got)
		}
		if link, _ := os.Readlink(cur + "/storage"); link != "../../shared/storage" {
			t.Errorf("%s: storage link = %q", h.Name, link)
		}
		// The shared dir was seeded from the first release.
		if _, err := os.Stat(h.Path(deployTo + "/shared/storage/logs/.gitkeep")); err != nil {
			t.Errorf("%s: shared storage not seeded: %v", h.Name, err)
		}
		log := readFile(t, h.Path(deployTo+"/revisions.log"))
		if !regexp.MustCompile(`^Branch - \(at sha256:[0-9a-f]{64}\) deployed as release ` + first + ` by \S+\n$`).MatchString(log) {
			t.Errorf("%s: revisions.log = %q", h.Name, log)
		}
		var meta map[string]any
		if err := json.Unmarshal([]byte(readFile(t, h.Path(deployTo+"/.slipway/releases/"+first+".json"))), &meta); err != nil || meta["state"] != "deployed" {
			t.Errorf("%s: metadata %v %v", h.Name, meta, err)
		}
		if _, err := os.Stat(h.Path(deployTo + "/.slipway/lock")); !os.IsNotExist(err) {
			t.Errorf("%s: lock left behind", h.Name)
		}
	}

	// Nothing slipway creates is world-writable, even from a world-writable
	// source file or directory.
	p.writeApp("v2")
	p.write("app/open/file.txt", "open")
	for path, mode := range map[string]os.FileMode{"app/open/file.txt": 0o666, "app/open": 0o777} {
		if err := os.Chmod(filepath.Join(p.dir, path), mode); err != nil {
			t.Fatal(err)
		}
	}
	p.mustRun("deploy", "production")
	for _, h := range p.fleet.Hosts {
		filepath.WalkDir(h.Path(deployTo), func(path string, d os.DirEntry, err error) error {
			if err != nil || d.Type()&os.ModeSymlink != 0 {
				return nil
			}
			if info, _ := d.Info(); info != nil && info.Mode().Perm()&0o002 != 0 {
				t.Errorf("%s: %s is world-writable (%v)", h.Name, path, info.Mode())
			}
			return nil
		})
	}
	second := p.fleetLive()
	if second <= first {
		t.Fatalf("second release %s is not newer than %s", second, first)
	}
	for _, h := range p.fleet.Hosts {
		if got := readFile(t, h.Path(deployTo+"/current/VERSION")); got != "v2\n" {
			t.Errorf("%s: VERSION after redeploy = %q", h.Name, got)
		}
		if rs := releases(t, h); !slices.Equal(rs, []string{first, second}) {
			t.Errorf("%s: releases = %v", h.Name, rs)
		}
	}
}

func TestSharedDataPersistsAcrossReleases(t *testing.T) {
	p := newProject(t, 3, testutil.Options{})
	p.config("shared:\n  dirs: [storage, public/uploads]\n")
	p.mustRun("deploy", "production")
	for _, h := range p.fleet.Hosts {
		h.Run(t, "echo kept-"+h.Name+" > "+deployTo+"/current/public/uploads/avatar.png && echo log > "+deployTo+"/current/storage/logs/app.log")
	}
	p.writeApp("v2")
	p.write("app/public/uploads/avatar.png", "shipped copy must not replace shared data")
	p.mustRun("deploy", "production")
	p.writeApp("v3")
	p.mustRun("deploy", "production")
	for _, h := range p.fleet.Hosts {
		if got := readFile(t, h.Path(deployTo+"/current/public/uploads/avatar.png")); got != "kept-"+h.Name+"\n" {
			t.Errorf("%s: shared upload = %q", h.Name, got)
		}
		if got := readFile(t, h.Path(deployTo+"/current/storage/logs/app.log")); got != "log\n" {
			t.Errorf("%s: shared log = %q", h.Name, got)
		}
	}
}

func TestRollbackAndRollbackTo(t *testing.T) {
	p := newProject(t, 3, testutil.Options{})
	p.config("hooks:\n  after_rollback:\n    - echo \"$SLIPWAY_RELEASE_ID\" > ../../rolled-back-to\n")
	var ids []string
	for _, v := range []string{"v1", "v2", "v3"} {
		p.writeApp(v)
		p.mustRun("deploy", "production")
		ids = append(ids, p.fleetLive())
	}
	p.mustRun("rollback", "production")
	if got := p.fleetLive(); got != ids[1] {
		t.Fatalf("after rollback live = %s, want %s", got, ids[1])
	}
	for _, h := range p.fleet.Hosts {
		if got := readFile(t, h.Path(deployTo+"/current/VERSION")); got != "v2\n" {
			t.Errorf("%s: VERSION after rollback = %q", h.Name, got)
		}
		if got := readFile(t, h.Path(deployTo+"/rolled-back-to")); got != ids[1]+"\n" {
			t.Errorf("%s: after_rollback hook saw %q", h.Name, got)
		}
		// The release rolled back from is kept, and marked.
		meta := readFile(t, h.Path(deployTo+"/.slipway/releases/"+ids[2]+".json"))
		if !strings.Contains(meta, `"state":"rolled_back"`) {
			t.Errorf("%s: rolled-back-from metadata = %s", h.Name, meta)
		}
		log := readFile(t, h.Path(deployTo+"/revisions.log"))
		if !regexp.MustCompile(`\S+ rolled back to release ` + ids[1] + `\n$`).MatchString(log) {
			t.Errorf("%s: revisions.log = %q", h.Name, log)
		}
	}
	res := p.mustRun("releases", "production")
	if !regexp.MustCompile(ids[2] + `\s+rolled back`).MatchString(res.stdout) {
		t.Errorf("releases does not show the rolled-back release:\n%s", res.stdout)
	}

	p.mustRun("rollback", "production", "--to", ids[2])
	if got := p.fleetLive(); got != ids[2] {
		t.Fatalf("after rollback --to live = %s, want %s", got, ids[2])
	}
	res = p.expectCode(1, "rollback", "production", "--to", "20000101000000")
	if !strings.Contains(res.stderr, "does not exist") {
		t.Errorf("rollback to a missing release: %s", res)
	}
	p.expectCode(2, "rollback", "production", "--to", "not-an-id")
}

func TestFailureOnOneHostLeavesEveryHostOnItsPreviousRelease(t *testing.T) {
	p := newProject(t, 3, testutil.Options{})
	p.config("")
	p.mustRun("deploy", "production")
	before := p.fleetLive()

	p.writeApp("v2")
	p.config("hooks:\n  before_switch:\n    - echo preparing on $SLIPWAY_HOST\n    - 'if [ \"$SLIPWAY_HOST\" = host2 ]; then echo disk on fire >&2; exit 3; fi'\n")
	res := p.expectCode(1, "deploy", "production")
	for _, want := range []string{"host2", "before_switch", "disk on fire", "no host was switched"} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("error output lacks %q:\n%s", want, res.stderr)
		}
	}
	for _, h := range p.fleet.Hosts {
		if got := live(t, h); got != before {
			t.Errorf("%s: live = %s, want the previous %s", h.Name, got, before)
		}
		if rs := releases(t, h); !slices.Equal(rs, []string{before}) {
			t.Errorf("%s: releases = %v, want only %s (the new one removed)", h.Name, rs, before)
		}
		if _, err := os.Stat(h.Path(deployTo + "/.slipway/lock")); !os.IsNotExist(err) {
			t.Errorf("%s: lock left behind after a failed deploy", h.Name)
		}
	}
	// History records the failure.
	res = p.mustRun("releases", "production", "--json")
	if !strings.Contains(res.stdout, `"state": "failed (removed)"`) {
		t.Errorf("releases --json does not show the failed release:\n%s", res.stdout)
	}
}

func TestConcurrentDeployIsRefusedAndUnlock(t *testing.T) {
	p := newProject(t, 3, testutil.Options{})
	gate := "/srv/gate"
	p.config("hooks:\n  before_switch:\n    - 'while [ ! -e " + gate + " ]; do sleep 0.1; done'\n")
	first := make(chan result)
	go func() { first <- p.run("deploy", "production") }()
	waitFor(t, time.Minute, "every host locked by the first run", func() bool {
		for _, h := range p.fleet.Hosts {
			if _, err := os.Stat(h.Path(deployTo + "/.slipway/lock/owner.json")); err != nil {
				return false
			}
		}
		return true
	})
	second := p.expectCode(3, "deploy", "production")
	if !strings.Contains(second.stderr, "locked by") || !strings.Contains(second.stderr, "deploy production") {
		t.Errorf("refusal does not name the holder:\n%s", second.stderr)
	}
	for _, h := range p.fleet.Hosts {
		h.Run(t, "touch "+gate)
	}
	if res := <-first; res.code != 0 {
		t.Fatalf("first deploy failed:\n%s", res)
	}
	p.fleetLive()

	// A lock left by a run that died: refused until unlocked.
	h := p.fleet.Hosts[1]
	h.Run(t, "mkdir -p "+deployTo+"/.slipway/lock && echo '{\"user\":\"ghost\",\"machine\":\"ci-7\",\"pid\":4242,\"command\":\"deploy production\"}' > "+deployTo+"/.slipway/lock/owner.json")
	res := p.expectCode(3, "deploy", "production")
	if !strings.Contains(res.stderr, "ghost@ci-7") {
		t.Errorf("refusal does not name the stale holder:\n%s", res.stderr)
	}
	// ghost may still be deploying from ci-7: unlock refuses without --force.
	res = p.expectCode(3, "unlock", "production")
	if !strings.Contains(res.stderr, "ghost@ci-7") || !strings.Contains(res.stderr, "--force") {
		t.Errorf("unlock of a live lock does not name its holder and --force:\n%s", res.stderr)
	}
	res = p.mustRun("unlock", "production", "--force")
	if !strings.Contains(res.stderr, "ghost@ci-7") {
		t.Errorf("unlock does not say whose lock it removed:\n%s", res.stderr)
	}
	p.mustRun("deploy", "production")
}

func TestCleanupKeepsNAndNeverTheLiveOne(t *testing.T) {
	// Each host has a PID namespace of its own, as a real server has: one
	// host's rm -rf of releases/X (its open directory fds) is not a
	// process using X on another host, so all hosts clean up at once.
	p := newProject(t, 3, testutil.Options{})
	p.config("keep_releases: 2\n")
	var ids []string
	for i := 0; i < 4; i++ {
		p.writeApp(fmt.Sprintf("v%d", i))
		p.mustRun("deploy", "production")
		ids = append(ids, p.fleetLive())
	}
	for _, h := range p.fleet.Hosts {
		if rs := releases(t, h); !slices.Equal(rs, ids[2:]) {
			t.Errorf("%s: releases after 4 deploys with keep 2 = %v, want %v", h.Name, rs, ids[2:])
		}
	}
	// Roll back to the oldest kept release: now the live one is the oldest.
	// A further cleanup keeps it and the release rolled back from.
	p.mustRun("rollback", "production")
	p.mustRun("cleanup", "production")
	for _, h := range p.fleet.Hosts {
		if got := live(t, h); got != ids[2] {
			t.Errorf("%s: live = %s", h.Name, got)
		}
		if rs := releases(t, h); !slices.Contains(rs, ids[2]) {
			t.Errorf("%s: cleanup deleted the live release: %v", h.Name, rs)
		}
	}
	// A directory slipway did not create is never touched.
	h := p.fleet.Hosts[0]
	h.Run(t, "mkdir -p "+deployTo+"/releases/20000101000000 && touch "+deployTo+"/releases/20000101000000/keep-me")
	for i := 0; i < 3; i++ {
		p.mustRun("deploy", "production", "--force")
	}
	if _, err := os.Stat(h.Path(deployTo + "/releases/20000101000000/keep-me")); err != nil {
		t.Errorf("cleanup deleted a release slipway did not create: %v", err)
	}
}

func TestHostKeys(t *testing.T) {
	p := newProject(t, 3, testutil.Options{NoKnownHosts: true})
	p.config("")
	res := p.expectCode(4, "deploy", "production")
	for _, want := range []string{"unknown host key", "SHA256:", "--accept-new-host-keys"} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("unknown-key refusal lacks %q:\n%s", want, res.stderr)
		}
	}
	for _, h := range p.fleet.Hosts {
		if rs := releases(t, h); len(rs) != 0 {
			t.Errorf("%s: a release was made despite the refused key: %v", h.Name, rs)
		}
	}
	p.mustRun("deploy", "production", "--accept-new-host-keys")
	known := readFile(t, filepath.Join(p.fleet.Home, ".ssh", "known_hosts"))
	for _, h := range p.fleet.Hosts {
		if !strings.Contains(known, h.KnownHostsLine()[strings.Index(h.KnownHostsLine(), " ")+1:]) {
			t.Errorf("%s's key was not recorded in known_hosts", h.Name)
		}
	}
	p.mustRun("deploy", "production") // recorded: no flag needed any more

	changed := p.fleet.Hosts[1]
	before := p.fleetLive()
	changed.RotateHostKey(t)
	res = p.expectCode(4, "deploy", "production", "--accept-new-host-keys")
	if !strings.Contains(res.stderr, "HOST KEY CHANGED") || !strings.Contains(res.stderr, "ssh-keygen -R") {
		t.Errorf("changed-key refusal:\n%s", res.stderr)
	}
	if got := p.fleetLive(); got != before {
		t.Errorf("fleet moved to %s despite a changed host key", got)
	}
}

func TestMissingSharedFileIsRefusedBeforeAnyChange(t *testing.T) {
	p := newProject(t, 3, testutil.Options{})
	p.config("shared:\n  files: [.env, config/secrets.yml]\n")
	p.putShared(".env", "ok")
	res := p.expectCode(1, "deploy", "production")
	for _, want := range []string{deployTo + "/shared/config/secrets.yml", "does not exist", "host1", "host2", "host3"} {
		if !strings.Contains(res.stderr, want) {
			t.Errorf("missing-shared error lacks %q:\n%s", want, res.stderr)
		}
	}
	for _, h := range p.fleet.Hosts {
		if rs := releases(t, h); len(rs) != 0 {
			t.Errorf("%s: release created despite the missing shared file: %v", h.Name, rs)
		}
	}
}

func TestConfigErrorsNameTheLine(t *testing.T) {
	p := newProject(t, 1, testutil.Options{})
	p.write("slipway.yml", "app: shop\ndeploy_to: /srv/app\nkeep_relases: 3\nstages:\n  production:\n    hosts: [host1]\n")
	res := p.expectCode(2, "deploy", "production")
	if !strings.Contains(res.stderr, "slipway.yml:3:1") || !strings.Contains(res.stderr, "keep_releases") {
		t.Errorf("unknown key error:\n%s", res.stderr)
	}
	p.write("slipway.yml", "app: shop\nstages:\n  production:\n    deploy_to: relative/path\n    hosts: [host1]\n")
	res = p.expectCode(2, "deploy", "production")
	if !strings.Contains(res.stderr, "slipway.yml:4:") || !strings.Contains(res.stderr, "absolute") {
		t.Errorf("relative deploy_to error:\n%s", res.stderr)
	}
	p.config("")
	res = p.expectCode(2, "deploy", "prod")
	if !strings.Contains(res.stderr, "production") {
		t.Errorf("unknown stage error does not list the stages:\n%s", res.stderr)
	}
	// -c works after the command name too.
	p.write("other.yml", "app: shop\ndeploy_to: /\nstages:\n  production:\n    hosts: [host1]\n")
	res = p.expectCode(2, "deploy", "production", "-c", "other.yml")
	if !strings.Contains(res.stderr, "other.yml:2:") {
		t.Errorf("deploy_to / error:\n%s", res.stderr)
	}
	for _, h := range p.fleet.Hosts {
		if _, err := os.Stat(h.Path(deployTo)); !os.IsNotExist(err) {
			t.Errorf("%s: a config error changed the host", h.Name)
		}
	}
}

func TestCapistranoDeployDirIsAdopted(t *testing.T) {
	p := newProject(t, 2, testutil.Options{})
	p.config("shared:\n  files: [.env]\n")
	capReleases := []string{"20250101120000", "20250102120000"}
	for _, h := range p.fleet.Hosts {
		script := "set -e; cd /srv && mkdir -p app/shared app/repo && echo 'KEY=cap' > app/shared/.env\n"
		for i, id := range capReleases {
			script += "mkdir -p app/releases/" + id + " && echo cap" + string(rune('1'+i)) + " > app/releases/" + id + "/VERSION && echo " + id + " > app/releases/" + id + "/REVISION\n"
			script += "echo 'Branch main (at abc" + id + ") deployed as release " + id + " by alice' >> app/revisions.log\n"
		}
		// Capistrano links current with an absolute path.
		script += "ln -s /srv/app/releases/" + capReleases[1] + " app/current\n"
		h.Run(t, script)
	}
	res := p.mustRun("releases", "production")
	for _, id := range capReleases {
		if !strings.Contains(res.stdout, id) {
			t.Errorf("releases does not list Capistrano's %s:\n%s", id, res.stdout)
		}
	}
	if !regexp.MustCompile(capReleases[1] + `\s+live`).MatchString(res.stdout) {
		t.Errorf("Capistrano's live release not shown live:\n%s", res.stdout)
	}

	p.mustRun("deploy", "production")
	ours := p.fleetLive()
	p.mustRun("rollback", "production")
	if got := p.fleetLive(); got != capReleases[1] {
		t.Fatalf("rollback went to %s, want Capistrano's %s", got, capReleases[1])
	}
	p.mustRun("rollback", "production", "--to", capReleases[0])
	for _, h := range p.fleet.Hosts {
		if got := readFile(t, h.Path(deployTo+"/current/VERSION")); got != "cap1\n" {
			t.Errorf("%s: VERSION = %q after rolling back to Capistrano's first release", h.Name, got)
		}
		log := readFile(t, h.Path(deployTo+"/revisions.log"))
		if !strings.HasPrefix(log, "Branch main (at abc"+capReleases[0]) || !strings.Contains(log, "deployed as release "+ours) {
			t.Errorf("%s: revisions.log not continued:\n%s", h.Name, log)
		}
	}
}
