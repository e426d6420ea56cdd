package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/slipway-deploy/slipway/internal/testutil"
)

// writeBigApp writes n files of about size bytes each, deterministic.
func writeBigApp(p *project, n, size int) {
	p.t.Helper()
	for i := 0; i < n; i++ {
		line := fmt.Sprintf("<?php // file %d of the app, padding to make it a realistic size\n", i)
		p.write(fmt.Sprintf("app/src/mod%02d/file%04d.php", i%20, i), strings.Repeat(line, size/len(line)+1))
	}
}

// sentPerHost reads the bytes each host was sent from the upload lines.
func sentPerHost(t *testing.T, stderr string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	re := regexp.MustCompile(`(?m)^(host\d+)\s+(full|delta) upload: .* ([0-9.]+) (B|KB|MB) sent(?: \((?:gzip|zstd)\))?$`)
	for _, m := range re.FindAllStringSubmatch(stderr, -1) {
		v, _ := strconv.ParseFloat(m[3], 64)
		out[m[1]] = v * map[string]float64{"B": 1, "KB": 1 << 10, "MB": 1 << 20}[m[4]]
	}
	return out
}

// treeHashes hashes every file under dir (symlinks by target), by path,
// after resolving dir (current is a link: the release is walked). dir
// itself is resolved by its link's relative target, not with
// filepath.EvalSymlinks: a host with a file system of its own is reached
// through /proc/PID/root, a link EvalSymlinks would follow to this
// machine's /.
func treeHashes(t *testing.T, dir string) map[string]string {
	t.Helper()
	if target, err := os.Readlink(dir); err == nil {
		if filepath.IsAbs(target) {
			t.Fatalf("%s -> %s: an absolute link cannot be followed from outside the host", dir, target)
		}
		dir = filepath.Join(filepath.Dir(dir), target)
	}
	return hashTree(t, dir)
}

func sameTree(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %s = %q, want %q", what, k, got[k], v)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: unexpected %s", what, k)
		}
	}
}

func TestDeltaSendsAboutTheChangeAndBuildsTheSameRelease(t *testing.T) {
	if os.Getenv("SLIPWAY_E2E_UPLOAD") == "full" {
		t.Skip("delta-specific; this run forces full uploads")
	}
	p := newProject(t, 3, testutil.Options{})
	writeBigApp(p, 300, 8<<10)
	p.write("app/odd \xff name 'q' $(x)\n.txt", "hostile but legal")
	// Copied on the host by name: a leading dash, a backslash (which
	// tar would unquote unless told not to), a directory with its own mode.
	p.write(`-leading dash \\ back\nslash\t.txt`, "kept")
	p.write("private/keys.txt", "kept")
	if err := os.Chmod(filepath.Join(p.dir, "private"), 0o750); err != nil {
		t.Fatal(err)
	}
	// Uncompressed, so that the bytes sent are the content's.
	p.config("  compress: none\n")
	res := p.mustRun("deploy", "production")
	for h, n := range sentPerHost(t, res.stderr) {
		if n < 2<<20 {
			t.Errorf("%s: first deploy sent %.0f bytes, want the whole ~2.4 MB app", h, n)
		}
	}
	// One file changes (10 KB), one is removed, one added, one mode changes.
	p.write("app/src/mod03/file0003.php", strings.Repeat("changed ", 1280))
	if err := os.Remove(filepath.Join(p.dir, "app/src/mod04/file0004.php")); err != nil {
		t.Fatal(err)
	}
	p.write("app/src/new.php", "<?php // added\n")
	if err := os.Chmod(filepath.Join(p.dir, "app/bin/console"), 0o700); err != nil {
		t.Fatal(err)
	}
	res = p.mustRun("deploy", "production")
	sent := sentPerHost(t, res.stderr)
	if len(sent) != 3 {
		t.Fatalf("no upload figures for 3 hosts:\n%s", res.stderr)
	}
	for h, n := range sent {
		t.Logf("%s: redeploy after a 10 KB change sent %.0f bytes", h, n)
		if n > 24<<10 {
			t.Errorf("%s: sent %.0f bytes for a 10 KB change", h, n)
		}
	}
	if !strings.Contains(res.stderr, "delta upload") {
		t.Errorf("no delta upload:\n%s", res.stderr)
	}
	p.servesTheApp("")
}

