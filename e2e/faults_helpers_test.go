package e2e

// The machinery of the fault-injection suite (faults_test.go): slipway runs
// watched through their --json events, a host's connections frozen or
// waited out, a host whose deploy path is a small tmpfs, the invariants
// checked on every host (current never dangles and points at a complete
// release, shared/ never changes, the next deploy recovers), and how a
// fault's outcome is summed up for the reliability matrix (written by
// reliability_doc_test.go).

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slipway-deploy/slipway/internal/testutil"
	"github.com/slipway-deploy/slipway/internal/ui"
)

// watchedRun is a slipway run whose --json events the test saw as they came.
type watchedRun struct {
	result
	events []ui.JSONEvent
	killed bool // the test sent it SIGKILL
}

// count is how many of the run's events of type typ have a message
// holding s.
func (w watchedRun) count(typ, s string) int {
	n := 0
	for _, e := range w.events {
		if e.Type == typ && strings.Contains(e.Message, s) {
			n++
		}
	}
	return n
}

// outcome is how the run ended, for the matrix: its exit status and, where
// it finished, its outcome.
func (w watchedRun) outcome() string {
	s := fmt.Sprintf("exit %d", w.code)
	if fin := w.finished(); fin != nil {
		s += " (" + fin.Outcome + ")"
	}
	return s
}

// finished is the run's run_finished event, or nil (a killed run has none).
func (w watchedRun) finished() *ui.JSONEvent {
	for i := len(w.events) - 1; i >= 0; i-- {
		if w.events[i].Type == "run_finished" {
			return &w.events[i]
		}
	}
	return nil
}

// runWatched runs slipway with args (which include --json) and hands every
// event to on the moment it is read, with a function that SIGKILLs the
// process. on runs in the test's goroutine; while it runs, slipway goes on
// until it blocks on a full stdout pipe.
func (p *project) runWatched(on func(e ui.JSONEvent, kill func()), args ...string) watchedRun {
	p.t.Helper()
	cmd := exec.Command(p.bin, args...)
	cmd.Dir = p.dir
	cmd.Env = append(p.fleet.Env(), p.env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		p.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start slipway: %v", err)
	}
	// A failing test must not leave slipway running.
	p.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	var run watchedRun
	kill := func() {
		if !run.killed {
			run.killed = true
			_ = cmd.Process.Signal(syscall.SIGKILL)
		}
	}
	var out strings.Builder
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		out.WriteString(line + "\n")
		var e ui.JSONEvent
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			p.t.Errorf("slipway printed a line that is not a JSON event: %v\n%s", err, line)
			continue
		}
		run.events = append(run.events, e)
		if on != nil {
			on(e, kill)
		}
	}
	_ = cmd.Wait()
	run.stdout, run.stderr, run.code = out.String(), stderr.String(), cmd.ProcessState.ExitCode()
	return run
}

// signalSessions sends sig to the sshd processes serving h's connections
// (the ones KillSessions kills): SIGSTOP freezes the host's side of every
// connection, as a network that stops carrying packets does; SIGCONT lets
// it go on.
func signalSessions(t *testing.T, h *testutil.Host, sig syscall.Signal) {
	t.Helper()
	n := 0
	for _, p := range h.Processes(t) {
		if p.IsSSHD() {
			if err := syscall.Kill(p.PID, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
				t.Fatalf("%s: signal %v to sshd pid %d: %v", h.Name, sig, p.PID, err)
			}
			n++
		}
	}
	if n == 0 {
		t.Fatalf("%s: no sshd session to send %v to", h.Name, sig)
	}
}

// waitHostIdle waits until nothing but sshd runs in h: commands orphaned by
// a lost connection (a hook) have finished.
func waitHostIdle(t *testing.T, h *testutil.Host) {
	t.Helper()
	waitFor(t, time.Minute, h.Name+": the commands of lost connections ended", func() bool {
		for _, p := range h.Processes(t) {
			if !p.IsSSHD() {
				return false
			}
		}
		return true
	})
}

// waitQuiet waits until no connection is served on any host: after
// slipway is killed, the commands it had already sent (a rename the host's
// sshd has read but not yet run) still take effect, so the fleet is looked
// at once they have.
func (f *faultFleet) waitQuiet() {
	f.t.Helper()
	for _, h := range f.fleet.Hosts {
		waitFor(f.t, time.Minute, h.Name+": no connection served", func() bool { return len(h.Processes(f.t)) == 0 })
	}
}

