package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/layout"
	"github.com/slipway-deploy/slipway/internal/shell"
)

// sharedScripts builds every script of slipway shared with name wherever a
// value from outside the program goes.
func sharedScripts(name string) map[string]string {
	l := layout.Layout{DeployTo: "/srv/" + name, Releases: "releases", Shared: "shared", Current: "current", Repo: "repo"}
	file := l.SharedPath(name)
	return map[string]string{
		"shared sums":    inspectScript(l, inspectAsk{}) + sharedSumsScript(l, []string{name, "config/" + name}),
		"shared upload":  sharedUploadScript(file, file+".tmp", "."+name+".slipway-push-", strings.Repeat("ab", 32), 12, 0o640),
		"shared replace": sharedReplaceScript(file, file+".tmp", SharedHistoryDir(l, name), "20261122T103015.000000000Z", fenceScript(l, "0123abcd")),
		"shared undo":    shell.Script("rm -f -- {{tmp}}", shell.Args{"tmp": file + ".tmp"}),
		"shared fetch":   shell.Script("head -c {{limit}} -- {{path}}", shell.Args{"limit": maxSharedDiff + 1, "path": file}),
	}
}

func TestSharedScriptsParse(t *testing.T) {
	for _, name := range hostileNames {
		for what, script := range sharedScripts(name) {
			if err := parses(script); err != nil {
				t.Errorf("%s with %q: sh -n: %v\n%s", what, name, err, script)
			}
		}
	}
}

// sharedProject is a stage of one local host with shared files.
type sharedProject struct {
	t        *testing.T
	dir      string
	deployTo string
	opts     Options
	clock    time.Time
}

func newSharedProject(t *testing.T, files []string, hooks []config.Hook) *sharedProject {
	t.Helper()
	dir := t.TempDir()
	p := &sharedProject{t: t, dir: dir, deployTo: filepath.Join(dir, "deploy"), clock: time.Date(2026, 11, 22, 10, 30, 0, 0, time.UTC)}
	cfg := &config.Config{
		App: "demo", KeepReleases: 5, Symlink: "relative",
		Layout: config.Layout{Releases: "releases", Shared: "shared", Current: "current", Repo: "repo"},
		Shared: config.Shared{Files: files},
		Env:    []config.EnvVar{{Name: "MAIL_PASS", Value: "s3cr3tvalue", Secret: true}},
		Hooks:  config.Hooks{AfterSharedPush: hooks},
	}
	stage := &config.Stage{Name: "demo", DeployTo: p.deployTo, Hosts: []config.Host{{Name: "local", Host: "local", Local: true}}}
	cfg.Stages = []*config.Stage{stage}
	p.opts = Options{Config: cfg, Stage: stage, Hosts: stage.Hosts, Parallel: 1,
		Dial: func(context.Context, config.Host) (host.Executor, error) { return host.NewLocal(), nil },
		Now: func() time.Time {
			p.clock = p.clock.Add(time.Second)
			return p.clock
		}}
	return p
}

// local writes a local file and returns its path.
func (p *sharedProject) local(name, body string) string {
	p.t.Helper()
	path := filepath.Join(p.dir, "local", name)
	writeFile(p.t, path, body)
	return path
}

func (p *sharedProject) shared(rel string) string { return filepath.Join(p.deployTo, "shared", rel) }

func (p *sharedProject) push(name, body string, confirm func(context.Context, *SharedDiff) error) (*PushResult, error) {
	p.t.Helper()
	return PushShared(context.Background(), p.opts, PushRequest{Local: SharedLocal{Name: name, Path: p.local(name, body)}, Confirm: confirm})
}