// servesTheApp checks that every host's live release holds the project's
// app/ as shipped (tests/ excluded; REVISION, which slipway adds, aside).
func (p *project) servesTheApp(what string) {
	p.t.Helper()
	local := treeHashes(p.t, filepath.Join(p.dir, "app"))
	delete(local, "tests")
	delete(local, "tests/ExampleTest.php")
	local["REVISION"] = ""
	for _, h := range p.fleet.Hosts {
		got := treeHashes(p.t, h.Path(deployTo+"/current"))
		got["REVISION"] = ""
		sameTree(p.t, strings.TrimSuffix(h.Name+": "+what, ": "), got, local)
	}
}

func TestCompressedUploads(t *testing.T) {
	if uploadMode() != "" {
		t.Skip("sets source.compress itself; runs in the default mode")
	}
	p := newProject(t, 2, testutil.Options{})
	writeBigApp(p, 200, 8<<10) // 1.6 MB of text
	p.write("app/odd \xff name 'q' $(x)\n.txt", "hostile but legal")

	// none: the content as it is, the figure the others are held to.
	p.config("  compress: none\n")
	res := p.mustRun("deploy", "production")
	if strings.Contains(res.stderr, "(gzip)") || strings.Contains(res.stderr, "(zstd)") {
		t.Errorf("compress: none compressed:\n%s", res.stderr)
	}
	plain := sentPerHost(t, res.stderr)
	p.servesTheApp("none")

	// auto: these hosts have zstd and GNU tar, so zstd, though they are
	// on loopback addresses; then gzip and zstd set; full uploads, each
	// made once for both hosts; then deltas with each.
	for i, c := range []struct{ config, want, kind string }{
		{"  delta: false\n", "zstd", "full"},
		{"  compress: gzip\n  delta: false\n", "gzip", "full"},
		{"  compress: zstd\n  delta: false\n", "zstd", "full"},
	} {
		p.config(c.config)
		p.write("app/VERSION", fmt.Sprintf("v%d\n", i+2))
		res = p.mustRun("deploy", "production")
		packed := sentPerHost(t, res.stderr)
		if len(packed) != 2 || strings.Count(res.stderr, c.kind+" upload") != 2 || strings.Count(res.stderr, "("+c.want+")") != 2 {
			t.Fatalf("%q: want two %s uploads with %s:\n%s", c.config, c.kind, c.want, res.stderr)
		}
		for h, n := range packed {
			t.Logf("%s: full upload %.0f bytes plain, %.0f with %s", h, plain[h], n, c.want)
			if n > plain[h]/3 {
				t.Errorf("%s: the upload with %s sent %.0f bytes, plain %.0f: want under a third for this text", h, c.want, n, plain[h])
			}
		}
		p.servesTheApp(c.want + ", full")
	}

	for i, want := range []string{"gzip", "zstd"} {
		p.config("  compress: " + want + "\n")
		p.write("app/src/mod03/file0003.php", strings.Repeat("changed ", 1280*(i+1)))
		res = p.mustRun("deploy", "production")
		if strings.Count(res.stderr, "delta upload") != 2 || strings.Count(res.stderr, "("+want+")") != 2 {
			t.Fatalf("want two delta uploads with %s:\n%s", want, res.stderr)
		}
		p.servesTheApp(want + ", delta")
	}
}

