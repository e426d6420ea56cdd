package source

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/slipway-deploy/slipway/internal/testutil"
)

// gitTestEnv isolates the test's git commands, and ExportGit's, from the
// machine's git configuration.
func gitTestEnv(t *testing.T) {
	t.Helper()
	_, err := exec.LookPath("git")
	testutil.Require(t, "git on PATH: apt-get install git", err == nil)
	for _, kv := range [][2]string{
		{"GIT_CONFIG_GLOBAL", os.DevNull},
		{"GIT_CONFIG_NOSYSTEM", "1"},
		{"GIT_AUTHOR_NAME", "t"}, {"GIT_AUTHOR_EMAIL", "t@t"},
		{"GIT_COMMITTER_NAME", "t"}, {"GIT_COMMITTER_EMAIL", "t@t"},
		{"GIT_DIR", ""}, {"GIT_WORK_TREE", ""},
	} {
		t.Setenv(kv[0], kv[1])
	}
	os.Unsetenv("GIT_DIR")
	os.Unsetenv("GIT_WORK_TREE")
}

// allowFileProtocol lets submodules come from local paths, which git
// otherwise refuses (protocol.file.allow=user).
func allowFileProtocol(t *testing.T) {
	t.Setenv("GIT_CONFIG_COUNT", "1")
	t.Setenv("GIT_CONFIG_KEY_0", "protocol.file.allow")
	t.Setenv("GIT_CONFIG_VALUE_0", "always")
}

func testGit(t *testing.T, dir string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s in %s: %v\n%s", strings.Join(args, " "), dir, err, out)
	}
	return strings.TrimSpace(string(out))
}

// newRepo makes a repository on branch main in dir with files, committed.
func newTestRepo(t *testing.T, dir string, files map[string]string) string {
	t.Helper()
	testGit(t, "", "init", "-q", "-b", "main", dir)
	for rel, content := range files {
		writeFile(t, dir, rel, content, 0o644)
	}
	return testCommit(t, dir, "initial")
}

func testCommit(t *testing.T, dir, message string) string {
	t.Helper()
	testGit(t, dir, "add", "-A")
	testGit(t, dir, "commit", "-q", "--allow-empty", "-m", message)
	return testGit(t, dir, "rev-parse", "HEAD")
}

func testExport(t *testing.T, opts GitExport) *Export {
	t.Helper()
	e, err := ExportGit(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Remove() })
	return e
}

// exported lists an export as rel → content, or → "-> target" for symlinks.
func exportedFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.Type()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(p)
			files[rel] = "-> " + target
			return err
		}
		content, err := os.ReadFile(p)
		files[rel] = string(content)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func sortedNames(files map[string]string) string {
	var list []string
	for rel := range files {
		list = append(list, rel)
	}
	sort.Strings(list)
	return strings.Join(list, " ")
}

func wantExported(t *testing.T, dir string, want map[string]string) {
	t.Helper()
	got := exportedFiles(t, dir)
	if sortedNames(got) != sortedNames(want) {
		t.Fatalf("exported files: %s\nwant: %s", sortedNames(got), sortedNames(want))
	}
	for rel, content := range want {
		if got[rel] != content {
			t.Errorf("%s: %q, want %q", rel, got[rel], content)
		}
	}
}

func wantErrorContaining(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", parts)
	}
	for _, part := range parts {
		if !strings.Contains(err.Error(), part) {
			t.Errorf("error %q does not contain %q", err, part)
		}
	}
}