func TestPushSharedWritesKeepsHistoryAndRunsHooks(t *testing.T) {
	p := newSharedProject(t, []string{".env", "config/app.yml"}, []config.Hook{{Run: `printf '%s in %s\n' "$SLIPWAY_SHARED_FILE" "$PWD" >> ../../hook.log`}})
	// A live release for the hook to run in.
	release := filepath.Join(p.deployTo, "releases", "20261122090000")
	if err := os.MkdirAll(release, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("releases/20261122090000", filepath.Join(p.deployTo, "current")); err != nil {
		t.Fatal(err)
	}

	// The first push creates the file: the diff shows it whole, masked.
	var shown *SharedDiff
	res, err := p.push(".env", "APP=1\nDB_PASSWORD=hunter1\n", func(_ context.Context, d *SharedDiff) error { shown = d; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if shown == nil || !slices.Equal(shown.Copies[0].Diff, []string{"@@ -0,0 +1,2 @@", "+APP=1", "+DB_PASSWORD=***"}) {
		t.Fatalf("confirm was shown %+v", shown)
	}
	if !slices.Equal(res.Pushed, []string{"local"}) || len(res.Kept) != 0 || res.Unchanged {
		t.Errorf("result %+v", res)
	}
	info, err := os.Stat(p.shared(".env"))
	if err != nil || info.Mode().Perm() != 0o640 {
		t.Fatalf(".env: %v %v", info, err)
	}

	// Eleven more pushes: the history keeps the newest ten copies replaced.
	for i := 2; i <= 12; i++ {
		if _, err := p.push(".env", fmt.Sprintf("APP=%d\nDB_PASSWORD=hunter1\n", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	if got := readFileT(t, p.shared(".env")); got != "APP=12\nDB_PASSWORD=hunter1\n" {
		t.Errorf(".env = %q", got)
	}
	history := filepath.Join(p.deployTo, "shared", ".slipway", "history", ".env")
	entries, err := os.ReadDir(history)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, e := range entries {
		kept = append(kept, strings.TrimPrefix(strings.SplitN(readFileT(t, filepath.Join(history, e.Name())), "\n", 2)[0], "APP="))
	}
	if want := []string{"2", "3", "4", "5", "6", "7", "8", "9", "10", "11"}; !slices.Equal(kept, want) {
		t.Errorf("history keeps copies %v, want %v", kept, want)
	}
	if info, err := os.Stat(history); err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("history directory: %v %v (it holds secrets: 0700)", info, err)
	}
	hookLog := readFileT(t, filepath.Join(p.deployTo, "hook.log"))
	if strings.Count(hookLog, ".env in "+release+"\n") != 12 {
		t.Errorf("after_shared_push ran as:\n%s", hookLog)
	}

	// The same file again: nothing written, no hook, no question.
	res, err = p.push(".env", "APP=12\nDB_PASSWORD=hunter1\n", func(context.Context, *SharedDiff) error {
		t.Error("asked to confirm a push that changes nothing")
		return nil
	})
	if err != nil || !res.Unchanged || len(res.Pushed) != 0 {
		t.Errorf("unchanged push: %+v %v", res, err)
	}
	if strings.Count(readFileT(t, filepath.Join(p.deployTo, "hook.log")), "\n") != 12 {
		t.Error("a push that changed nothing ran the hook")
	}

	// A nested shared file, whose directory does not exist yet, with a
	// configured mode.
	p.opts.Config.Shared.FilesMode = 0o600
	if _, err := p.push("config/app.yml", "a: 1\n", nil); err != nil {
		t.Fatal(err)
	}
	if info, err := os.Stat(p.shared("config/app.yml")); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("config/app.yml: %v %v", info, err)
	}
	// No temporary copy is left anywhere, and the lock is gone.
	leftovers, _ := filepath.Glob(filepath.Join(p.deployTo, "shared", "*", ".*.slipway-push-*"))
	more, _ := filepath.Glob(filepath.Join(p.deployTo, "shared", ".*.slipway-push-*"))
	if len(leftovers)+len(more) > 0 {
		t.Errorf("left %v %v", leftovers, more)
	}
	if _, err := os.Stat(filepath.Join(p.deployTo, ".slipway", "lock")); !os.IsNotExist(err) {
		t.Error("lock left behind")
	}
}

func TestPushSharedRefusedOrDeclinedChangesNothing(t *testing.T) {
	p := newSharedProject(t, []string{".env"}, nil)
	writeFile(t, p.shared(".env"), "OLD=1\n")

	// Declined: nothing written, the lock released.
	_, err := p.push(".env", "NEW=1\n", func(context.Context, *SharedDiff) error { return errors.New("no") })
	if err == nil || readFileT(t, p.shared(".env")) != "OLD=1\n" {
		t.Fatalf("declined push: %v, .env %q", err, readFileT(t, p.shared(".env")))
	}
	if _, err := os.Stat(filepath.Join(p.deployTo, ".slipway", "lock")); !os.IsNotExist(err) {
		t.Error("lock left behind")
	}

	// Locked by another run: refused before anything is read or written.
	writeFile(t, filepath.Join(p.deployTo, ".slipway", "lock", "owner.json"), `{"user":"alice","machine":"laptop","pid":7,"command":"deploy demo","token":"other"}`)
	_, err = p.push(".env", "NEW=1\n", func(context.Context, *SharedDiff) error { t.Error("asked while locked"); return nil })
	var locked *LockedError
	if !errors.As(err, &locked) || locked.Owner.User != "alice" {
		t.Errorf("locked: %v", err)
	}
	if readFileT(t, p.shared(".env")) != "OLD=1\n" {
		t.Error(".env changed under another run's lock")
	}
	os.RemoveAll(filepath.Join(p.deployTo, ".slipway", "lock"))

	// Not one of shared.files.
	if _, err := p.push(".envx", "X=1\n", nil); err == nil || !strings.Contains(err.Error(), "not one of shared.files") {
		t.Errorf("unknown name: %v", err)
	}

	// A symlink (or a directory) in the file's place is refused, and left
	// as it is.
	os.Remove(p.shared(".env"))
	if err := os.Symlink("/etc/hostname", p.shared(".env")); err != nil {
		t.Fatal(err)
	}
	_, err = p.push(".env", "NEW=1\n", nil)
	if err == nil || !strings.Contains(err.Error(), "is not a regular file") {
		t.Errorf("symlink: %v", err)
	}
	if target, _ := os.Readlink(p.shared(".env")); target != "/etc/hostname" {
		t.Errorf("the link was replaced: %q", target)
	}
}

// TestSharedUploadKeepsOnlyAWholeCopy runs the upload script with input
// cut short, as when slipway is killed during a transfer: the file is
// untouched and no copy is kept. A leftover of a killed run goes.
func TestSharedUploadKeepsOnlyAWholeCopy(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, ".env")
	writeFile(t, file, "OLD=1\n")
	leftover := filepath.Join(dir, ".env.slipway-push-deadbeef")
	writeFile(t, leftover, "half")
	body := "NEW=1\nDB_PASSWORD=hunter2\n"
	tmp := filepath.Join(dir, ".env.slipway-push-0123")
	script := sharedUploadScript(file, tmp, ".env.slipway-push-", sumOf([]byte(body)), int64(len(body)), 0o640)
	_, err := host.NewLocal().Exec(context.Background(), host.Command{Script: script, Stdin: strings.NewReader(body[:7])})
	if err == nil || !strings.Contains(err.Error(), "the copy received (7 bytes) is not the file sent (26 bytes)") {
		t.Fatalf("cut transfer: %v", err)
	}
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Error("a partial copy was kept")
	}
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Error("a killed run's leftover was kept")
	}
	if readFileT(t, file) != "OLD=1\n" {
		t.Error("the file changed")
	}
	// The whole input: kept, with its mode, the file still untouched.
	if _, err := host.NewLocal().Exec(context.Background(), host.Command{Script: script, Stdin: strings.NewReader(body)}); err != nil {
		t.Fatal(err)
	}
	if info, err := os.Stat(tmp); err != nil || info.Mode().Perm() != 0o640 || readFileT(t, tmp) != body || readFileT(t, file) != "OLD=1\n" {
		t.Errorf("upload: %v %v", info, err)
	}
}

// TestSharedReplaceIsFenced: a run that lost its lock replaces nothing.
func TestSharedReplaceIsFenced(t *testing.T) {
	dir := t.TempDir()
	l := layout.Layout{DeployTo: dir, Releases: "releases", Shared: "shared", Current: "current", Repo: "repo"}
	file := l.SharedPath(".env")
	writeFile(t, file, "OLD=1\n")
	writeFile(t, file+".tmp", "NEW=1\n")
	writeFile(t, l.LockOwnerFile(), `{"token":"someone-else"}`)
	script := sharedReplaceScript(file, file+".tmp", SharedHistoryDir(l, ".env"), "20261122T103015.000000000Z", fenceScript(l, "mine"))
	_, err := host.NewLocal().Exec(context.Background(), host.Command{Script: script})
	var exitErr *host.ExitError
	if !errors.As(err, &exitErr) || exitErr.Code != lostStatus || readFileT(t, file) != "OLD=1\n" {
		t.Fatalf("lost lock: %v; .env %q", err, readFileT(t, file))
	}
}

func TestParseSharedSums(t *testing.T) {
	sum := strings.Repeat("0a", 32)
	st, err := parseState(layout.Layout{DeployTo: "/srv/app", Releases: "releases"}, []byte(
		"shared-sum .env "+sum+"\nshared-sum config/my app.yml -\nshared-sum secret ?\nshared-sum odd zz\nshared-sum\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{".env": sum, "config/my app.yml": "", "secret": sumUnreadable, "odd": sumUnreadable}
	if fmt.Sprint(st.SharedSums) != fmt.Sprint(want) {
		t.Errorf("sums %v, want %v", st.SharedSums, want)
	}
}

func TestSharedSumsScriptReadsTheHost(t *testing.T) {
	dir := t.TempDir()
	l := layout.Layout{DeployTo: dir, Releases: "releases", Shared: "shared", Current: "current", Repo: "repo"}
	writeFile(t, l.SharedPath(".env"), "A=1\n")
	if err := os.MkdirAll(l.SharedPath("dir.yml"), 0o755); err != nil {
		t.Fatal(err)
	}
	res, err := host.NewLocal().Query(context.Background(), host.Command{Script: inspectScript(l, inspectAsk{}) + sharedSumsScript(l, []string{".env", "missing", "dir.yml"})})
	if err != nil {
		t.Fatal(err)
	}
	st, err := parseState(l, res.Stdout)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{".env": sumOf([]byte("A=1\n")), "missing": "", "dir.yml": ""}
	if fmt.Sprint(st.SharedSums) != fmt.Sprint(want) {
		t.Errorf("sums %v, want %v", st.SharedSums, want)
	}
}

func TestSharedDrift(t *testing.T) {
	host := func(name string, sums map[string]string) *Target {
		return &Target{Host: config.Host{Name: name}, State: &State{SharedSums: sums}}
	}
	read := []*Target{
		host("web1", map[string]string{".env": "aa", "app.yml": "cc"}),
		host("web2", map[string]string{".env": "bb", "app.yml": "cc"}),
		host("web3", map[string]string{".env": "bb", "app.yml": "cc"}),
		host("web4", nil), // no deploy directory: no copy of anything
	}
	got := sharedDrift(read, []string{".env", "app.yml"})
	want := []SharedDrift{
		{Name: ".env", Copies: []SharedCopies{{Sum: "bb", Hosts: []string{"web2", "web3"}}, {Sum: "aa", Hosts: []string{"web1"}}, {Sum: "", Hosts: []string{"web4"}}}},
		{Name: "app.yml", Copies: []SharedCopies{{Sum: "cc", Hosts: []string{"web1", "web2", "web3"}}, {Sum: "", Hosts: []string{"web4"}}}},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("drift\n%v\nwant\n%v", got, want)
	}
	if got := sharedDrift(read[1:3], []string{".env", "app.yml"}); got != nil {
		t.Errorf("agreeing hosts: %v", got)
	}
}

// TestSharedRunsWithHostileNames pushes, diffs and pulls a shared file
// whose name and deploy path would run commands if they reached a shell
// unquoted.
func TestSharedRunsWithHostileNames(t *testing.T) {
	dir := t.TempDir()
	canary := filepath.Join(dir, "pwned")
	evil := "x $(touch " + canary + ")`touch " + canary + "`;touch " + canary + " 'q' \"d\".env"
	p := newSharedProject(t, []string{evil}, []config.Hook{{Run: "true"}})
	p.deployTo = filepath.Join(dir, "dep "+evil)
	p.opts.Stage.DeployTo = p.deployTo
	rec := &recorder{}
	p.opts.Dial = func(context.Context, config.Host) (host.Executor, error) { return rec, nil }
	ctx := context.Background()
	if _, err := p.push(evil, "A=1\n", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := p.push(evil, "A=2\n", nil); err != nil {
		t.Fatal(err)
	}
	diffs, err := DiffShared(ctx, p.opts, []SharedLocal{{Name: evil, Path: p.local(evil, "A=3\n")}})
	if err != nil || !diffs[0].Differs() {
		t.Fatalf("diff: %+v %v", diffs, err)
	}
	var pulled strings.Builder
	if _, err := PullShared(ctx, p.opts, evil, &pulled); err != nil || pulled.String() != "A=2\n" {
		t.Fatalf("pull: %q %v", pulled.String(), err)
	}
	if _, err := Status(ctx, p.opts); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(canary); err == nil {
		t.Fatal("a name ran as a command")
	}
	for _, op := range rec.ops {
		if kind, script, _ := strings.Cut(op, " "); kind == "exec" || kind == "query" {
			if err := parses(script); err != nil {
				t.Errorf("sh -n: %v\n%s", err, script)
			}
		}
	}
}

func readFileT(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSharedNeedsAHostWithReleases: a selection of no_release hosts only
// (a database host) holds no shared files; every command says so.
func TestSharedNeedsAHostWithReleases(t *testing.T) {
	p := newSharedProject(t, []string{".env"}, nil)
	p.opts.Hosts = []config.Host{{Name: "db", Host: "local", Local: true, NoRelease: true}}
	ctx := context.Background()
	_, pushErr := p.push(".env", "A=1\n", nil)
	_, diffErr := DiffShared(ctx, p.opts, []SharedLocal{{Name: ".env", Path: p.local(".env", "A=1\n")}})
	_, pullErr := PullShared(ctx, p.opts, ".env", io.Discard)
	for what, err := range map[string]error{"push": pushErr, "diff": diffErr, "pull": pullErr} {
		if !errors.Is(err, errNoSharedFiles) {
			t.Errorf("%s: %v", what, err)
		}
	}
}