func TestHardlinkDeltaNeverChangesAnOlderRelease(t *testing.T) {
	if os.Getenv("SLIPWAY_E2E_UPLOAD") == "full" {
		t.Skip("delta-specific")
	}
	p := newProject(t, 2, testutil.Options{})
	writeBigApp(p, 50, 4<<10)
	p.config("  hardlink: true\n")
	p.mustRun("deploy", "production")
	first := p.fleetLive()
	h := p.fleet.Hosts[0]
	before := treeHashes(t, h.Path(deployTo+"/releases/"+first))

	p.write("app/src/mod01/file0001.php", "<?php // v2\n")
	p.write("app/VERSION", "v2\n")
	p.mustRun("deploy", "production")
	second := p.fleetLive()
	sameTree(t, "the older release after a hard-link delta", treeHashes(t, h.Path(deployTo+"/releases/"+first)), before)
	// Unchanged files are shared by hard link; changed ones are not.
	var st syscall.Stat_t
	if err := syscall.Stat(h.Path(deployTo+"/releases/"+second+"/src/mod02/file0002.php"), &st); err != nil || st.Nlink < 2 {
		t.Errorf("an unchanged file is not hard-linked (links %d, %v)", st.Nlink, err)
	}
	if err := syscall.Stat(h.Path(deployTo+"/releases/"+second+"/src/mod01/file0001.php"), &st); err != nil || st.Nlink != 1 {
		t.Errorf("a changed file shares its inode (links %d, %v)", st.Nlink, err)
	}
}

func TestDamagedManifestMeansAFullUpload(t *testing.T) {
	if os.Getenv("SLIPWAY_E2E_UPLOAD") == "full" {
		t.Skip("delta-specific")
	}
	p := newProject(t, 3, testutil.Options{})
	p.config("")
	p.mustRun("deploy", "production")
	id := p.fleetLive()
	p.fleet.Hosts[1].Run(t, "head -c 60 "+deployTo+"/.slipway/manifests/"+id+" > /srv/m && mv /srv/m "+deployTo+"/.slipway/manifests/"+id)
	p.fleet.Hosts[2].Run(t, "rm "+deployTo+"/.slipway/manifests/"+id)
	p.writeApp("v2")
	res := p.mustRun("deploy", "production")
	for host, want := range map[string]string{"host1": "delta upload", "host2": "full upload", "host3": "full upload"} {
		if !regexp.MustCompile(`(?m)^` + host + `\s+` + want).MatchString(res.stderr) {
			t.Errorf("%s: want a %s:\n%s", host, want, res.stderr)
		}
	}
	if !strings.Contains(res.stderr, "not trusted") {
		t.Errorf("the damaged manifest is not reported:\n%s", res.stderr)
	}
	for _, h := range p.fleet.Hosts {
		if got := readFile(t, h.Path(deployTo+"/current/VERSION")); got != "v2\n" {
			t.Errorf("%s: VERSION = %q", h.Name, got)
		}
	}
}

func TestVerifyAllCatchesADamagedLiveRelease(t *testing.T) {
	if os.Getenv("SLIPWAY_E2E_UPLOAD") == "full" {
		t.Skip("delta-specific")
	}
	p := newProject(t, 3, testutil.Options{})
	p.config("  verify: all\n")
	p.mustRun("deploy", "production")
	before := p.fleetLive()
	// A file of the live release is damaged on host2; the delta would copy
	// it into the new release, and verify: all must catch that.
	p.fleet.Hosts[1].Run(t, "echo corrupted > "+deployTo+"/current/bin/console")
	p.writeApp("v2")
	res := p.expectCode(1, "deploy", "production")
	if !strings.Contains(res.stderr, "host2: upload") || !strings.Contains(res.stderr, "does not match its manifest") {
		t.Errorf("damage not caught:\n%s", res.stderr)
	}
	for _, h := range p.fleet.Hosts {
		if got := live(t, h); got != before {
			t.Errorf("%s: live = %s", h.Name, got)
		}
	}
}