// mountTmpfs mounts a tmpfs of size bytes, owned by the deploy user, on dir
// (a path under /srv) inside h's mount namespace only, and returns the
// directory through which this machine sees the host's /srv (its sshd's
// root): the tmpfs is not visible under h.Root.
func mountTmpfs(t *testing.T, h *testutil.Host, dir string, size int64) string {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(h.Root, &st); err != nil {
		t.Fatal(err)
	}
	h.Run(t, "mkdir -p "+dir)
	pid := h.SSHDPid()
	opts := fmt.Sprintf("size=%d,mode=0755,uid=%d,gid=%d", size, st.Uid, st.Gid)
	out, err := exec.Command("nsenter", fmt.Sprintf("--mount=/proc/%d/ns/mnt", pid), "--",
		"mount", "-t", "tmpfs", "-o", opts, "slipway-faults", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: mount a tmpfs on %s: %v\n%s", h.Name, dir, err, out)
	}
	return fmt.Sprintf("/proc/%d/root%s", pid, testutil.HostRoot)
}

// writeRandom writes size random bytes at rel in the project: content no
// upload can shrink.
func (p *project) writeRandom(rel string, size int) {
	p.t.Helper()
	b := make([]byte, size)
	if _, err := rand.Read(b); err != nil {
		p.t.Fatal(err)
	}
	p.write(rel, string(b))
}

// faultFleet is a project whose hosts are checked against the invariants
// after every fault.
type faultFleet struct {
	*project
	// roots maps a host whose /srv this machine cannot see at h.Root (a
	// tmpfs mounted inside it) to where it can.
	roots   map[string]string
	shared  map[string]map[string]string // each host's shared/ as it must stay
	version *int                         // of the app; shared by the copies forTest makes
}

// forTest returns f reporting to t (a subtest).
func (f *faultFleet) forTest(t *testing.T) *faultFleet {
	p := *f.project
	p.t = t
	g := *f
	g.project = &p
	return &g
}

// path maps a /srv path of h to this machine.
func (f *faultFleet) path(h *testutil.Host, p string) string {
	if root, ok := f.roots[h.Name]; ok {
		rest, _ := strings.CutPrefix(p, testutil.HostRoot)
		return root + rest
	}
	return h.Path(p)
}

// nextVersion writes the next version of the app and returns its name.
func (f *faultFleet) nextVersion() string {
	*f.version++
	v := "v" + strconv.Itoa(*f.version)
	f.writeApp(v)
	return v
}

// faultConfig is the stage the suite deploys: shared data, hooks on both
// sides of the switch and after a rollback, a health check. The
// before_switch hook writes the release id into the release, so a live
// release proves it ran there. extra is more YAML (more hooks, rollout).
func faultConfig(beforeSwitch []string, extra string) string {
	var b strings.Builder
	b.WriteString("shared:\n  dirs: [storage]\n  files: [.env]\n")
	b.WriteString("hooks:\n  before_switch:\n    - printf '%s\\n' \"$SLIPWAY_RELEASE_ID\" > BEFORE_SWITCH\n")
	for _, h := range beforeSwitch {
		fmt.Fprintf(&b, "    - %s\n", h)
	}
	b.WriteString("  after_switch:\n    - echo after switch on $SLIPWAY_HOST\n")
	b.WriteString("  after_rollback:\n    - echo after rollback on $SLIPWAY_HOST\n")
	b.WriteString("health:\n  command: test -s BEFORE_SWITCH\n")
	// A full history from the third deploy on: deploys recycle the
	// release cleanup would delete (source.recycle), as on a fleet in use.
	b.WriteString("keep_releases: 3\n")
	b.WriteString(extra)
	return b.String()
}

// seed makes the fleet's first release and the shared data the app would
// have written by then, and records shared/ as it must stay.
func (f *faultFleet) seed() {
	f.t.Helper()
	f.putShared(".env", "APP_KEY=base64:c2VjcmV0")
	f.nextVersion()
	f.mustRun("deploy", "production")
	for _, h := range f.fleet.Hosts {
		h.Run(f.t, "cd "+deployTo+"/shared/storage && mkdir -p app/uploads && head -c 65536 /dev/urandom > app/uploads/avatar.png && echo 'user data' > logs/app.log")
	}
	f.shared = map[string]map[string]string{}
	for _, h := range f.fleet.Hosts {
		f.shared[h.Name] = hashTree(f.t, f.path(h, deployTo+"/shared"))
	}
	// The expected content of a release must be what slipway makes.
	f.checkRecovered(nil)
}

// hostState is one host's deploy directory as the invariants see it.
type hostState struct {
	live      string   // release current points at; "" if none
	target    string   // what the current link holds
	releases  []string // release directories
	tempLinks []string // switch links left beside current
	locked    bool
}

