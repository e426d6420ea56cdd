package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slipway-deploy/slipway/internal/testutil"
)

// Servers that differ from the default test host the way real ones do:
// the deploy user's login shell, a BusyBox userland, an sshd without SFTP,
// XFS with reflinks and ext4. Each test runs the commands a user runs and
// checks the hosts' files, not slipway's word.

// TestLoginShellsTcshFishDash: sshd hands every command to the deploy
// user's login shell; with tcsh, fish and dash as login shells, a deploy,
// a delta redeploy, status, check and a rollback all succeed and leave
// every host on the same release with the same files.
func TestLoginShellsTcshFishDash(t *testing.T) {
	p := newProject(t, 3, testutil.Options{Hosts: []testutil.HostOptions{
		{Shell: "tcsh"}, {Shell: "fish"}, {Shell: "dash"},
	}})
	p.config("shared:\n  dirs: [storage]\n  files: [.env]\n")
	p.putShared(".env", "APP_KEY=secret")
	p.mustRun("check", "production")
	p.mustRun("deploy", "production")
	first := p.fleetLive()
	p.writeApp("v2")
	res := p.mustRun("deploy", "production")
	second := p.fleetLive()
	if second == first {
		t.Fatalf("the redeploy left every host on %s", first)
	}
	if uploadMode() == "" {
		for _, h := range p.fleet.Hosts {
			if !regexp.MustCompile(`(?m)^` + h.Name + `\s+delta upload:`).MatchString(res.stderr) {
				t.Errorf("%s (login shell %s): the redeploy was not a delta upload:\n%s", h.Name, h.User, res.stderr)
			}
		}
	}
	sameReleaseEverywhere(t, p, "v2")
	p.mustRun("status", "production")
	p.mustRun("check", "production")
	p.mustRun("rollback", "production")
	if got := p.fleetLive(); got != first {
		t.Fatalf("after the rollback the fleet is live on %s, want %s", got, first)
	}
	sameReleaseEverywhere(t, p, "v1")
}

// TestBusyBoxHostDeploysLikeAGNUHost: next to a GNU host, a host whose PATH
// holds only BusyBox applets goes through check, a deploy, delta
// redeploys (upload, copy of the unchanged files, verify), shared dirs and
// files, writable dirs, cleanup (which keeps a release a process runs in,
// seen in /proc with BusyBox's ls and awk), status and a rollback, and
// ends with releases identical to the GNU host's.
func TestBusyBoxHostDeploysLikeAGNUHost(t *testing.T) {
	// PID namespaces: the job started on the BusyBox host below is not
	// one the GNU host's cleanup sees.
	p := newProject(t, 2, testutil.Options{Hosts: []testutil.HostOptions{{}, {BusyBox: true}}})
	gnu, busybox := p.fleet.Hosts[0], p.fleet.Hosts[1]
	// The BusyBox host really runs BusyBox in its sessions: its tar is
	// BusyBox's ("tar (busybox) 1.35.0").
	if out, _ := p.fleet.SSHCommand(t.Context(), busybox.Name, "exec /bin/sh -c 'tar --version 2>&1 | head -1'").Output(); !strings.Contains(strings.ToLower(string(out)), "busybox") {
		t.Fatalf("%s: tar --version says %q, want BusyBox", busybox.Name, out)
	}
	// config's extra follows the source section: its first line, indented,
	// belongs there. verify: all has BusyBox's sha256sum check every file
	// of each release, the copied ones too.
	p.config("  verify: all\nkeep_releases: 2\nshared:\n  dirs: [storage]\n  files: [.env]\n" +
		"writable:\n  dirs: [cache]\n  mode: group\n")
	p.write("app/cache/.gitkeep", "")
	p.putShared(".env", "APP_KEY=secret")
	p.mustRun("check", "production")
	var ids []string
	var res result
	for _, v := range []string{"v1", "v2", "v3"} {
		p.writeApp(v)
		p.write("app/cache/.gitkeep", "")
		writeBigApp(p, 40, 4<<10) // unchanged between deploys: the delta copies them
		res = p.mustRun("deploy", "production")
		ids = append(ids, p.fleetLive())
		if v != "v1" && uploadMode() == "" && !regexp.MustCompile(`(?m)^`+busybox.Name+`\s+delta upload:`).MatchString(res.stderr) {
			t.Errorf("%s: deploy %s was not a delta upload:\n%s", busybox.Name, v, res.stderr)
		}
		sameReleaseEverywhere(t, p, v)
		if v == "v1" {
			// A long job in the first release, on the BusyBox host.
			busybox.Run(t, "cd "+deployTo+"/releases/"+ids[0]+" && setsid sleep 300 </dev/null >/dev/null 2>&1 &")
		}
	}
	// keep_releases 2: the first release goes, but where the job runs in it.
	if rs := releases(t, gnu); !slices.Equal(rs, ids[1:]) {
		t.Errorf("%s: releases after 3 deploys with keep_releases 2 = %v, want %v", gnu.Name, rs, ids[1:])
	}
	if rs := releases(t, busybox); !slices.Equal(rs, ids) {
		t.Errorf("%s: releases after 3 deploys = %v, want %v: the first kept for the job running in it", busybox.Name, rs, ids)
	}
	if !regexp.MustCompile(`(?m)^` + busybox.Name + `\s.*kept ` + ids[0] + `: a running process still uses it`).MatchString(res.stderr) {
		t.Errorf("%s did not say it kept %s for a running process:\n%s", busybox.Name, ids[0], res.stderr)
	}
	busybox.Run(t, "pkill -x sleep")
	waitFor(t, 10*time.Second, busybox.Name+"'s job gone", func() bool {
		_, _, err := busybox.TryRun("pgrep -x sleep")
		return err != nil
	})
	p.mustRun("cleanup", "production")
	for _, h := range p.fleet.Hosts {
		if rs := releases(t, h); !slices.Equal(rs, ids[1:]) {
			t.Errorf("%s: releases after the job ended and a cleanup = %v, want %v", h.Name, rs, ids[1:])
		}
		cur := h.Path(deployTo + "/current")
		if link, _ := os.Readlink(cur + "/storage"); link != "../../shared/storage" {
			t.Errorf("%s: storage -> %q, want the shared dir", h.Name, link)
		}
		if got := readFile(t, cur+"/.env"); got != "APP_KEY=secret" {
			t.Errorf("%s: .env through the shared link = %q", h.Name, got)
		}
		if info, err := os.Stat(cur + "/cache"); err != nil || info.Mode().Perm()&0o020 == 0 {
			t.Errorf("%s: writable dir cache not group-writable: %v %v", h.Name, info, err)
		}
	}
	p.mustRun("status", "production")
	p.mustRun("rollback", "production")
	if got := p.fleetLive(); got != ids[1] {
		t.Fatalf("after the rollback the fleet is live on %s, want %s", got, ids[1])
	}
	sameReleaseEverywhere(t, p, "v2")
	p.mustRun("status", "production")
}

