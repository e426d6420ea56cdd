package deploy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/source"
)

// interruptedAt is a local executor whose run is interrupted (cancel)
// right after a rename goes through, by SFTP-style Rename or by a
// switch script: the interrupt lands inside a switch.
type interruptedAt struct {
	host.Local
	cancel context.CancelFunc
}

func (e *interruptedAt) Rename(ctx context.Context, oldpath, newpath string) error {
	err := e.Local.Rename(ctx, oldpath, newpath)
	if e.cancel != nil {
		e.cancel()
	}
	return err
}

// Exec interrupts the run right after a script that switches in one
// round trip (a rollback's, with its mv -T) has gone through.
func (e *interruptedAt) Exec(ctx context.Context, cmd host.Command) (host.Result, error) {
	res, err := e.Local.Exec(ctx, cmd)
	if e.cancel != nil && strings.Contains(cmd.Script, "mv -f -T") {
		e.cancel()
	}
	return res, err
}

// localStage deploys the site dir to deploy with ex.
func localStage(t *testing.T, dir string, ex host.Executor) Options {
	t.Helper()
	cfg := &config.Config{
		App: "demo", KeepReleases: 5, Symlink: "relative",
		Layout: config.Layout{Releases: "releases", Shared: "shared", Current: "current", Repo: "repo"},
		Source: config.Source{Strategy: "upload", Path: filepath.Join(dir, "site"), Delta: true, Recycle: true, Verify: "changed", Compress: "auto"},
	}
	stage := &config.Stage{Name: "demo", DeployTo: filepath.Join(dir, "deploy"), Hosts: []config.Host{{Name: "local", Host: "local", Local: true}}}
	cfg.Stages = []*config.Stage{stage}
	return Options{Config: cfg, Stage: stage, Hosts: stage.Hosts, Parallel: 1,
		Dial: func(context.Context, config.Host) (host.Executor, error) { return ex, nil }}
}

func deployVersion(t *testing.T, opts Options, version string) string {
	t.Helper()
	return deployVersionCtx(context.Background(), t, opts, version)
}