// keptReleases says whether a failed run left a host's releases as they
// were, but for the one its recycle took (internal/deploy/recycle.go): the
// oldest, which its success would have deleted, and never the live
// release or the rollback target (with keep_releases 3, the faults'
// setting, the oldest of three or more).
func keptReleases(before, after hostState) bool {
	if slices.Equal(before.releases, after.releases) {
		return true
	}
	rs := before.releases
	return len(rs) >= 3 && rs[0] != before.live && slices.Equal(rs[1:], after.releases)
}

func (f *faultFleet) state(h *testutil.Host) hostState {
	f.t.Helper()
	var s hostState
	target, err := os.Readlink(f.path(h, deployTo+"/current"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		f.t.Fatal(err)
	}
	s.target = target
	if target != "" {
		s.live = filepath.Base(target)
	}
	entries, err := os.ReadDir(f.path(h, deployTo+"/releases"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		f.t.Fatal(err)
	}
	for _, e := range entries {
		s.releases = append(s.releases, e.Name())
	}
	entries, err = os.ReadDir(f.path(h, deployTo))
	if err != nil {
		f.t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".current.slipway-") {
			s.tempLinks = append(s.tempLinks, e.Name())
		}
	}
	_, err = os.Lstat(f.path(h, deployTo+"/.slipway/lock"))
	s.locked = err == nil
	return s
}

func (f *faultFleet) states() map[string]hostState {
	out := map[string]hostState{}
	for _, h := range f.fleet.Hosts {
		out[h.Name] = f.state(h)
	}
	return out
}

// meta reads what slipway recorded about release id on h; nil if nothing.
func (f *faultFleet) meta(h *testutil.Host, id string) map[string]any {
	f.t.Helper()
	b, err := os.ReadFile(f.path(h, deployTo+"/.slipway/releases/"+id+".json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		f.t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		f.t.Fatalf("%s: metadata of %s: %v\n%s", h.Name, id, err, b)
	}
	return m
}

func (f *faultFleet) metaState(h *testutil.Host, id string) string {
	if m := f.meta(h, id); m != nil {
		s, _ := m["state"].(string)
		return s
	}
	return ""
}

func (f *faultFleet) tree(h *testutil.Host, id string) map[string]string {
	return hashTree(f.t, f.path(h, deployTo+"/releases/"+id))
}

// trees records the content of every release on every host, by host and id.
func (f *faultFleet) trees() map[string]map[string]map[string]string {
	out := map[string]map[string]map[string]string{}
	for _, h := range f.fleet.Hosts {
		out[h.Name] = map[string]map[string]string{}
		for _, id := range f.state(h).releases {
			out[h.Name][id] = f.tree(h, id)
		}
	}
	return out
}

// wantTree is what release id on h must hold to be complete with the app
// as it is in the project now: every shipped file byte for byte with its
// mode, the shared paths linked, Capistrano's REVISION file (the revision
// recorded for the release) and the file the before_switch hook writes.
func (f *faultFleet) wantTree(h *testutil.Host, id string) map[string]string {
	f.t.Helper()
	want := map[string]string{}
	for rel, v := range hashTree(f.t, filepath.Join(f.dir, "app")) {
		top, _, _ := strings.Cut(rel, "/")
		if top == "tests" || top == "storage" || top == ".env" {
			continue
		}
		want[rel] = v
	}
	want["storage"] = "link:../../shared/storage"
	want[".env"] = "link:../../shared/.env"
	revision, _ := f.meta(h, id)["revision"].(string)
	want["REVISION"] = "644 " + sha(revision+"\n")
	want["BEFORE_SWITCH"] = "644 " + sha(id+"\n")
	return want
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// checkAfterFault checks the invariants that must hold the moment a fault
// ends a run, before anything recovers: on every host current resolves to
// a complete release, one allowed on that host (with its expected
// content), and shared/ is unchanged.
func (f *faultFleet) checkAfterFault(allowed allowedReleases) {
	f.t.Helper()
	for _, h := range f.fleet.Hosts {
		s := f.state(h)
		want, ok := allowed(h, s.live)
		switch {
		case s.live == "":
			f.t.Errorf("%s: current is gone (it held %q)", h.Name, s.target)
			continue
		case s.target != "releases/"+s.live:
			f.t.Errorf("%s: current -> %q, want releases/<id>", h.Name, s.target)
			continue
		case !ok:
			f.t.Errorf("%s: current -> %s, which is neither the release live before nor the one the run made complete", h.Name, s.live)
			continue
		}
		sameTree(f.t, h.Name+": live release "+s.live, f.tree(h, s.live), want)
		f.checkShared(h)
	}
}

// allowedReleases says which releases a host may serve after a fault: for
// release id on host h, the content it must have, and whether h may serve
// it at all.
type allowedReleases func(h *testutil.Host, id string) (tree map[string]string, ok bool)

// fleetWide allows the same releases on every host: each id with the
// content its function gives for the host.
func fleetWide(ids map[string]func(*testutil.Host) map[string]string) allowedReleases {
	return func(h *testutil.Host, id string) (map[string]string, bool) {
		want, ok := ids[id]
		if !ok {
			return nil, false
		}
		return want(h), true
	}
}

func (f *faultFleet) checkShared(h *testutil.Host) {
	f.t.Helper()
	sameTree(f.t, h.Name+": shared/", hashTree(f.t, f.path(h, deployTo+"/shared")), f.shared[h.Name])
}

// checkRecovered checks the fleet after a successful recovery: every host
// live on one complete release that went live; no leftovers of the fault
// (partial or failed releases, switch links, the lock, manifests of
// releases that are gone); shared/ unchanged; and the release each host
// served before the recovery (before[host]) kept, as a release that went
// live and the rollback target.
func (f *faultFleet) checkRecovered(before map[string]hostState) {
	f.t.Helper()
	live := f.state(f.fleet.Hosts[0]).live
	previous := f.rollbackTargets()
	for _, h := range f.fleet.Hosts {
		s := f.state(h)
		if s.live != live || live == "" {
			f.t.Errorf("%s: live on %q after the recovery, %s on %q", h.Name, s.live, f.fleet.Hosts[0].Name, live)
			continue
		}
		sameTree(f.t, h.Name+": live release "+live, f.tree(h, live), f.wantTree(h, live))
		if st := f.metaState(h, live); st != "deployed" {
			f.t.Errorf("%s: live release %s is recorded as %q, want deployed", h.Name, live, st)
		}
		for _, id := range s.releases {
			if st := f.metaState(h, id); st != "deployed" && st != "rolled_back" {
				f.t.Errorf("%s: release %s (%q) is left over after the recovery deploy", h.Name, id, st)
			}
		}
		if len(s.tempLinks) > 0 {
			f.t.Errorf("%s: stray switch links after the recovery: %v", h.Name, s.tempLinks)
		}
		if s.locked {
			f.t.Errorf("%s: the deploy lock is still there after the recovery", h.Name)
		}
		manifests, err := os.ReadDir(f.path(h, deployTo+"/.slipway/manifests"))
		if err != nil {
			f.t.Fatal(err)
		}
		for _, m := range manifests {
			if !slices.Contains(s.releases, m.Name()) {
				f.t.Errorf("%s: manifest of release %s, which is gone, is left over", h.Name, m.Name())
			}
		}
		if prev := before[h.Name].live; prev != "" && prev != live {
			if !slices.Contains(s.releases, prev) {
				f.t.Errorf("%s: release %s, live before the recovery deploy (its rollback target), was deleted", h.Name, prev)
			} else if st := f.metaState(h, prev); st != "deployed" {
				f.t.Errorf("%s: release %s, live before the recovery deploy, is recorded as %q, want deployed (it went live)", h.Name, prev, st)
			} else if st := previous[h.Name]; st != prev {
				f.t.Errorf("%s: the rollback target after the recovery deploy is %q, want %s, the release live before it", h.Name, st, prev)
			}
		}
		f.checkShared(h)
	}
}

// rollbackTargets asks slipway which release each host would roll back to
// (state "previous" in slipway releases).
func (f *faultFleet) rollbackTargets() map[string]string {
	f.t.Helper()
	res := f.run("releases", "production", "--json")
	if res.code != 0 {
		f.t.Fatalf("slipway releases failed:\n%s", res)
	}
	var rows []struct {
		ID     string   `json:"id"`
		Hosts  []string `json:"hosts"`
		States []string `json:"host_states"`
	}
	if err := json.Unmarshal([]byte(res.stdout), &rows); err != nil {
		f.t.Fatalf("slipway releases --json: %v\n%s", err, res.stdout)
	}
	out := map[string]string{}
	for _, r := range rows {
		for i, h := range r.Hosts {
			if r.States[i] == "previous" {
				out[h] = r.ID
			}
		}
	}
	return out
}

// split reports whether the hosts are live on different releases.
func split(states map[string]hostState) bool {
	var first *hostState
	for _, s := range states {
		if first == nil {
			first = &s
		} else if s.live != first.live {
			return true
		}
	}
	return false
}

// forceCommand is what a deploy refused over a split fleet must tell the
// user to run, word for word.
const forceCommand = "slipway deploy production --force"

// recover runs the next plain deploy after a fault, once the commands the
// fault orphaned on the hosts have ended, and checks that it succeeds
// without manual steps: at once, or, when the fault split the fleet, after
// its refusal named the one command to run, which then succeeds. It
// returns how it went, for the matrix.
func (f *faultFleet) recover(before map[string]hostState) string {
	f.t.Helper()
	for _, h := range f.fleet.Hosts {
		waitHostIdle(f.t, h)
	}
	locked := 0
	for _, s := range before {
		if s.locked {
			locked++
		}
	}
	res := f.run("deploy", "production")
	f.t.Logf("recovery: slipway deploy production:\n%s", res)
	stderr := res.stderr
	how := "`slipway deploy production`: exit " + strconv.Itoa(res.code)
	if res.code != 0 {
		if !split(before) || !strings.Contains(res.stderr, forceCommand) {
			f.t.Errorf("recovery deploy failed:\n%s", res)
			return how + " ✗"
		}
		how += ", refused: hosts disagree, names `" + forceCommand + "`"
		res = f.run(strings.Fields(forceCommand)[1:]...)
		f.t.Logf("recovery: %s:\n%s", forceCommand, res)
		stderr += res.stderr
		how += "; that: exit " + strconv.Itoa(res.code)
		if res.code != 0 {
			f.t.Errorf("%s failed:\n%s", forceCommand, res)
			return how + " ✗"
		}
	}
	if locked > 0 {
		if !strings.Contains(stderr, "taking over the lock") || !strings.Contains(stderr, "is no longer running") {
			f.t.Errorf("the lock left on %d host(s) was not taken over with a warning:\n%s", locked, stderr)
		}
		how += fmt.Sprintf(", took over the dead run's lock (%d host(s), warning)", locked)
	}
	if strings.Contains(stderr, "recorded as deployed now") {
		how += ", recorded the live release as deployed (warning)"
	}
	if strings.Contains(stderr, "already live on every host") {
		how += ", already live: nothing to do"
	}
	return how
}

// describe sums up the fleet right after a fault for the matrix: where the
// hosts are live (names for releases in names) and what was left over.
func describe(hosts []*testutil.Host, states map[string]hostState, names map[string]string, known []string) string {
	groups := map[string][]string{}
	var order []string
	for _, h := range hosts {
		name := names[states[h.Name].live]
		if name == "" {
			name = "release " + states[h.Name].live
		}
		if _, ok := groups[name]; !ok {
			order = append(order, name)
		}
		groups[name] = append(groups[name], h.Name)
	}
	var parts []string
	if len(order) == 1 {
		parts = append(parts, "all on "+order[0])
	} else {
		for _, name := range order {
			parts = append(parts, strings.Join(groups[name], ", ")+" on "+name)
		}
	}
	partial, links, locks := 0, 0, 0
	for _, h := range hosts {
		s := states[h.Name]
		for _, id := range s.releases {
			if id != s.live && !slices.Contains(known, id) {
				partial++
				break
			}
		}
		if len(s.tempLinks) > 0 {
			links++
		}
		if s.locked {
			locks++
		}
	}
	var left []string
	for _, c := range []struct {
		n    int
		what string
	}{{partial, "unfinished release"}, {links, "switch link"}, {locks, "lock"}} {
		if c.n > 0 {
			left = append(left, fmt.Sprintf("%s ×%d", c.what, c.n))
		}
	}
	if len(left) == 0 {
		left = append(left, "nothing")
	}
	return strings.Join(parts, "; ") + "; left: " + strings.Join(left, ", ")
}

// usedBytes is how much of the file system holding dir is in use.
func usedBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize
}

// fileSize is the size of path, or -1 if it does not exist.
func fileSize(path string) int64 {
	info, err := os.Lstat(path)
	if err != nil {
		return -1
	}
	return info.Size()
}

// hashTree hashes every file under dir (symlinks by target), by path. It
// does not resolve dir in this process, so a path through /proc/PID/root,
// into a host's own mounts, stays in the host (treeHashes resolves first).
func hashTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			out[rel] = "link:" + target
		case d.IsDir():
			out[rel] = fmt.Sprintf("dir %o", info.Mode().Perm())
		default:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			out[rel] = fmt.Sprintf("%o %s", info.Mode().Perm(), sha(string(b)))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