func TestConnectionLostMidUploadLeavesLiveUntouched(t *testing.T) {
	p := newProject(t, 3, testutil.Options{})
	writeBigApp(p, 40, 4<<10)
	p.config("  hardlink: true\n")
	p.mustRun("deploy", "production")
	before := p.fleetLive()
	hashes := map[string]map[string]string{}
	for _, h := range p.fleet.Hosts {
		hashes[h.Name] = treeHashes(t, h.Path(deployTo+"/releases/"+before))
	}
	writeBigApp(p, 40, 6<<10) // every file changes: a long upload
	res := p.withEnv("SLIPWAY_TEST_FAULTS=upload@host2").expectCode(1, "deploy", "production")
	if !strings.Contains(res.stderr, "host2: upload") {
		t.Errorf("the failure does not name host2's upload:\n%s", res.stderr)
	}
	for _, h := range p.fleet.Hosts {
		if got := live(t, h); got != before {
			t.Errorf("%s: live = %s, want %s", h.Name, got, before)
		}
		if rs := releases(t, h); len(rs) != 1 {
			t.Errorf("%s: releases = %v: the partial release was not removed", h.Name, rs)
		}
		sameTree(t, h.Name+" live release", treeHashes(t, h.Path(deployTo+"/releases/"+before)), hashes[h.Name])
	}
	p.mustRun("deploy", "production")
}

// TestRedeployRecyclesTheOldestRelease: on hosts whose history is full,
// the new release is made in the directory of the release cleanup would
// delete (the same directory, renamed), and whatever the app did to that
// directory (files written, a file changed in place, one removed) is
// gone: every host serves exactly the app, and the recycled release is
// gone from history. The plan says which release it would reuse.
func TestRedeployRecyclesTheOldestRelease(t *testing.T) {
	if uploadMode() != "" {
		t.Skip("delta-specific; this run forces full uploads")
	}
	p := newProject(t, 2, testutil.Options{})
	p.config("keep_releases: 3\n")
	writeBigApp(p, 200, 2<<10)
	p.mustRun("deploy", "production")
	oldest := p.fleetLive()
	p.writeApp("v2")
	writeBigApp(p, 200, 2<<10)
	p.write("app/src/changed.php", "<?php // v2\n")
	p.mustRun("deploy", "production")
	p.write("app/src/changed.php", "<?php // v2.1\n")
	p.mustRun("deploy", "production")

	oldDirs := map[string]uint64{}
	for _, h := range p.fleet.Hosts {
		// The app at work in the old release, as the deploy user.
		h.Run(t, "cd "+deployTo+"/releases/"+oldest+" && echo junk > junk.txt && mkdir -p cache/views && echo x > cache/views/a.php && "+
			"echo hacked >> bin/console && rm src/mod01/file0001.php")
		info, err := os.Stat(h.Path(deployTo + "/releases/" + oldest))
		if err != nil {
			t.Fatal(err)
		}
		oldDirs[h.Name] = info.Sys().(*syscall.Stat_t).Ino
	}

	p.writeApp("v3")
	writeBigApp(p, 200, 2<<10)
	if plan := p.mustRun("plan", "production"); !strings.Contains(plan.stdout, "reuse the directory of "+oldest) {
		t.Errorf("the plan does not say it would reuse %s:\n%s", oldest, plan.stdout)
	}
	p.mustRun("deploy", "production")
	id := p.fleetLive()
	for _, h := range p.fleet.Hosts {
		info, err := os.Stat(h.Path(deployTo + "/releases/" + id))
		if err != nil {
			t.Fatal(err)
		}
		if ino := info.Sys().(*syscall.Stat_t).Ino; ino != oldDirs[h.Name] {
			t.Errorf("%s: release %s is a new directory, not %s's", h.Name, id, oldest)
		}
		if rs := releases(t, h); slices.Contains(rs, oldest) || len(rs) != 3 {
			t.Errorf("%s: releases %v, want the last three", h.Name, rs)
		}
	}
	p.servesTheApp("after a recycle")
	if hist := p.mustRun("releases", "production"); strings.Contains(hist.stdout, oldest) {
		t.Errorf("history still lists the recycled release %s:\n%s", oldest, hist.stdout)
	}
}