func deployVersionCtx(ctx context.Context, t *testing.T, opts Options, version string) string {
	t.Helper()
	writeFile(t, filepath.Join(opts.Config.Source.Path, "index.html"), version)
	tree, err := source.Scan(opts.Config.Source.Path, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Deploy(ctx, opts, Source{Tree: tree, Revision: tree.Digest})
	if err != nil {
		t.Fatalf("deploy %s: %v", version, err)
	}
	return res.ReleaseID
}

// TestRollbackInterruptedInItsSwitch: an interrupt that lands once the
// rename went through leaves the rollback switched, and it says so: the
// host is reported switched (exit 5's SwitchedError, not "no host was
// switched"), and the release rolled back from stays recorded as rolled
// back, so a later rollback does not go back to it.
func TestRollbackInterruptedInItsSwitch(t *testing.T) {
	dir := t.TempDir()
	ex := &interruptedAt{}
	opts := localStage(t, dir, ex)
	first := deployVersion(t, opts, "v1")
	second := deployVersion(t, opts, "v2")
	ctx, cancel := context.WithCancel(context.Background())
	ex.cancel = cancel
	res, err := Rollback(ctx, opts, RollbackOptions{})
	var switched *SwitchedError
	if !errors.As(err, &switched) {
		t.Fatalf("err = %v, want a SwitchedError: the host switched", err)
	}
	if len(res.Hosts) != 1 || !res.Hosts[0].Switched || res.Hosts[0].Live != first {
		t.Errorf("result %+v, want the host switched to %s", res.Hosts, first)
	}
	if target, _ := os.Readlink(filepath.Join(opts.Stage.DeployTo, "current")); target != "releases/"+first {
		t.Errorf("current -> %q, want releases/%s", target, first)
	}
	meta, err := os.ReadFile(filepath.Join(opts.Stage.DeployTo, ".slipway", "releases", second+".json"))
	if err != nil || !strings.Contains(string(meta), `"state":"`+StateRolledBack+`"`) {
		t.Errorf("release %s rolled back from is recorded %s (%v), want rolled_back", second, meta, err)
	}
}

// cancelledOnce is a local executor whose first script matching match
// runs to its end and then reports the run's interrupt, as a remote
// command does when the interrupt comes as it finishes: the run stops
// waiting for it, whatever it did on the host.
type cancelledOnce struct {
	host.Local
	match  string
	cancel context.CancelFunc
}

func (e *cancelledOnce) Exec(ctx context.Context, cmd host.Command) (host.Result, error) {
	if e.cancel == nil || !strings.Contains(cmd.Script, e.match) {
		return e.Local.Exec(ctx, cmd)
	}
	_, _ = e.Local.Exec(context.WithoutCancel(ctx), cmd)
	e.cancel()
	e.cancel = nil
	return host.Result{}, ctx.Err()
}

// TestLockTakenAsTheRunIsInterrupted: a lock script that took the lock as
// the run was interrupted leaves no lock behind.
func TestLockTakenAsTheRunIsInterrupted(t *testing.T) {
	dir := t.TempDir()
	ex := &cancelledOnce{}
	opts := localStage(t, dir, ex)
	deployVersion(t, opts, "v1")
	ctx, cancel := context.WithCancel(context.Background())
	ex.match, ex.cancel = "mkdir -- "+filepath.Join(opts.Stage.DeployTo, ".slipway", "lock"), cancel
	writeFile(t, filepath.Join(opts.Config.Source.Path, "index.html"), "v2")
	tree, err := source.Scan(opts.Config.Source.Path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Deploy(ctx, opts, Source{Tree: tree, Revision: tree.Digest}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want the interrupt", err)
	}
	if ex.cancel != nil {
		t.Fatal("the lock script never ran")
	}
	if _, err := os.Lstat(filepath.Join(opts.Stage.DeployTo, ".slipway", "lock")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the lock is left (%v)", err)
	}
}

// TestLockStoppedBeforeItsOwnerIsWritten: a lock script stopped (SIGTERM
// to its process group, as a cancelled command is stopped) between making
// the lock and writing its owner still writes the owner: a lock without
// one would refuse every later run, no holder to name, never stale.
func TestLockStoppedBeforeItsOwnerIsWritten(t *testing.T) {
	dir := t.TempDir()
	// mv, which puts the owner in place, is where the stop lands.
	bin := filepath.Join(dir, "bin")
	writeFile(t, filepath.Join(bin, "mv"), "#!/bin/sh\nkill -TERM 0\nexec /bin/mv \"$@\"\n")
	if err := os.Chmod(filepath.Join(bin, "mv"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	l := localStage(t, dir, nil).Layout()
	_, err := acquire(context.Background(), &host.Local{}, l, LockOwner{User: "ci", Token: "t1"}, "")
	t.Logf("the stopped lock script: %v", err)
	owner, err := os.ReadFile(l.LockOwnerFile())
	if err != nil || !strings.Contains(string(owner), `"token":"t1"`) {
		t.Errorf("the lock's owner: %q, %v; want the run's", owner, err)
	}
}

// TestCleanupStoppedByAnInterruptSaysSo: the warning of a deploy's cleanup
// stopped by an interrupt names the interrupt, never "context canceled".
func TestCleanupStoppedByAnInterruptSaysSo(t *testing.T) {
	dir := t.TempDir()
	ex := &cancelledOnce{}
	opts := localStage(t, dir, ex)
	deployVersion(t, opts, "v1")
	seen := &warnings{}
	opts.Events = seen
	ctx, cancel := context.WithCancelCause(context.Background())
	interrupt := errors.New("interrupted (SIGHUP)")
	ex.match, ex.cancel = "in_use()", func() { cancel(interrupt) }
	deployVersionCtx(ctx, t, opts, "v2")
	if ex.cancel != nil {
		t.Fatal("cleanup never ran")
	}
	text := strings.Join(seen.lines, "\n")
	if !strings.Contains(text, "cleanup failed") || !strings.Contains(text, interrupt.Error()) || strings.Contains(text, "context canceled") {
		t.Errorf("warnings:\n%s\nwant the cleanup's, naming %q", text, interrupt)
	}
}

// TestCleanupRemovesWorkFilesOfStoppedWrites: the work files of metadata
// and manifest writes stopped halfway (an interrupt between a write and
// its rename), and manifests of releases already gone, go with the next
// cleanup, never anything else there.
func TestCleanupRemovesWorkFilesOfStoppedWrites(t *testing.T) {
	dir := t.TempDir()
	opts := localStage(t, dir, &host.Local{})
	id := deployVersion(t, opts, "v1")
	l := opts.Layout()
	// With them, the manifest of a release whose removal was stopped
	// between its directory and its manifest.
	stray := []string{l.HistoryFile(id) + ".tmp", l.ManifestFile(id) + ".tmp", l.ManifestFile(id) + ".patch", l.ManifestFile(id) + ".body", l.ManifestFile("20000101000000")}
	for _, f := range stray {
		writeFile(t, f, "half")
	}
	if _, err := Cleanup(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	for _, f := range stray {
		if _, err := os.Stat(f); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s is left (%v)", f, err)
		}
	}
	for _, f := range []string{l.HistoryFile(id), l.ManifestFile(id)} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("cleanup removed %s: %v", f, err)
		}
	}
}

// shimOnPath puts an executable script named name first on PATH for the
// rest of the test.
func shimOnPath(t *testing.T, name, script string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "bin")
	writeFile(t, filepath.Join(bin, name), script)
	if err := os.Chmod(filepath.Join(bin, name), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
}

// TestLockGoneAsMkdirFails: a lock that is released (or removed by
// slipway unlock) between the mkdir that found it and the look that
// follows is taken, not reported as mkdir's "File exists".
func TestLockGoneAsMkdirFails(t *testing.T) {
	dir := t.TempDir()
	l := localStage(t, dir, nil).Layout()
	// The mkdirs of the lock fail as if another run's lock were there
	// (the script's first try makes it twice: once alone, once after
	// making its parent), and that lock is gone by the time the script
	// looks.
	raced := filepath.Join(dir, "raced")
	shimOnPath(t, "mkdir", `#!/bin/sh
if [ "$1" = -- ] && [ "$2" = '`+l.LockDir()+`' ] && [ ! -e '`+raced+`2' ]; then
  if [ -e '`+raced+`1' ]; then : > '`+raced+`2'; else : > '`+raced+`1'; fi
  echo "mkdir: cannot create directory '$2': File exists" >&2
  exit 1
fi
exec /bin/mkdir "$@"
`)
	if _, err := acquire(context.Background(), &host.Local{}, l, LockOwner{User: "ci", Token: "t1"}, ""); err != nil {
		t.Fatalf("acquire: %v", err)
	}
	if _, err := os.Stat(raced + "2"); err != nil {
		t.Fatal("the race was not staged")
	}
	if owner, err := os.ReadFile(l.LockOwnerFile()); err != nil || !strings.Contains(string(owner), `"token":"t1"`) {
		t.Errorf("the lock's owner: %q, %v; want the run's", owner, err)
	}
}

// TestLockForcedAwayAsItsOwnerIsWritten: a forced unlock removes the lock
// a run has just made, before its owner is in place, and another run makes
// the lock at once (its owner not yet written either). The first run must
// not take that lock for one its own owner could not be written into (a
// full disk) and remove it: it waits for the other run's owner and is
// refused, naming it.
func TestLockForcedAwayAsItsOwnerIsWritten(t *testing.T) {
	dir := t.TempDir()
	l := localStage(t, dir, nil).Layout()
	once := filepath.Join(dir, "raced")
	// The owner's rename into place finds the lock replaced: removed, made
	// again by another run, whose owner comes 300 ms later.
	shimOnPath(t, "mv", `#!/bin/sh
case "$*" in *'`+l.LockOwnerFile()+`.t1.tmp'*)
  if [ ! -e '`+once+`' ]; then
    : > '`+once+`'
    /bin/rm -rf -- '`+l.LockDir()+`' && /bin/mkdir -- '`+l.LockDir()+`'
    ( sleep 0.3; printf '%s\n' '{"user":"other","token":"t2"}' > '`+l.LockOwnerFile()+`' ) >/dev/null 2>&1 &
    echo "mv: cannot stat '`+l.LockOwnerFile()+`.t1.tmp': No such file or directory" >&2
    exit 1
  fi;;
esac
exec /bin/mv "$@"
`)
	_, err := acquire(context.Background(), &host.Local{}, l, LockOwner{User: "ci", Token: "t1"}, "")
	if _, serr := os.Stat(once); serr != nil {
		t.Fatal("the race was not staged")
	}
	var locked *LockedError
	if !errors.As(err, &locked) || locked.Owner.Token != "t2" {
		t.Errorf("acquire: %v; want the lock refused, held by the other run (t2)", err)
	}
	if owner, err := os.ReadFile(l.LockOwnerFile()); err != nil || !strings.Contains(string(owner), `"token":"t2"`) {
		t.Errorf("the other run's lock: %q, %v; want it untouched", owner, err)
	}
}

// unlockedAtSwitch is a local executor whose lock is removed (slipway
// unlock --force) right after its switch's rename went through; with
// takeFor set, another run takes the lock at once, and then, if not nil,
// runs in the background as that run.
type unlockedAtSwitch struct {
	host.Local
	layout  func() string
	armed   bool
	takeFor *LockOwner
	then    func()
}

func (e *unlockedAtSwitch) Rename(ctx context.Context, oldpath, newpath string) error {
	err := e.Local.Rename(ctx, oldpath, newpath)
	if e.armed {
		e.armed = false
		_ = os.RemoveAll(e.layout())
		if e.takeFor != nil {
			if err := os.Mkdir(e.layout(), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(filepath.Join(e.layout(), "owner.json"), []byte(`{"user":"other","token":"`+e.takeFor.Token+`"}`), 0o644); err != nil {
				return err
			}
			if e.then != nil {
				go e.then()
			}
		}
	}
	return err
}

// TestLockForcedAwayDuringTheSwitch: a deploy whose lock is removed just
// after a host switched takes the lock there again and switches the host
// back, so a forced unlock never leaves the fleet split. Where another run
// took the lock first, it waits for that run to give it back (a run that
// started as the lock went finds the fleet half switched and stops), then
// switches back; if that run switched the host meanwhile, the host is
// that run's: left on its release, with the deploy's release (the other
// run's rollback target) kept; a lock held past the wait is left alone,
// and the deploy says which release the host stays on.
func TestLockForcedAwayDuringTheSwitch(t *testing.T) {
	defer func(wait time.Duration) { retakeWait = wait }(retakeWait)
	retakeWait = 2 * time.Second
	for _, other := range []string{"none", "holds the lock", "gives the lock back", "switches and gives the lock back"} {
		t.Run("another run "+other, func(t *testing.T) {
			dir := t.TempDir()
			ex := &unlockedAtSwitch{}
			opts := localStage(t, dir, ex)
			l := opts.Layout()
			ex.layout = l.LockDir
			first := deployVersion(t, opts, "v1")
			ex.armed = true
			if other != "none" {
				ex.takeFor = &LockOwner{Token: "other-run"}
			}
			const otherRelease = "29990101000000"
			switch other {
			case "gives the lock back":
				ex.then = func() {
					time.Sleep(300 * time.Millisecond)
					_ = os.RemoveAll(l.LockDir())
				}
			case "switches and gives the lock back":
				ex.then = func() {
					time.Sleep(300 * time.Millisecond)
					_ = os.MkdirAll(l.ReleaseDir(otherRelease), 0o755)
					_ = os.Symlink(l.CurrentTarget(otherRelease), l.CurrentLink()+".other")
					_ = os.Rename(l.CurrentLink()+".other", l.CurrentLink())
					_ = os.RemoveAll(l.LockDir())
				}
			}
			writeFile(t, filepath.Join(opts.Config.Source.Path, "index.html"), "v2")
			tree, err := source.Scan(opts.Config.Source.Path, nil)
			if err != nil {
				t.Fatal(err)
			}
			res, err := Deploy(context.Background(), opts, Source{Tree: tree, Revision: tree.Digest})
			var lost *LockLostError
			if !errors.As(err, &lost) {
				t.Fatalf("err = %v, want a LockLostError", err)
			}
			live, _ := os.Readlink(l.CurrentLink())
			owner, _ := os.ReadFile(l.LockOwnerFile())
			switch other {
			case "none", "gives the lock back":
				if live != "releases/"+first {
					t.Errorf("current -> %q, want releases/%s: the host was not switched back", live, first)
				}
				if _, err := os.Stat(l.LockDir()); !os.IsNotExist(err) {
					t.Errorf("the lock taken again to switch back was left: %s (%v)", owner, err)
				}
			case "switches and gives the lock back":
				if live != "releases/"+otherRelease {
					t.Errorf("current -> %q, want releases/%s, where the other run switched it", live, otherRelease)
				}
				if _, err := os.Stat(l.ReleaseDir(res.ReleaseID)); err != nil {
					t.Errorf("the deploy's release, the other run's rollback target, was removed: %v", err)
				}
				var rb *RolledBackError
				if !errors.As(err, &rb) || !slices.Equal(rb.MovedOn, []string{res.Hosts[0].Host}) || strings.Contains(err.Error(), "rolled back on every host") {
					t.Errorf("err = %v, want a RolledBackError naming %s as moved on", err, res.Hosts[0].Host)
				}
				if h := res.Hosts[0]; !h.MovedOn || h.Switched || h.RolledBack || h.Live != otherRelease {
					t.Errorf("host result %+v, want moved on to %s, neither switched nor rolled back", h, otherRelease)
				}
				if _, err := os.Stat(l.LockDir()); !os.IsNotExist(err) {
					t.Errorf("the lock taken again was left: %s (%v)", owner, err)
				}
			case "holds the lock":
				if live != "releases/"+res.ReleaseID || !strings.Contains(err.Error(), "could not be taken again") {
					t.Errorf("current -> %q, err %v; want the host left on releases/%s, saying why", live, err, res.ReleaseID)
				}
				if !strings.Contains(string(owner), "other-run") {
					t.Errorf("the other run's lock was touched: %q", owner)
				}
			}
		})
	}
}