func TestExportHeadShipsOnlyTrackedFiles(t *testing.T) {
	gitTestEnv(t)
	repo := t.TempDir()
	testGit(t, "", "init", "-q", "-b", "main", repo)
	testGit(t, repo, "config", "user.name", "Dee Ployer")
	writeFile(t, repo, ".gitignore", "*.log\nvendor/\n", 0o644)
	writeFile(t, repo, "index.php", "<?php echo 1;", 0o644)
	writeFile(t, repo, "bin/run", "#!/bin/sh\n", 0o755)
	if err := os.Symlink("index.php", filepath.Join(repo, "link.php")); err != nil {
		t.Fatal(err)
	}
	head := testCommit(t, repo, "one")
	writeFile(t, repo, "untracked.txt", "u", 0o644)
	writeFile(t, repo, "debug.log", "ignored", 0o644)
	writeFile(t, repo, "vendor/lib.php", "ignored", 0o644)
	writeFile(t, repo, "bin/untracked", "u", 0o755)

	// Any directory inside the repository will do.
	e := testExport(t, GitExport{RepoDir: filepath.Join(repo, "bin")})
	wantExported(t, e.Dir, map[string]string{
		".gitignore": "*.log\nvendor/\n",
		"index.php":  "<?php echo 1;",
		"bin/run":    "#!/bin/sh\n",
		"link.php":   "-> index.php",
	})
	if e.Commit != head || e.Ref != "main" || e.Dirty || e.Author != "Dee Ployer" {
		t.Errorf("export = %+v, want commit %s, ref main, clean, author Dee Ployer", e, head)
	}
	if strings.HasPrefix(e.Dir, repo) {
		t.Errorf("export dir %s is inside the repository", e.Dir)
	}
	for rel, mode := range map[string]fs.FileMode{"bin/run": 0o755, "index.php": 0o644, "bin": fs.ModeDir | 0o755} {
		info, err := os.Lstat(filepath.Join(e.Dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode() != mode {
			t.Errorf("%s: mode %v, want %v", rel, info.Mode(), mode)
		}
	}
	// The export is what Scan ships.
	tree, err := Scan(e.Dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(tree.Files) != 5 { // four files and bin/
		t.Errorf("scanned %d entries, want 5", len(tree.Files))
	}

	if err := e.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(e.Dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("export dir still there after Remove: %v", err)
	}
	if err := e.Remove(); err != nil {
		t.Errorf("second Remove: %v", err)
	}
	if _, err := os.Stat(filepath.Join(repo, "untracked.txt")); err != nil {
		t.Errorf("the working tree was touched: %v", err)
	}

	// Inside a git hook, GIT_DIR names the hook's repository; the
	// export still reads the one it was given.
	other := t.TempDir()
	newTestRepo(t, other, map[string]string{"other": "other"})
	t.Setenv("GIT_DIR", filepath.Join(other, ".git"))
	if e := testExport(t, GitExport{RepoDir: repo}); e.Commit != head {
		t.Errorf("with GIT_DIR set: exported %s, want %s", e.Commit, head)
	}
	os.Unsetenv("GIT_DIR")

	testGit(t, repo, "checkout", "-q", "--detach")
	if e := testExport(t, GitExport{RepoDir: repo}); e.Ref != "" || e.Commit != head {
		t.Errorf("detached HEAD: ref %q commit %s, want no ref and %s", e.Ref, e.Commit, head)
	}
}

func TestExportRevisions(t *testing.T) {
	gitTestEnv(t)
	repo := t.TempDir()
	first := newTestRepo(t, repo, map[string]string{"version": "1"})
	testGit(t, repo, "tag", "-a", "-m", "release 1", "v1")
	writeFile(t, repo, "version", "2", 0o644)
	second := testCommit(t, repo, "two")
	testGit(t, repo, "tag", "v2")
	testGit(t, repo, "checkout", "-q", "-b", "feature")
	writeFile(t, repo, "version", "feature", 0o644)
	feature := testCommit(t, repo, "feature")
	testGit(t, repo, "checkout", "-q", "main")
	writeFile(t, repo, "version", "3", 0o644)
	testCommit(t, repo, "three")

	for _, tc := range []struct {
		name    string
		opts    GitExport
		commit  string
		ref     string
		version string
	}{
		{"annotated tag", GitExport{Tag: "v1"}, first, "v1", "1"},
		{"lightweight tag", GitExport{Tag: "v2"}, second, "v2", "2"},
		{"branch", GitExport{Branch: "feature"}, feature, "feature", "feature"},
		{"full SHA", GitExport{Revision: first}, first, "", "1"},
		{"short SHA", GitExport{Revision: second[:7]}, second, "", "2"},
		{"revision expression", GitExport{Revision: "HEAD~2"}, first, "", "1"},
		{"tag as revision", GitExport{Revision: "v1"}, first, "", "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.RepoDir = repo
			e := testExport(t, tc.opts)
			if e.Commit != tc.commit || e.Ref != tc.ref {
				t.Errorf("commit %s ref %q, want %s %q", e.Commit, e.Ref, tc.commit, tc.ref)
			}
			wantExported(t, e.Dir, map[string]string{"version": tc.version})
		})
	}

	t.Run("branch only on origin", func(t *testing.T) {
		clone := filepath.Join(t.TempDir(), "clone")
		testGit(t, "", "clone", "-q", repo, clone)
		e := testExport(t, GitExport{RepoDir: clone, Branch: "feature"})
		if e.Commit != feature || e.Ref != "feature" {
			t.Errorf("commit %s ref %q, want %s feature", e.Commit, e.Ref, feature)
		}
	})
}

func TestExportUnknownRevision(t *testing.T) {
	gitTestEnv(t)
	repo := t.TempDir()
	newTestRepo(t, repo, map[string]string{"a": "a"})
	_, err := ExportGit(context.Background(), GitExport{RepoDir: repo, Tag: "v9.9"})
	wantErrorContaining(t, err, `unknown tag "v9.9"`, repo, "list tags with: git tag")
	_, err = ExportGit(context.Background(), GitExport{RepoDir: repo, Revision: "v9.9"})
	wantErrorContaining(t, err, `unknown revision "v9.9"`, repo, "(git: ", "git tag")
	_, err = ExportGit(context.Background(), GitExport{RepoDir: repo, Branch: "nope"})
	wantErrorContaining(t, err, `unknown branch "nope"`, "git branch --all")
	_, err = ExportGit(context.Background(), GitExport{RepoDir: repo, Revision: "HEAD:a"})
	wantErrorContaining(t, err, `unknown revision "HEAD:a"`)
}

func TestExportRefusesOptionsAsNames(t *testing.T) {
	gitTestEnv(t)
	repo := t.TempDir()
	newTestRepo(t, repo, map[string]string{"a": "a"})
	victim := filepath.Join(t.TempDir(), "written")
	for _, opts := range []GitExport{
		{Revision: "--output=" + victim},
		{Revision: "-h"},
		{Branch: "--output=" + victim},
		{Tag: "-x"},
		{Branch: "a..b"},
		{Tag: "v1 v2"},
		{Branch: "x~1"},
	} {
		opts.RepoDir = repo
		e, err := ExportGit(context.Background(), opts)
		if err == nil {
			e.Remove()
			t.Errorf("%+v: no error", opts)
		}
	}
	if _, err := os.Stat(victim); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("an option-like name reached git as an option: %s exists", victim)
	}
}

func TestExportDirty(t *testing.T) {
	gitTestEnv(t)
	repo := t.TempDir()
	head := newTestRepo(t, repo, map[string]string{"a.php": "a1", "b.php": "b1", "c.php": "c1"})
	writeFile(t, repo, "a.php", "a2", 0o644)
	writeFile(t, repo, "c.php", "c2", 0o644)
	writeFile(t, repo, "staged.php", "new", 0o644)
	testGit(t, repo, "add", "staged.php")
	writeFile(t, repo, "untracked.php", "u", 0o644)
	statusBefore := testGit(t, repo, "status", "--porcelain")

	_, err := ExportGit(context.Background(), GitExport{RepoDir: repo})
	wantErrorContaining(t, err, "uncommitted changes (3 files: a.php, c.php, staged.php)", "--allow-dirty")

	e := testExport(t, GitExport{RepoDir: repo, AllowDirty: true})
	if !e.Dirty || e.Commit != head || e.Ref != "main" {
		t.Errorf("dirty export = %+v, want Dirty, commit %s, ref main", e, head)
	}
	wantExported(t, e.Dir, map[string]string{"a.php": "a2", "b.php": "b1", "c.php": "c2", "staged.php": "new"})
	if after := testGit(t, repo, "status", "--porcelain"); after != statusBefore {
		t.Errorf("the working tree changed:\n%s\nwas:\n%s", after, statusBefore)
	}
	if stashes := testGit(t, repo, "stash", "list"); stashes != "" {
		t.Errorf("the stash list changed: %s", stashes)
	}

	// With an explicit revision the working tree does not matter.
	e = testExport(t, GitExport{RepoDir: repo, Revision: "HEAD"})
	if e.Dirty {
		t.Error("an explicit revision was marked dirty")
	}
	wantExported(t, e.Dir, map[string]string{"a.php": "a1", "b.php": "b1", "c.php": "c1"})

	// Untracked files alone do not make a tree dirty.
	testGit(t, repo, "reset", "-q", "--hard")
	if e := testExport(t, GitExport{RepoDir: repo}); e.Dirty {
		t.Error("untracked files made the export dirty")
	}
}

func TestExportSubdir(t *testing.T) {
	gitTestEnv(t)
	repo := t.TempDir()
	newTestRepo(t, repo, map[string]string{"public/index.html": "hi", "public/css/site.css": "body{}", "README": "r"})
	t.Setenv("GIT_COMMITTER_DATE", "@1600000000")
	testGit(t, repo, "commit", "-q", "--amend", "--no-edit")
	e := testExport(t, GitExport{RepoDir: repo, Subdir: "./public/"})
	wantExported(t, e.Dir, map[string]string{"index.html": "hi", "css/site.css": "body{}"})
	// The commit's time, as git archive gives a whole commit, not the
	// time of the export (which git archive gives a tree).
	for _, rel := range []string{"index.html", "css/site.css"} {
		info, err := os.Stat(filepath.Join(e.Dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		if got := info.ModTime().Unix(); got != 1600000000 {
			t.Errorf("%s: time %d, want the commit's, 1600000000", rel, got)
		}
	}

	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	_, err := ExportGit(context.Background(), GitExport{RepoDir: repo, Subdir: "missing"})
	wantErrorContaining(t, err, "subdirectory missing does not exist")
	if !errors.Is(err, ErrEmpty) {
		t.Errorf("missing subdir: %v, want ErrEmpty", err)
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("a failed export left %v in the temporary directory", left)
	}
	_, err = ExportGit(context.Background(), GitExport{RepoDir: repo, Subdir: "README"})
	wantErrorContaining(t, err, "is a file, not a directory")
	_, err = ExportGit(context.Background(), GitExport{RepoDir: repo, Subdir: "../etc"})
	wantErrorContaining(t, err, "relative path inside the repository")
}

func TestExportNotARepository(t *testing.T) {
	gitTestEnv(t)
	plain := t.TempDir()
	_, err := ExportGit(context.Background(), GitExport{RepoDir: plain})
	wantErrorContaining(t, err, plain, "not in a git repository", "source.path")

	empty := t.TempDir()
	testGit(t, "", "init", "-q", "-b", "main", empty)
	_, err = ExportGit(context.Background(), GitExport{RepoDir: empty})
	if !errors.Is(err, ErrEmpty) {
		t.Errorf("repository without commits: %v, want ErrEmpty", err)
	}

	onlyDirs := t.TempDir()
	testGit(t, "", "init", "-q", "-b", "main", onlyDirs)
	testCommit(t, onlyDirs, "nothing")
	_, err = ExportGit(context.Background(), GitExport{RepoDir: onlyDirs})
	if !errors.Is(err, ErrEmpty) {
		t.Errorf("commit without files: %v, want ErrEmpty", err)
	}
}

// submoduleRepos makes app, with lib as a submodule at lib/, which has
// inner as a submodule at inner/. They are made side by side in root, with
// relative URLs, as on a forge.
func submoduleRepos(t *testing.T) (root, app string) {
	t.Helper()
	allowFileProtocol(t)
	root = t.TempDir()
	newTestRepo(t, filepath.Join(root, "inner"), map[string]string{"inner.txt": "inner"})
	lib := filepath.Join(root, "lib")
	newTestRepo(t, lib, map[string]string{"lib.txt": "lib"})
	testGit(t, lib, "submodule", "add", "-q", "../inner", "inner")
	testCommit(t, lib, "add inner")
	app = filepath.Join(root, "app")
	newTestRepo(t, app, map[string]string{"app.txt": "app"})
	testGit(t, app, "submodule", "add", "-q", "../lib", "lib")
	testGit(t, app, "submodule", "update", "-q", "--init", "--recursive")
	testCommit(t, app, "add lib")
	return root, app
}

func TestExportSubmodules(t *testing.T) {
	gitTestEnv(t)
	root, app := submoduleRepos(t)
	gitmodules := "[submodule \"lib\"]\n\tpath = lib\n\turl = ../lib\n"
	withSubmodules := map[string]string{
		".gitmodules":         gitmodules,
		"app.txt":             "app",
		"lib/.gitmodules":     "[submodule \"inner\"]\n\tpath = inner\n\turl = ../inner\n",
		"lib/lib.txt":         "lib",
		"lib/inner/inner.txt": "inner",
	}

	e := testExport(t, GitExport{RepoDir: app})
	wantExported(t, e.Dir, map[string]string{".gitmodules": gitmodules, "app.txt": "app"})
	if info, err := os.Stat(filepath.Join(e.Dir, "lib")); err != nil || !info.IsDir() {
		t.Errorf("without submodules, lib/ should be an empty directory: %v", err)
	}

	e = testExport(t, GitExport{RepoDir: app, Submodules: true})
	wantExported(t, e.Dir, withSubmodules)

	t.Run("not checked out", func(t *testing.T) {
		clone := filepath.Join(root, "clone")
		testGit(t, "", "clone", "-q", app, clone)
		_, err := ExportGit(context.Background(), GitExport{RepoDir: clone, Submodules: true})
		wantErrorContaining(t, err, "submodule lib", "git submodule update --init --recursive")
		// With a cache, they come from their URLs, resolved against
		// the clone's origin.
		e := testExport(t, GitExport{RepoDir: clone, Submodules: true, CacheDir: t.TempDir()})
		wantExported(t, e.Dir, withSubmodules)
	})

	t.Run("checkout removed", func(t *testing.T) {
		clone := filepath.Join(root, "clone2")
		testGit(t, "", "clone", "-q", "--recurse-submodules", app, clone)
		if err := os.RemoveAll(filepath.Join(clone, "lib")); err != nil {
			t.Fatal(err)
		}
		// git's clone in .git/modules/lib still has it.
		e := testExport(t, GitExport{RepoDir: clone, Submodules: true, Revision: "HEAD"})
		wantExported(t, e.Dir, withSubmodules)
	})

	t.Run("mirror", func(t *testing.T) {
		e := testExport(t, GitExport{RepoURL: app, CacheDir: t.TempDir(), Submodules: true})
		wantExported(t, e.Dir, withSubmodules)
	})

	t.Run("dirty submodule", func(t *testing.T) {
		writeFile(t, app, "lib/lib.txt", "changed", 0o644)
		writeFile(t, app, "lib/untracked.txt", "u", 0o644)
		t.Cleanup(func() { testGit(t, filepath.Join(app, "lib"), "checkout", "-q", "lib.txt") })
		_, err := ExportGit(context.Background(), GitExport{RepoDir: app, Submodules: true})
		wantErrorContaining(t, err, "uncommitted changes (1 file: lib)")
		// Not exporting submodules, their changes do not matter.
		if e := testExport(t, GitExport{RepoDir: app}); e.Dirty {
			t.Error("a change inside a submodule made an export without submodules dirty")
		}
		e := testExport(t, GitExport{RepoDir: app, Submodules: true, AllowDirty: true})
		want := map[string]string{}
		for rel, content := range withSubmodules {
			want[rel] = content
		}
		want["lib/lib.txt"] = "changed"
		wantExported(t, e.Dir, want)
	})
}

func TestExportMirror(t *testing.T) {
	gitTestEnv(t)
	dir := t.TempDir()
	remote := filepath.Join(dir, "remote.git")
	testGit(t, "", "init", "-q", "--bare", "-b", "main", remote)
	work := filepath.Join(dir, "work")
	first := newTestRepo(t, work, map[string]string{"version": "1"})
	testGit(t, work, "tag", "-a", "-m", "one", "v1")
	testGit(t, work, "push", "-q", "--tags", remote, "main")
	cache := filepath.Join(dir, "cache")

	e := testExport(t, GitExport{RepoURL: remote, CacheDir: cache})
	if e.Commit != first || e.Ref != "main" {
		t.Errorf("commit %s ref %q, want %s main", e.Commit, e.Ref, first)
	}
	wantExported(t, e.Dir, map[string]string{"version": "1"})
	mirrors, _ := os.ReadDir(cache)
	if len(mirrors) != 1 {
		t.Fatalf("cache holds %v, want one mirror", mirrors)
	}
	mirror := filepath.Join(cache, mirrors[0].Name())
	// A marker shows whether the next export fetches into this mirror
	// or clones again.
	writeFile(t, mirror, "marker", "", 0o644)

	writeFile(t, work, "version", "2", 0o644)
	second := testCommit(t, work, "two")
	testGit(t, work, "push", "-q", remote, "main")
	testGit(t, work, "push", "-q", remote, "main:feature")
	e = testExport(t, GitExport{RepoURL: remote, CacheDir: cache})
	if e.Commit != second {
		t.Errorf("after a push: commit %s, want %s", e.Commit, second)
	}
	wantExported(t, e.Dir, map[string]string{"version": "2"})
	if _, err := os.Stat(filepath.Join(mirror, "marker")); err != nil {
		t.Error("the mirror was cloned again instead of fetched")
	}
	if e := testExport(t, GitExport{RepoURL: remote, CacheDir: cache, Tag: "v1"}); e.Commit != first {
		t.Errorf("tag v1 from the mirror: %s, want %s", e.Commit, first)
	}
	if e := testExport(t, GitExport{RepoURL: remote, CacheDir: cache, Branch: "feature"}); e.Commit != second || e.Ref != "feature" {
		t.Errorf("branch feature from the mirror: %s %q, want %s", e.Commit, e.Ref, second)
	}
	_, err := ExportGit(context.Background(), GitExport{RepoURL: remote, CacheDir: cache, Branch: "gone"})
	wantErrorContaining(t, err, `unknown branch "gone" in `+remote, "git ls-remote --heads "+remote)

	// A cache entry that mirrors something else is replaced.
	testGit(t, mirror, "config", "remote.origin.url", filepath.Join(dir, "other.git"))
	e = testExport(t, GitExport{RepoURL: remote, CacheDir: cache})
	wantExported(t, e.Dir, map[string]string{"version": "2"})
	if _, err := os.Stat(filepath.Join(mirror, "marker")); err == nil {
		t.Error("a mirror of another URL was used")
	}

	empty := filepath.Join(dir, "empty.git")
	testGit(t, "", "init", "-q", "--bare", "-b", "main", empty)
	_, err = ExportGit(context.Background(), GitExport{RepoURL: empty, CacheDir: cache})
	if !errors.Is(err, ErrEmpty) {
		t.Errorf("empty remote repository: %v, want ErrEmpty", err)
	}

	missing := filepath.Join(dir, "missing.git")
	_, err = ExportGit(context.Background(), GitExport{RepoURL: missing, CacheDir: cache})
	wantErrorContaining(t, err, "cannot clone "+missing, "(git: ")
	if left, _ := os.ReadDir(cache); len(left) != 2 {
		t.Errorf("a failed clone left %v in the cache", left)
	}

	_, err = ExportGit(context.Background(), GitExport{RepoURL: "https://deployer:s3cret@127.0.0.1:1/shop.git", CacheDir: cache})
	wantErrorContaining(t, err, "cannot clone https://deployer:xxxxx@127.0.0.1:1/shop.git")
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("the error shows the password: %v", err)
	}
}

func TestResolveSubmoduleURL(t *testing.T) {
	for _, tc := range []struct{ base, rel, want string }{
		{"git@github.com:acme/shop.git", "../lib.git", "git@github.com:acme/lib.git"},
		{"git@github.com:acme/shop.git", "../../other/lib.git", "git@github.com:other/lib.git"},
		{"https://github.com/acme/shop.git/", "../lib", "https://github.com/acme/lib"},
		{"https://github.com/acme/shop", "./lib", "https://github.com/acme/shop/lib"},
		{"/srv/git/shop", "../lib", "/srv/git/lib"},
		{"/srv/git/shop", "https://example.com/lib.git", "https://example.com/lib.git"},
	} {
		got, err := resolveSubmoduleURL(tc.base, tc.rel)
		if err != nil || got != tc.want {
			t.Errorf("resolveSubmoduleURL(%q, %q) = %q, %v; want %q", tc.base, tc.rel, got, err, tc.want)
		}
	}
	if _, err := resolveSubmoduleURL("/srv", "--upload-pack=x"); err == nil {
		t.Error("an option-like submodule URL was accepted")
	}
}

// An export kept in memory ships exactly what the same export on disk
// ships: names (any bytes), modes, sizes, contents, link targets, digest;
// one that outgrows the limit goes to disk instead.
func TestExportInMemoryMatchesDisk(t *testing.T) {
	gitTestEnv(t)
	allowFileProtocol(t)
	_, app := submoduleRepos(t)
	writeFile(t, app, "bin/run", "#!/bin/sh\n", 0o755)
	writeFile(t, app, "deep/a/b/c/d.txt", "deep", 0o644)
	writeFile(t, app, "odd \"name\" \\n\xff.txt", "odd", 0o644)
	if err := os.Symlink("a/b/c/d.txt", filepath.Join(app, "deep/link.txt")); err != nil {
		t.Fatal(err)
	}
	testCommit(t, app, "more")

	scan := func(t *testing.T, opts GitExport) *Tree {
		t.Helper()
		e := testExport(t, opts)
		if inMemory := e.Dir == ""; inMemory != (opts.MemoryLimit > 1) {
			t.Fatalf("MemoryLimit %d: export in memory = %v", opts.MemoryLimit, inMemory)
		}
		tree, err := e.Scan([]string{"deep/a/b/c"})
		if err != nil {
			t.Fatal(err)
		}
		return tree
	}
	for name, opts := range map[string]GitExport{
		"plain":      {RepoDir: app},
		"submodules": {RepoDir: app, Submodules: true},
		"subdir":     {RepoDir: app, Subdir: "deep"},
	} {
		t.Run(name, func(t *testing.T) {
			disk := scan(t, opts)
			opts.MemoryLimit = 1 << 20
			mem := scan(t, opts)
			opts.MemoryLimit = 1 // too small: on disk after all
			fallback := scan(t, opts)
			for _, other := range []*Tree{mem, fallback} {
				if other.Digest != disk.Digest || len(other.Files) != len(disk.Files) {
					t.Fatalf("digest %s with %d entries, want %s with %d", other.Digest, len(other.Files), disk.Digest, len(disk.Files))
				}
				for i, f := range other.Files {
					want := disk.Files[i]
					if f.Rel != want.Rel || f.Mode != want.Mode || f.Size != want.Size || f.Link != want.Link || f.SHA256 != want.SHA256 ||
						(f.Mode.IsRegular() && !f.ModTime.Equal(want.ModTime)) {
						t.Errorf("entry %d: %+v, want %+v", i, f, want)
					}
				}
				// The same tar for a file (directories and links have the
				// times of their creation on disk).
				last := len(disk.Files) - 1
				for !disk.Files[last].Mode.IsRegular() {
					last--
				}
				var a, b strings.Builder
				if err := other.WriteTarOf(&a, other.Files[last:last+1], nil); err != nil {
					t.Fatal(err)
				}
				if err := disk.WriteTarOf(&b, disk.Files[last:last+1], nil); err != nil {
					t.Fatal(err)
				}
				if a.String() != b.String() {
					t.Errorf("the tar of %s differs", disk.Files[last].Rel)
				}
			}
			if name == "plain" && !slicesContainRel(mem.Files, "odd \"name\" \\n\xff.txt") {
				t.Errorf("the odd name is missing from the export in memory")
			}
		})
	}
}

func slicesContainRel(files []File, rel string) bool {
	for _, f := range files {
		if f.Rel == rel {
			return true
		}
	}
	return false
}