// tableCell returns the word in column of host's row of the table on
// stdout, found by where the column's header starts: cells such as FREE
// ("1.2 GB") and STATUS ("ok, 1 warning(s)") hold spaces, so fields cannot
// be counted.
func tableCell(t *testing.T, res result, host, column string) string {
	t.Helper()
	lines := strings.Split(res.stdout, "\n")
	start := -1
	for _, line := range lines {
		if strings.HasPrefix(line, "HOST ") {
			start = strings.Index(line, " "+column+" ") + 1
			break
		}
	}
	if start <= 0 {
		t.Fatalf("no %s column in the table:\n%s", column, res)
	}
	row := statusRow(t, res, host) // fails the test if there is none
	for _, line := range lines {
		if strings.HasPrefix(line, row[0]+" ") && len(line) > start {
			if cell := strings.Fields(line[start:]); len(cell) > 0 {
				return cell[0]
			}
		}
	}
	return ""
}

// sameReleaseEverywhere asserts that every host serves version and that
// the live releases have identical files (paths, modes, contents, link
// targets) on every host.
func sameReleaseEverywhere(t *testing.T, p *project, version string) {
	t.Helper()
	first := p.fleet.Hosts[0]
	want := treeHashes(t, first.Path(deployTo+"/current"))
	for _, h := range p.fleet.Hosts {
		if got := readFile(t, h.Path(deployTo+"/current/VERSION")); got != version+"\n" {
			t.Errorf("%s: VERSION = %q, want %s", h.Name, got, version)
		}
		if h != first {
			sameTree(t, h.Name+"'s live release against "+first.Name+"'s", treeHashes(t, h.Path(deployTo+"/current")), want)
		}
	}
}

// TestNoSFTPDeploysAndRollsBackByExec: on hosts whose sshd has no sftp
// subsystem, check shows the exec path in its SWITCH column, a deploy and
// a rollback work, and the fleet's switch skew is logged next to that of
// hosts with SFTP (for the record; timings are not asserted).
func TestNoSFTPDeploysAndRollsBackByExec(t *testing.T) {
	noSFTP := testutil.HostOptions{NoSFTP: true}
	for _, mode := range []struct {
		name string
		opts []testutil.HostOptions
		path string
	}{
		{"sftp", nil, "sftp"},
		{"exec", []testutil.HostOptions{noSFTP, noSFTP, noSFTP}, "exec"},
	} {
		t.Run(mode.name, func(t *testing.T) {
			p := newProject(t, 3, testutil.Options{Hosts: mode.opts})
			p.config("")
			res := p.mustRun("check", "production")
			for _, h := range p.fleet.Hosts {
				if got := tableCell(t, res, h.Name, "SWITCH"); got != mode.path {
					t.Errorf("%s: check's SWITCH column is %q, want %q:\n%s", h.Name, got, mode.path, res.stdout)
				}
			}
			var skews []string
			for _, v := range []string{"v1", "v2", "v3"} {
				p.writeApp(v)
				res := p.mustRun("deploy", "production")
				skew := regexp.MustCompile(`fleet skew: (\S+) from the first switch to the last`).FindStringSubmatch(res.stderr)
				if skew == nil {
					t.Fatalf("no fleet skew in the summary:\n%s", res.stderr)
				}
				if _, err := time.ParseDuration(skew[1]); err != nil {
					t.Fatalf("skew %q: %v", skew[1], err)
				}
				skews = append(skews, skew[1])
			}
			t.Logf("switch skew over 3 hosts, renames by %s, 3 deploys: %s", mode.path, strings.Join(skews, ", "))
			third := p.fleetLive()
			p.mustRun("rollback", "production")
			if got := p.fleetLive(); got == third || got == "" {
				t.Fatalf("after the rollback the fleet is live on %q, want the release before %s", got, third)
			}
			sameReleaseEverywhere(t, p, "v2")
		})
	}
}

