package deploy

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/layout"
	"github.com/slipway-deploy/slipway/internal/shell"
	"github.com/slipway-deploy/slipway/internal/source"
)

// hostileNames would run, split, glob or expand if they reached a shell
// unquoted, or break a script built by pasting text together.
var hostileNames = []string{
	"plain", "with space", "it's", `"double"`, "$(touch /tmp/pwned)", "`id`", "$HOME", "${PATH}",
	"a;b", "a|b", "a&&b", "a\nb", "\ttab", "*", "?", "[a]", "~", "-rf", "--", "a=b", "\\", "'", "''",
	"!", "#comment", "\xff\xfe", "é", "{a,b}", "{{x}}", "a>b", "<in", "$'\\x41'", "%s%n", "}", "{",
}

// everyScript builds every script the steps send, each variant, with name
// wherever a value from outside the program goes (paths, file names,
// commands, revisions, users).
func everyScript(name string) map[string]string {
	l := layout.Layout{DeployTo: "/srv/" + name, Releases: "releases", Shared: "shared", Current: "current", Repo: "repo"}
	const id, live = "20261122103015", "20261122090000"
	owner, _ := json.Marshal(LockOwner{User: name, Machine: name, Command: name, Stage: name, Token: "0123abcd"})
	meta := &ReleaseMeta{ID: id, State: StateDeployed, User: name, Machine: name, Stage: name, Revision: name, Branch: name}
	pick := pickFromManifest([]string{"a", name, "b"}, []string{"a", name})
	cfg := &config.Config{
		Shared:   config.Shared{Dirs: []string{name, "storage/" + name}, Files: []string{name + ".env"}},
		Writable: config.Writable{Dirs: []string{name + "/cache", "bootstrap/" + name}, Files: []string{name + ".env"}, Mode: "acl", User: name},
	}
	scripts := map[string]string{
		"acquire":                     acquireScript(l, owner, "0123abcd"),
		"refresh lock":                refreshScript(l, "0123abcd", time.Now()),
		"release lock":                releaseScript(l, "0123abcd", []string{l.MetaDir(), l.DeployTo}),
		"inspect":                     inspectScript(l, inspectAsk{sharedFiles: []string{name, "config/" + name}, seedDirs: []string{name}, manifest: true, tools: []string{"tar", name}, flavour: true}),
		"inspect, no manifest":        inspectScript(l, inspectAsk{}),
		"inspect, fetcher":            inspectScript(l, inspectAsk{fetcher: true}),
		"download pack, curl":         downloadPackScript(l, id, fetchCurl, strings.Repeat("ab", 32)),
		"download pack, wget":         downloadPackScript(l, id, fetchWget, strings.Repeat("ab", 32)),
		"create":                      createReleaseScript(l, id, writeMetaScript(l, meta)),
		"record":                      writeMetaScript(l, meta) + " && " + appendLogScript(l, name),
		"manifest fetch":              shell.Script("head -c {{max}} -- {{file}}", shell.Args{"max": maxManifest, "file": l.ManifestFile(live)}),
		"prepare switch":              prepareSwitchScript(l, l.LockedSwitchLink(id), id, true),
		"prepare switch back":         prepareSwitchScript(l, l.SwitchTempLink(live), live, false),
		"locked switch":               lockedSwitchScript(l, id),
		"locked switch, marking":      markedSwitchScript(l, id, writeMetaScript(l, meta), writeMetaScript(l, meta)),
		"switch back, retaken":        switchBackFromScript(l, id, live),
		"switch back, retaken, first": switchBackFromScript(l, id, ""),
		"verify switch":               verifySwitchScript(l),
		"fence":                       fenceScript(l, "0123abcd"),
		"link shared":                 linkSharedScript(l, id, cfg.Shared.Dirs, cfg.Shared.Files),
		"writable acl":                writableScript("acl", name, []string{"/srv/" + name}),
		"writable group":              writableScript("group", name, []string{"/srv/" + name, "/x"}),
		"hook":                        hookScript("/srv/"+name, []string{"A=" + name, name + "=1"}, true, name),
		"hook, no release":            hookScript("", []string{"A=" + name}, false, name),
		"exec":                        execScript("/srv/"+name, name),
		"fetch":                       fetchScript(l.RepoDir(), name),
		"resolve":                     resolveScript(l.RepoDir(), name),
		"export":                      exportScript(l, id, name, name, tarGNU, ""),
		"export, busybox, migrations": exportScript(l, id, name, name, tarBusyBox, name),
		"setup":                       setupScript(l, cfg),
		"check":                       checkScript(l, needsOf(cfg)),
		"check, every need":           checkScript(l, checkNeeds{tools: baseTools, sudo: true, webUser: name, sharedFiles: []string{name, "config/" + name}, liveSize: true, repo: true}),
		"prune":                       pruneScript(l, PrunePlan{Delete: []string{id, live}, Forget: []string{id}}, map[string]*ReleaseMeta{id: meta}, true),
		"php-fpm timeouts":            fpmTimeoutScript,
	}
	for _, hardlink := range []bool{false, true} {
		for what, p := range map[string]*manifestPick{"picked": pick, "listed": nil} {
			for _, tar := range []string{tarGNU, tarBusyBox} {
				key := "copy " + what + ", " + tar + " tar"
				if hardlink {
					key += ", hard links"
				}
				scripts[key] = createReleaseScript(l, id, "true && (\n"+copyUnchanged(l, live, id, hardlink, p, tar, fromStdin)+"\n)")
				if !hardlink && p != nil {
					scripts["recycle, "+tar+" tar"] = createReleaseScript(l, id, "true && (\n"+recycleScript(l, "20261120000000", live, id, p, tar, fromStdin)+"\n)")
				}
			}
		}
	}
	for _, verify := range []bool{false, true} {
		for _, compression := range []string{compressNone, compressGzip, compressZstd} {
			key := "upload"
			if verify {
				key += ", verify"
			}
			if compression != compressNone {
				key += ", " + compression
			}
			for _, tar := range []string{tarGNU, tarBusyBox} {
				scripts[key+", "+tar+" tar"] = uploadScript(uploadArgs{layout: l, id: id, live: live, manifestSHA: strings.Repeat("ab", 32), verify: verify, compression: compression, revision: name, tar: tar})
				scripts[key+", "+tar+" tar, from a pack"] = uploadScript(uploadArgs{layout: l, id: id, live: live, manifestSHA: strings.Repeat("ab", 32), verify: verify, compression: compression, revision: name, tar: tar, archive: l.ReleaseDir(id) + "/" + packName})
			}
		}
	}
	return scripts
}