// TestReflinkOnXFSTarPipeOnExt4: a fleet of an XFS host (reflinks) and an
// ext4 host, each with its file system of its own. A delta redeploy copies
// the unchanged files with cp --reflink on XFS, so the copy shares its
// blocks with the live release's file (filefrag shows the extents
// "shared"), and with the tar pipe on ext4, which has no shared extents;
// both releases are identical. Where make test forces full uploads, the
// redeploy sends every file: then no file shares blocks, on either host.
func TestReflinkOnXFSTarPipeOnExt4(t *testing.T) {
	_, err := exec.LookPath("filefrag")
	testutil.Require(t, "filefrag on PATH, to see shared extents: apt-get install e2fsprogs", err == nil)
	full := os.Getenv("SLIPWAY_E2E_UPLOAD") == "full"
	p := newProject(t, 2, testutil.Options{Hosts: []testutil.HostOptions{{FileSystem: "xfs"}, {FileSystem: "ext4"}}})
	xfs, ext4 := p.fleet.Hosts[0], p.fleet.Hosts[1]
	p.config("")
	// Big enough to have data extents of its own on both file systems.
	const big = "public/app.js"
	bigContent := strings.Repeat("console.log('unchanged between releases');\n", 4096)
	p.write("app/"+big, bigContent)
	// Copied on the host by name, with their directories' modes: odd
	// names, directories of their own modes.
	odd := func() {
		p.write("app/-leading dash \\ back\nslash\t.txt", "kept")
		p.write("app/private/keys.txt", "kept")
		p.write("app/shop/deep/er/readme.txt", "kept")
		for dir, mode := range map[string]os.FileMode{"private": 0o750, "shop": 0o2775, "shop/deep": 0o711} {
			if err := os.Chmod(filepath.Join(p.dir, "app", dir), mode); err != nil {
				t.Fatal(err)
			}
		}
	}
	odd()
	p.mustRun("deploy", "production")
	first := p.fleetLive()
	for _, h := range p.fleet.Hosts {
		if shared, out := sharedExtents(t, h.Path(deployTo+"/releases/"+first+"/"+big)); shared {
			t.Fatalf("%s: %s of the first release already has shared extents; the proof below would prove nothing:\n%s", h.Name, big, out)
		}
	}
	p.writeApp("v2")
	p.write("app/"+big, bigContent)
	odd()
	res := p.mustRun("deploy", "production")
	second := p.fleetLive()
	upload := map[bool]string{true: "full", false: "delta"}[full]
	for _, h := range p.fleet.Hosts {
		if !regexp.MustCompile(`(?m)^` + h.Name + `\s+` + upload + ` upload:`).MatchString(res.stderr) {
			t.Fatalf("%s: the redeploy was not a %s upload:\n%s", h.Name, upload, res.stderr)
		}
	}
	if shared, out := sharedExtents(t, xfs.Path(deployTo+"/releases/"+second+"/"+big)); shared == full {
		if full {
			t.Errorf("%s (XFS): %s, sent whole by a full upload, shares extents with another file:\n%s", xfs.Name, big, out)
		} else {
			t.Errorf("%s (XFS): %s of the new release shares no extent with the live one: cp --reflink did not run:\n%s", xfs.Name, big, out)
		}
	}
	if shared, out := sharedExtents(t, ext4.Path(deployTo+"/releases/"+second+"/"+big)); shared {
		t.Errorf("%s (ext4): %s of the new release has shared extents; ext4 has no reflinks, the tar pipe (or the upload) must have written it:\n%s", ext4.Name, big, out)
	}
	for _, h := range p.fleet.Hosts {
		if got := readFile(t, h.Path(deployTo+"/releases/"+second+"/"+big)); got != bigContent {
			t.Errorf("%s: %s of the new release is not the app's", h.Name, big)
		}
	}
	sameReleaseEverywhere(t, p, "v2")
	p.servesTheApp("the redeploy")
}

// sharedExtents reports whether any extent of the file at path is shared
// with another file, as filefrag -v shows reflinked blocks, and returns
// filefrag's output for the failure message.
func sharedExtents(t *testing.T, path string) (bool, string) {
	t.Helper()
	out, err := exec.Command("filefrag", "-v", path).CombinedOutput()
	if err != nil {
		t.Fatalf("filefrag -v %s: %v: %s", path, err, out)
	}
	return strings.Contains(string(out), "shared"), string(out)
}