// parses runs sh -n on script: nil when sh reads it as valid syntax.
func parses(script string) error {
	cmd := exec.Command("/bin/sh", "-n")
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return &parseError{err: err, out: string(out)}
	}
	return nil
}

type parseError struct {
	err error
	out string
}

func (e *parseError) Error() string { return e.err.Error() + ": " + e.out }

func TestEveryScriptParses(t *testing.T) {
	for _, name := range hostileNames {
		for what, script := range everyScript(name) {
			if err := parses(script); err != nil {
				t.Errorf("%s with %q: sh -n: %v\n%s", what, name, err, script)
			}
		}
	}
}

// FuzzScripts builds every script with arbitrary names: each must be
// valid sh (no name can break out of its quoting and leave a script that
// sh reads differently, or not at all).
func FuzzScripts(f *testing.F) {
	for _, name := range hostileNames {
		f.Add(name)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if shell.Check(name) != nil {
			return // no argument can hold a NUL; config refuses it
		}
		for what, script := range everyScript(name) {
			if err := parses(script); err != nil {
				t.Fatalf("%s with %q: sh -n: %v\n%s", what, name, err, script)
			}
		}
	})
}

// TestScriptsOfRealRunsParse runs every pipeline on this machine with
// hostile names in the deploy path, shared paths, hooks and history, and
// checks that sh reads every script they sent, and that none of the names
// ran.
func TestScriptsOfRealRunsParse(t *testing.T) {
	dir := t.TempDir()
	canary := filepath.Join(dir, "pwned")
	evil := "$(touch " + canary + ")`touch " + canary + "`;touch " + canary + " 'q' \"d\""
	site := filepath.Join(dir, "site")
	for rel, body := range map[string]string{"index.html": "v1", evil + ".txt": "odd", "data/seed": "seed"} {
		writeFile(t, filepath.Join(site, rel), body)
	}
	deployTo := filepath.Join(dir, "dep "+evil)
	writeFile(t, filepath.Join(deployTo, "shared", "x "+evil+".env"), "SECRET=1")
	cfg := &config.Config{
		App: "demo", KeepReleases: 1, Symlink: "relative",
		Layout:   config.Layout{Releases: "releases", Shared: "shared", Current: "current", Repo: "repo"},
		Source:   config.Source{Strategy: "upload", Path: site, Delta: true, Verify: "all", Compress: "gzip"},
		Shared:   config.Shared{Dirs: []string{"data"}, Files: []string{"x " + evil + ".env"}},
		Writable: config.Writable{Dirs: []string{"cache " + evil}, Mode: "group"},
		Env:      []config.EnvVar{{Name: "TOKEN", Value: evil, Secret: true}, {Name: "PLAIN", Value: evil}},
		Hooks: config.Hooks{
			BeforeSwitch:  []config.Hook{{Run: "printf '%s' \"$TOKEN\" > token-seen"}, {Run: "printf '%s' \"$PLAIN\" > plain-seen", Once: true}},
			AfterSwitch:   []config.Hook{{Run: "true"}},
			AfterRollback: []config.Hook{{Run: "true"}},
		},
	}
	stage := &config.Stage{Name: "demo", DeployTo: deployTo, Hosts: []config.Host{{Name: "local", Host: "local", Local: true}}}
	cfg.Stages = []*config.Stage{stage}
	rec := &recorder{}
	opts := Options{Config: cfg, Stage: stage, Hosts: stage.Hosts, Parallel: 1,
		Dial: func(context.Context, config.Host) (host.Executor, error) { return rec, nil }}
	ctx := context.Background()
	deploy := func(version string) {
		t.Helper()
		writeFile(t, filepath.Join(site, "index.html"), version)
		tree, err := source.Scan(site, nil)
		if err != nil {
			t.Fatal(err)
		}
		src := Source{Tree: tree, Revision: tree.Digest, Branch: evil}
		if _, err := PlanDeploy(ctx, opts, src); err != nil {
			t.Fatalf("plan %s: %v", version, err)
		}
		if _, err := Deploy(ctx, opts, src); err != nil {
			t.Fatalf("deploy %s: %v", version, err)
		}
	}
	if err := Setup(ctx, opts); err != nil {
		t.Fatal(err)
	}
	deploy("v1")
	deploy("v2") // a delta
	if _, err := Rollback(ctx, opts, RollbackOptions{}); err != nil {
		t.Fatal(err)
	}
	deploy("v3")
	for name, run := range map[string]func() error{
		"cleanup":  func() error { _, err := Cleanup(ctx, opts); return err },
		"check":    func() error { _, err := Check(ctx, opts); return err },
		"releases": func() error { _, err := Releases(ctx, opts); return err },
		"status":   func() error { _, err := Status(ctx, opts); return err },
		"exec":     func() error { return Exec(ctx, opts, "true") },
		"unlock":   func() error { _, err := Unlock(ctx, opts, false); return err },
	} {
		if err := run(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if _, err := os.Stat(canary); err == nil {
		t.Fatal("a name ran as a command")
	}
	for _, file := range []string{"token-seen", "plain-seen"} {
		if b, _ := os.ReadFile(filepath.Join(deployTo, "current", file)); string(b) != evil {
			t.Errorf("%s: the hook saw %q, want %q", file, b, evil)
		}
	}
	var scripts []string
	for _, op := range rec.ops {
		if kind, script, _ := strings.Cut(op, " "); kind == "exec" || kind == "query" {
			scripts = append(scripts, script)
		}
	}
	if len(scripts) < 40 {
		t.Fatalf("only %d scripts recorded", len(scripts))
	}
	for _, script := range scripts {
		if err := parses(script); err != nil {
			t.Errorf("sh -n: %v\n%s", err, script)
		}
	}
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}
