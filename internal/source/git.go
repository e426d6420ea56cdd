package source

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// GitExport says which revision of which repository to export.
type GitExport struct {
	RepoDir    string // a local repository (its working tree or any dir inside it); used when RepoURL is ""
	RepoURL    string // source.repo: a remote (or file path/URL) kept as a bare mirror under CacheDir, fetched each time
	CacheDir   string // where mirrors of RepoURL (and of submodules not found locally) live, one dir per URL
	Revision   string // any commit-ish (--revision); mutually exclusive with Branch/Tag (the caller checks)
	Branch     string // --branch or source.branch
	Tag        string // --tag
	Submodules bool   // source.submodules: include submodules (recursively) in the export
	AllowDirty bool   // ship uncommitted changes of tracked files (RepoDir only, default revision only)
	Subdir     string // optional: export only this subdirectory of the repo, as the root
	// MemoryLimit keeps the export in memory when its files hold at most
	// this many bytes (0: always on disk, in a temporary directory, as a
	// build needs); ExportGit only.
	MemoryLimit int64
}

// Export is a clean copy of one revision in a temporary directory.
type Export struct {
	Dir    string // temp dir holding the files (never the working tree itself); "" for an export in memory
	Commit string // full SHA that was exported (for a dirty export: HEAD's SHA)
	Ref    string // branch or tag name deployed, "" for a bare revision; for the default, the current branch ("" if detached)
	Dirty  bool   // uncommitted tracked changes were included (AllowDirty)
	Author string // git config user.name of the deploying machine, or ""

	mem *memFS // the files, for an export in memory
}

// Scan is Scan of the exported files, wherever they are.
func (e *Export) Scan(exclude []string) (*Tree, error) {
	if e.mem != nil {
		return scanFS(e.mem, "the export of "+short(e.Commit), exclude)
	}
	return Scan(e.Dir, exclude)
}

// maxSubmoduleDepth bounds nesting, so repositories that contain each other
// as submodules cannot recurse without end.
const maxSubmoduleDepth = 16

// GitRevision is a revision of a repository resolved to its commit,
// before anything is exported: a deploy learns what it would ship, and
// whether that is live already, before it spends time on an export or a
// build.
type GitRevision struct {
	Commit string // full SHA (for a dirty export: HEAD's SHA)
	Ref    string // branch or tag name deployed, "" for a bare revision
	Dirty  bool   // uncommitted tracked changes will be included (AllowDirty)

	repo    *repository
	treeish string // what is exported: Commit, or a commit of the dirty working tree
	subdir  string
	opts    GitExport
}

// ResolveGit opens the repository (fetching the mirror of a remote one)
// and resolves the revision opts names, refusing a dirty working tree
// unless opts.AllowDirty.
func ResolveGit(ctx context.Context, opts GitExport) (*GitRevision, error) {
	subdir, err := cleanSubdir(opts.Subdir)
	if err != nil {
		return nil, err
	}
	var repo *repository
	if opts.RepoURL != "" {
		repo, err = openMirror(ctx, opts.RepoURL, opts.CacheDir, "", false)
	} else {
		repo, err = openLocal(ctx, opts.RepoDir)
	}
	if err != nil {
		return nil, err
	}
	commit, ref, err := repo.resolve(ctx, opts)
	if err != nil {
		return nil, err
	}
	g := &GitRevision{Commit: commit, Ref: ref, repo: repo, treeish: commit, subdir: subdir, opts: opts}
	defaultRevision := opts.Revision == "" && opts.Branch == "" && opts.Tag == ""
	if defaultRevision && repo.worktree != "" {
		changed, err := repo.uncommitted(ctx, opts.Submodules)
		if err != nil {
			return nil, err
		}
		if len(changed) > 0 {
			if !opts.AllowDirty {
				return nil, dirtyError(repo.worktree, changed)
			}
			g.Dirty = true
			if g.treeish, err = repo.workingTreeCommit(ctx, commit); err != nil {
				return nil, err
			}
		}
	}
	return g, nil
}

// ExportGit copies one revision of a repository into a fresh temporary
// directory with git archive: only tracked content, never untracked or
// ignored files of a working tree. Attributes such as export-ignore in
// .gitattributes are honoured, as with any git archive.
func ExportGit(ctx context.Context, opts GitExport) (*Export, error) {
	g, err := ResolveGit(ctx, opts)
	if err != nil {
		return nil, err
	}
	return g.Export(ctx, opts.MemoryLimit)
}

// Export exports the revision: in memory when its files hold at most
// memoryLimit bytes (0: always on disk, as a build needs).
func (g *GitRevision) Export(ctx context.Context, memoryLimit int64) (*Export, error) {
	repo, opts := g.repo, g.opts
	e := &Export{Commit: g.Commit, Ref: g.Ref, Dirty: g.Dirty}
	if memoryLimit > 0 {
		e.mem = newMemFS(memoryLimit)
		err := e.fill(ctx, repo, g.treeish, g.subdir, opts, memSink{e.mem})
		if err == nil || !errors.Is(err, errTooBig) {
			if err != nil {
				return nil, err
			}
			e.Author, _ = repo.git(ctx, "config", "--get", "user.name")
			return e, nil
		}
		e.mem = nil // too big: on disk after all
	}
	var err error
	if e.Dir, err = os.MkdirTemp("", "slipway-export-*"); err != nil {
		return nil, fmt.Errorf("export of %s: %w", repo.name, err)
	}
	root, err := os.OpenRoot(e.Dir)
	if err != nil {
		_ = e.Remove()
		return nil, err
	}
	dirs := newDirCache(root)
	err = e.fill(ctx, repo, g.treeish, g.subdir, opts, diskSink{dirs})
	dirs.close()
	root.Close()
	if err != nil {
		_ = e.Remove()
		return nil, err
	}
	e.Author, _ = repo.git(ctx, "config", "--get", "user.name")
	return e, nil
}

func (e *Export) fill(ctx context.Context, repo *repository, treeish, subdir string, opts GitExport, sink exportSink) error {
	x := &exporter{sink: sink, cacheDir: opts.CacheDir, submodules: opts.Submodules, dirty: e.Dirty}
	if err := x.export(ctx, repo, treeish, subdir, "", 0); err != nil {
		return err
	}
	if x.files == 0 {
		what := "commit " + short(e.Commit)
		if subdir != "" {
			what = "subdirectory " + subdir + " at " + what
		}
		return fmt.Errorf("%s of %s has no files: %w", what, repo.name, ErrEmpty)
	}
	return nil
}

// Remove deletes the exported files. It is safe to call more than once.
func (e *Export) Remove() error {
	if e == nil {
		return nil
	}
	e.mem = nil
	if e.Dir == "" {
		return nil
	}
	err := os.RemoveAll(e.Dir)
	if err != nil {
		// Builds can leave read-only directories behind (Go's module
		// cache does); make them writable and try once more.
		_ = filepath.WalkDir(e.Dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = os.Chmod(p, 0o700)
			}
			return nil
		})
		err = os.RemoveAll(e.Dir)
	}
	return err
}

// repository is a git repository slipway reads from: a working tree, a bare
// repository, a mirror in the cache, or git's own clone of a submodule.
type repository struct {
	args      []string // how git finds it: -C <worktree> or --git-dir=<dir>
	worktree  string   // top of the working tree; "" when there is none to look at
	commonDir string   // git directory shared by all its worktrees, holding modules/
	name      string   // how messages name it: its path, or the URL it mirrors
	url       string   // where it comes from, to resolve relative submodule URLs
	remote    bool     // a mirror of a URL: hints name git ls-remote, no origin/ fallback
	env       []string // extra environment for fetches
}

func (r *repository) git(ctx context.Context, args ...string) (string, error) {
	return runGit(ctx, r.env, append(slices.Clone(r.args), args...)...)
}

// openLocal opens the repository containing dir.
func openLocal(ctx context.Context, dir string) (*repository, error) {
	if dir == "" {
		dir = "."
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if info, err := os.Stat(abs); err != nil || !info.IsDir() {
		return nil, fmt.Errorf("%s is not a directory; run slipway inside a git repository, or set source.path to ship a directory as is", abs)
	}
	out, err := runGit(ctx, nil, "-C", abs, "rev-parse", "--is-bare-repository", "--git-common-dir")
	if err != nil {
		if errors.Is(err, errNoGit) {
			return nil, err
		}
		var gerr *gitError
		if errors.As(err, &gerr) {
			if advice := GitAdvice(gerr.stderr, GitHere, abs); advice != "" {
				return nil, fmt.Errorf("%s: git cannot read the repository (git: %s)\n%s", abs, gitMessage(err), advice)
			}
		}
		return nil, fmt.Errorf("%s is not in a git repository (git: %s); run slipway inside one, or set source.path to ship a directory as is", abs, gitMessage(err))
	}
	bare, commonDir, _ := strings.Cut(out, "\n")
	r := &repository{commonDir: absolutePath(abs, commonDir)}
	if bare == "true" {
		r.args, r.name = []string{"--git-dir=" + r.commonDir}, r.commonDir
	} else {
		top, err := runGit(ctx, nil, "-C", abs, "rev-parse", "--show-toplevel")
		if err != nil {
			return nil, fmt.Errorf("%s: no working tree (git: %s); run slipway in the repository's working tree", abs, gitMessage(err))
		}
		r.args, r.worktree, r.name = []string{"-C", top}, top, top
	}
	if r.url, _ = r.git(ctx, "config", "--get", "remote.origin.url"); r.url == "" {
		r.url = r.name
	}
	return r, nil
}

// openMirror brings the bare mirror of rawURL under cacheDir up to date,
// cloning it the first time. A mirror that already holds the commit want
// is used as it is: commits never change. fromContent marks URLs read from
// a repository's .gitmodules, which get git's submodule protocol rules.
func openMirror(ctx context.Context, rawURL, cacheDir, want string, fromContent bool) (*repository, error) {
	shown := redactURL(rawURL)
	if strings.HasPrefix(rawURL, "-") {
		return nil, fmt.Errorf("repository URL %q cannot start with \"-\"", shown)
	}
	remoteURL := rawURL
	if isLocalPath(remoteURL) {
		abs, err := filepath.Abs(remoteURL)
		if err != nil {
			return nil, err
		}
		remoteURL = abs
	}
	if cacheDir == "" {
		return nil, fmt.Errorf("no cache directory to keep a mirror of %s in", shown)
	}
	if err := os.MkdirAll(cacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("cache for %s: %w", shown, err)
	}
	dir := filepath.Join(cacheDir, mirrorName(remoteURL))
	r := &repository{
		args:      []string{"--git-dir=" + dir},
		commonDir: dir,
		name:      shown,
		url:       remoteURL,
		remote:    true,
	}
	if fromContent {
		// What git submodule update does: protocols a user may allow
		// on the command line (file:// among them) are not allowed to a
		// URL that came from a repository's content.
		r.env = []string{"GIT_PROTOCOL_FROM_USER=0"}
	}
	if _, err := os.Stat(dir); err == nil {
		origin, err := r.git(ctx, "config", "--get", "remote.origin.url")
		if err == nil && origin == remoteURL {
			if want != "" && r.has(ctx, want) {
				return r, nil
			}
			if _, err := r.git(ctx, "fetch", "--prune", "--quiet", "origin"); err != nil {
				return nil, remoteError("cannot fetch", rawURL, err)
			}
			return r, nil
		}
		// Not a mirror of this URL (broken, or made by something else):
		// it is slipway's cache, so start again.
		if err := os.RemoveAll(dir); err != nil {
			return nil, fmt.Errorf("cache for %s: %w", shown, err)
		}
	}
	// Clone beside the final place, then rename, so a clone cut short
	// never looks like a mirror.
	tmp, err := os.MkdirTemp(cacheDir, ".clone-*")
	if err != nil {
		return nil, fmt.Errorf("cache for %s: %w", shown, err)
	}
	if _, err := runGit(ctx, r.env, "clone", "--mirror", "--quiet", "--", remoteURL, tmp); err != nil {
		_ = os.RemoveAll(tmp)
		return nil, remoteError("cannot clone", rawURL, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		_ = os.RemoveAll(tmp)
		// Another slipway may have cloned it meanwhile.
		if origin, gerr := r.git(ctx, "config", "--get", "remote.origin.url"); gerr != nil || origin != remoteURL {
			return nil, fmt.Errorf("cache for %s: %w", shown, err)
		}
	}
	return r, nil
}

func remoteError(what, rawURL string, err error) error {
	if errors.Is(err, errNoGit) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s %s: %w", what, redactURL(rawURL), err)
	}
	shown := redactURL(rawURL)
	msg := strings.ReplaceAll(gitMessage(err), rawURL, shown)
	var gerr *gitError
	if errors.As(err, &gerr) {
		if advice := GitAdvice(gerr.stderr, GitHere, shown); advice != "" {
			return fmt.Errorf("%s %s (git: %s)\n%s", what, shown, msg, strings.ReplaceAll(advice, rawURL, shown))
		}
	}
	// A failure git's words do not explain: its message, and how to see
	// it again outside slipway.
	return fmt.Errorf("%s %s (git: %s); try it here with: git ls-remote %s", what, shown, msg, shown)
}

// mirrorName is the cache directory name of a URL.
func mirrorName(remoteURL string) string {
	sum := sha256.Sum256([]byte(remoteURL))
	return hex.EncodeToString(sum[:16])
}

// isLocalPath reports whether git reads u as a path rather than a URL or
// scp-like address (host:path, where no slash comes before the colon).
func isLocalPath(u string) bool {
	if strings.Contains(u, "://") {
		return false
	}
	colon, slash := strings.IndexByte(u, ':'), strings.IndexByte(u, '/')
	return colon < 0 || (slash >= 0 && slash < colon)
}

// redactURL hides a password in a URL, so tokens in source.repo do not end
// up in logs.
func redactURL(u string) string {
	if !strings.Contains(u, "://") {
		return u
	}
	parsed, err := url.Parse(u)
	if err != nil {
		return u
	}
	if _, ok := parsed.User.Password(); !ok {
		return u
	}
	return parsed.Redacted()
}

// resolve finds the commit to export and the ref name to record.
func (r *repository) resolve(ctx context.Context, opts GitExport) (commit, ref string, err error) {
	switch {
	case opts.Tag != "":
		if err := checkRefName(ctx, "tag", opts.Tag); err != nil {
			return "", "", err
		}
		commit, err := r.commit(ctx, "refs/tags/"+opts.Tag)
		if err != nil {
			return "", "", r.unknown("tag", opts.Tag, err)
		}
		return commit, opts.Tag, nil
	case opts.Branch != "":
		if err := checkRefName(ctx, "branch", opts.Branch); err != nil {
			return "", "", err
		}
		commit, err := r.commit(ctx, "refs/heads/"+opts.Branch)
		if err != nil && !r.remote {
			// A CI checkout often has the branch only as origin/B.
			if c, oerr := r.commit(ctx, "refs/remotes/origin/"+opts.Branch); oerr == nil {
				commit, err = c, nil
			}
		}
		if err != nil {
			return "", "", r.unknown("branch", opts.Branch, err)
		}
		return commit, opts.Branch, nil
	case opts.Revision != "":
		if strings.HasPrefix(opts.Revision, "-") {
			return "", "", fmt.Errorf("revision %q cannot start with \"-\"; give a commit, tag or branch", opts.Revision)
		}
		commit, err := r.commit(ctx, opts.Revision)
		if err != nil {
			return "", "", r.unknown("revision", opts.Revision, err)
		}
		return commit, "", nil
	}
	// A detached HEAD has no branch name to record.
	ref, _ = r.git(ctx, "symbolic-ref", "--quiet", "--short", "HEAD")
	commit, err = r.commit(ctx, "HEAD")
	if err != nil {
		if r.remote {
			return "", "", fmt.Errorf("%s: its default branch %s has no commits, or no longer exists (%w); choose a branch with --branch or source.branch", r.name, ref, ErrEmpty)
		}
		if ref != "" {
			return "", "", fmt.Errorf("%s: branch %s has no commits yet: %w", r.name, ref, ErrEmpty)
		}
		return "", "", fmt.Errorf("%s: HEAD does not name a commit (git: %s)", r.name, gitMessage(err))
	}
	return commit, ref, nil
}

func (r *repository) commit(ctx context.Context, rev string) (string, error) {
	return r.git(ctx, "rev-parse", "--verify", "--end-of-options", rev+"^{commit}")
}

func (r *repository) has(ctx context.Context, commit string) bool {
	_, err := r.git(ctx, "cat-file", "-e", "--end-of-options", commit+"^{commit}")
	return err == nil
}

func (r *repository) unknown(kind, name string, err error) error {
	if errors.Is(err, errNoGit) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var hint string
	switch {
	case r.remote && kind == "tag":
		hint = "list tags with: git ls-remote --tags " + r.name
	case r.remote && kind == "branch":
		hint = "list branches with: git ls-remote --heads " + r.name
	case r.remote:
		hint = "list branches and tags with: git ls-remote " + r.name
	case kind == "branch":
		hint = "list branches with: git branch --all"
	case kind == "tag":
		hint = "list tags with: git tag"
	default:
		hint = "list tags with: git tag, recent commits with: git log --oneline"
	}
	return fmt.Errorf("unknown %s %q in %s (git: %s); %s", kind, name, r.name, gitMessage(err), hint)
}

// checkRefName refuses branch and tag names git would not create, and any
// that could be read as an option.
func checkRefName(ctx context.Context, kind, name string) error {
	if strings.HasPrefix(name, "-") {
		return fmt.Errorf("%s %q cannot start with \"-\"", kind, name)
	}
	if _, err := runGit(ctx, nil, "check-ref-format", "refs/"+kind+"s/"+name); err != nil {
		if errors.Is(err, errNoGit) {
			return err
		}
		return fmt.Errorf("%q is not a valid %s name (see git help check-ref-format)", name, kind)
	}
	return nil
}

// uncommitted lists the tracked files whose working tree content differs
// from HEAD. Submodules count only when they are exported.
func (r *repository) uncommitted(ctx context.Context, submodules bool) ([]string, error) {
	args := []string{"--no-optional-locks", "status", "--porcelain=v1", "-z", "--untracked-files=no"}
	if !submodules {
		args = append(args, "--ignore-submodules=all")
	}
	out, err := r.git(ctx, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: git status: %s", r.name, gitMessage(err))
	}
	var changed []string
	fields := strings.Split(out, "\x00")
	for i := 0; i < len(fields); i++ {
		entry := fields[i]
		if len(entry) < 4 {
			continue
		}
		changed = append(changed, entry[3:])
		if entry[0] == 'R' || entry[0] == 'C' {
			i++ // the entry's original path follows
		}
	}
	return changed, nil
}

func dirtyError(worktree string, changed []string) error {
	const listed = 5
	names := strings.Join(changed[:min(len(changed), listed)], ", ")
	if len(changed) > listed {
		names += ", …"
	}
	files := "files"
	if len(changed) == 1 {
		files = "file"
	}
	return fmt.Errorf("the working tree %s has uncommitted changes (%d %s: %s); commit them, or deploy them anyway with --allow-dirty (the release is then marked dirty)",
		worktree, len(changed), files, names)
}

// workingTreeCommit returns a commit of the working tree's tracked content,
// made by git stash create without touching the working tree, the index or
// the stash list; head if nothing is uncommitted.
func (r *repository) workingTreeCommit(ctx context.Context, head string) (string, error) {
	// The commit is thrown away; a fixed identity spares machines with
	// no user.email configured the error about it.
	ident := []string{
		"GIT_AUTHOR_NAME=slipway", "GIT_AUTHOR_EMAIL=slipway@localhost",
		"GIT_COMMITTER_NAME=slipway", "GIT_COMMITTER_EMAIL=slipway@localhost",
	}
	out, err := runGit(ctx, ident, append(slices.Clone(r.args), "stash", "create")...)
	if err != nil {
		return "", fmt.Errorf("%s: git stash create: %s", r.name, gitMessage(err))
	}
	if out == "" {
		return head, nil
	}
	return out, nil
}

// exporter writes trees into the export directory.
type exporter struct {
	sink       exportSink
	cacheDir   string
	submodules bool
	dirty      bool // take checked-out submodules as they are in the working tree
	files      int  // regular files and symlinks written
}

// export writes the tree of commit (or its subdirectory subdir) at base
// inside the export directory, then its submodules if asked.
func (x *exporter) export(ctx context.Context, repo *repository, commit, subdir, base string, depth int) error {
	spec := commit
	var mtime time.Time
	if subdir != "" {
		spec = commit + ":" + subdir
		kind, err := repo.git(ctx, "cat-file", "-t", spec)
		if err != nil {
			return fmt.Errorf("subdirectory %s does not exist at commit %s of %s: %w", subdir, short(commit), repo.name, ErrEmpty)
		}
		if kind != "tree" {
			return fmt.Errorf("%s at commit %s of %s is a file, not a directory", subdir, short(commit), repo.name)
		}
		// git archive of a tree stamps every entry with the current time;
		// of a commit, with the commit's. Take the commit's here too, so
		// the same commit exports the same times (and a web server's
		// ETags, made of size and time, survive a redeploy).
		ct, err := repo.git(ctx, "show", "-s", "--format=%ct", commit)
		if err != nil {
			return err
		}
		sec, err := strconv.ParseInt(strings.TrimSpace(ct), 10, 64)
		if err != nil {
			return fmt.Errorf("%s: commit time of %s is %q: %w", repo.name, short(commit), ct, err)
		}
		mtime = time.Unix(sec, 0)
	}
	if err := x.archive(ctx, repo, spec, base, mtime); err != nil {
		return err
	}
	if !x.submodules {
		return nil
	}
	links, err := repo.gitlinks(ctx, spec)
	if err != nil || len(links) == 0 {
		return err
	}
	if depth >= maxSubmoduleDepth {
		return fmt.Errorf("%s: submodules nested more than %d deep", repo.name, maxSubmoduleDepth)
	}
	modules := repo.gitmodules(ctx, commit)
	for _, link := range links {
		full := path.Join(subdir, link.path)
		sub, subCommit, err := x.findSubmodule(ctx, repo, modules, full, link.commit)
		if err != nil {
			return err
		}
		if err := x.export(ctx, sub, subCommit, "", path.Join(base, link.path), depth+1); err != nil {
			return fmt.Errorf("submodule %s: %w", full, err)
		}
	}
	return nil
}

// archive extracts git archive's tar stream of spec at base, with every
// entry's time mtime unless that is zero.
func (x *exporter) archive(parent context.Context, repo *repository, spec, base string, mtime time.Time) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	args := append(slices.Clone(repo.args), "archive", "--format=tar", spec)
	cmd := gitCommand(ctx, repo.env, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return gitStartError(err)
	}
	files, extractErr := extractTar(stdout, x.sink, base, mtime)
	if extractErr != nil {
		cancel()
	}
	// Read the tar padding after the end marker, so git can exit.
	_, _ = io.Copy(io.Discard, stdout)
	waitErr := cmd.Wait()
	x.files += files
	switch {
	case parent.Err() != nil:
		return parent.Err()
	case waitErr != nil && extractErr == nil:
		return fmt.Errorf("%s: git archive %s: %s", repo.name, spec, gitMessage(&gitError{stderr: stderr.String(), err: waitErr}))
	case extractErr != nil:
		return fmt.Errorf("%s: extracting %s: %w", repo.name, spec, extractErr)
	}
	return nil
}

// extractTar writes a tar stream under base into the export. The files get
// git's own modes (0644, or 0755 for executables) whatever the umask, so the
// same commit exports the same tree on every machine. A non-zero mtime
// replaces the times in the stream.
func extractTar(r io.Reader, out exportSink, base string, mtime time.Time) (files int, err error) {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return files, nil
		}
		if err != nil {
			return files, err
		}
		if hdr.Typeflag == tar.TypeXGlobalHeader {
			continue
		}
		name := strings.TrimSuffix(hdr.Name, "/")
		// checkRel, not fs.ValidPath: a git tree may hold names that
		// are not UTF-8, and they ship.
		if checkRel(name) != nil {
			return files, fmt.Errorf("archive entry %q is outside the export directory", hdr.Name)
		}
		name = path.Join(base, name)
		if !mtime.IsZero() {
			hdr.ModTime = mtime
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := out.mkdir(name, hdr.ModTime); err != nil {
				return files, err
			}
		case tar.TypeReg:
			perm := fs.FileMode(0o644)
			if hdr.Mode&0o111 != 0 {
				perm = 0o755
			}
			if err := out.file(name, tr, hdr.Size, perm, hdr.ModTime); err != nil {
				return files, err
			}
			files++
		case tar.TypeSymlink:
			if err := out.symlink(name, hdr.Linkname, hdr.ModTime); err != nil {
				return files, err
			}
			files++
		default:
			return files, fmt.Errorf("archive entry %q has unsupported type %q", hdr.Name, hdr.Typeflag)
		}
	}
}

// exportSink is where an export's entries go: a directory on disk, or
// memory. Names are slash-separated, relative to the export's root;
// missing parent directories are made (0755).
type exportSink interface {
	mkdir(name string, modTime time.Time) error
	file(name string, content io.Reader, size int64, perm fs.FileMode, modTime time.Time) error
	symlink(name, target string, modTime time.Time) error
}

// diskSink writes an export under a directory through os.Root, so no entry
// can land outside it.
type diskSink struct{ dirs *dirCache }

func (d diskSink) mkdir(name string, _ time.Time) error {
	parent, err := d.dirs.get(path.Dir(name))
	if err != nil {
		return err
	}
	leaf := path.Base(name)
	if err := parent.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return err
	}
	return parent.Chmod(leaf, 0o755)
}

func (d diskSink) file(name string, content io.Reader, _ int64, perm fs.FileMode, modTime time.Time) error {
	parent, err := d.dirs.get(path.Dir(name))
	if err != nil {
		return err
	}
	return extractFile(parent, path.Base(name), content, perm, modTime)
}

func (d diskSink) symlink(name, target string, _ time.Time) error {
	parent, err := d.dirs.get(path.Dir(name))
	if err != nil {
		return err
	}
	return parent.Symlink(target, path.Base(name))
}

// memSink builds an export in memory.
type memSink struct{ fs *memFS }

func (m memSink) mkdir(name string, modTime time.Time) error {
	return m.fs.add(name, &memEntry{mode: fs.ModeDir | 0o755, modTime: modTime})
}

func (m memSink) file(name string, content io.Reader, size int64, perm fs.FileMode, modTime time.Time) error {
	return m.fs.addFile(name, content, size, perm, modTime)
}

func (m memSink) symlink(name, target string, modTime time.Time) error {
	return m.fs.add(name, &memEntry{mode: fs.ModeSymlink | 0o777, modTime: modTime, data: []byte(target)})
}

// dirCache keeps the directories being extracted into open, so each entry
// costs one lookup in its parent rather than a walk from the top, one
// component at a time (an app of 3,000 files took 75,000 openat calls).
type dirCache struct {
	root *os.Root
	open map[string]*os.Root // by slash path, "." is root
}

func newDirCache(root *os.Root) *dirCache {
	return &dirCache{root: root, open: map[string]*os.Root{".": root}}
}

// get opens dir (slash-separated, relative to the root), making it and its
// parents if they do not exist.
func (c *dirCache) get(dir string) (*os.Root, error) {
	if r, ok := c.open[dir]; ok {
		return r, nil
	}
	parent, err := c.get(path.Dir(dir))
	if err != nil {
		return nil, err
	}
	leaf := path.Base(dir)
	if err := parent.Mkdir(leaf, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return nil, err
	}
	r, err := parent.OpenRoot(leaf)
	if err != nil {
		return nil, err
	}
	if len(c.open) > 256 { // bounded: reopened when needed again
		c.close()
	}
	c.open[dir] = r
	return r, nil
}

// close closes every directory but the root.
func (c *dirCache) close() {
	for dir, r := range c.open {
		if dir != "." {
			r.Close()
		}
	}
	c.open = map[string]*os.Root{".": c.root}
}

func extractFile(dir *os.Root, name string, content io.Reader, perm fs.FileMode, modTime time.Time) error {
	f, err := dir.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, content); err != nil {
		f.Close()
		return err
	}
	// The umask may have taken bits off at creation.
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return dir.Chtimes(name, modTime, modTime)
}

type gitlink struct {
	path   string // relative to the exported tree
	commit string
}

// gitlinks lists the submodule entries of a tree.
func (r *repository) gitlinks(ctx context.Context, spec string) ([]gitlink, error) {
	out, err := r.git(ctx, "ls-tree", "-r", "-z", spec)
	if err != nil {
		return nil, fmt.Errorf("%s: git ls-tree %s: %s", r.name, spec, gitMessage(err))
	}
	var links []gitlink
	for entry := range strings.SplitSeq(out, "\x00") {
		meta, name, ok := strings.Cut(entry, "\t")
		fields := strings.Fields(meta)
		if ok && len(fields) == 3 && fields[0] == "160000" {
			links = append(links, gitlink{path: name, commit: fields[2]})
		}
	}
	return links, nil
}

// submoduleConfig is what .gitmodules says about submodules: by path, the
// submodule's name and URL.
type submoduleConfig map[string]struct{ name, url string }

// gitmodules reads .gitmodules at commit; a missing or broken file gives
// no entries (submodules then fall back to their path as name).
func (r *repository) gitmodules(ctx context.Context, commit string) submoduleConfig {
	out, err := r.git(ctx, "config", "--blob", commit+":.gitmodules", "-z", "--list")
	if err != nil {
		return nil
	}
	values := map[string]string{}
	for entry := range strings.SplitSeq(out, "\x00") {
		key, value, _ := strings.Cut(entry, "\n")
		values[key] = value
	}
	modules := submoduleConfig{}
	for key, value := range values {
		name, isSubmodule := strings.CutPrefix(key, "submodule.")
		name, isPath := strings.CutSuffix(name, ".path")
		if isSubmodule && isPath && name != "" {
			modules[path.Clean(value)] = struct{ name, url string }{name, values["submodule."+name+".url"]}
		}
	}
	return modules
}

// findSubmodule finds a repository holding the submodule at full (a path
// in parent) and returns it with the commit to export: first a checkout
// in the parent's working tree, then git's own clone in .git/modules, then
// a mirror of its URL in the cache.
func (x *exporter) findSubmodule(ctx context.Context, parent *repository, modules submoduleConfig, full, commit string) (*repository, string, error) {
	module, known := modules[full]
	name := module.name
	if !known {
		name = full
	}
	subURL := ""
	if module.url != "" {
		resolved, err := resolveSubmoduleURL(parent.url, module.url)
		if err != nil {
			return nil, "", fmt.Errorf("submodule %s: %w", full, err)
		}
		subURL = resolved
	}
	if parent.worktree != "" {
		dir := filepath.Join(parent.worktree, filepath.FromSlash(full))
		if top, err := runGit(ctx, nil, "-C", dir, "rev-parse", "--show-toplevel"); err == nil && top == dir {
			sub := &repository{args: []string{"-C", dir}, worktree: dir, name: dir, url: subURL}
			if commonDir, err := sub.git(ctx, "rev-parse", "--git-common-dir"); err == nil {
				sub.commonDir = absolutePath(dir, commonDir)
			}
			if x.dirty {
				// A dirty export ships the working tree as it is,
				// submodules included.
				head, err := sub.commit(ctx, "HEAD")
				if err != nil {
					return nil, "", fmt.Errorf("submodule %s: %s", full, gitMessage(err))
				}
				treeish, err := sub.workingTreeCommit(ctx, head)
				return sub, treeish, err
			}
			if sub.has(ctx, commit) {
				return sub, commit, nil
			}
		}
	}
	if parent.commonDir != "" && fs.ValidPath(name) {
		dir := filepath.Join(parent.commonDir, "modules", filepath.FromSlash(name))
		if info, err := os.Stat(dir); err == nil && info.IsDir() {
			// --work-tree: git's clone names the submodule's checkout as
			// its work tree, and git refuses to run if that is gone.
			sub := &repository{args: []string{"--git-dir=" + dir, "--work-tree=" + dir}, commonDir: dir, name: dir, url: subURL}
			if sub.has(ctx, commit) {
				return sub, commit, nil
			}
		}
	}
	if subURL != "" && x.cacheDir != "" {
		sub, err := openMirror(ctx, subURL, x.cacheDir, commit, true)
		if err != nil {
			return nil, "", fmt.Errorf("submodule %s: %w", full, err)
		}
		if !sub.has(ctx, commit) {
			return nil, "", fmt.Errorf("submodule %s: commit %s is not in %s; was it pushed?", full, short(commit), sub.name)
		}
		return sub, commit, nil
	}
	if !known {
		return nil, "", fmt.Errorf("submodule %s (commit %s) is not checked out and has no entry in .gitmodules", full, short(commit))
	}
	return nil, "", fmt.Errorf("submodule %s (commit %s) is not checked out in %s; run: git submodule update --init --recursive", full, short(commit), parent.name)
}

// resolveSubmoduleURL resolves a submodule URL such as ../lib.git against
// the URL of its superproject, as git does.
func resolveSubmoduleURL(base, rel string) (string, error) {
	if !strings.HasPrefix(rel, "./") && !strings.HasPrefix(rel, "../") {
		if strings.HasPrefix(rel, "-") {
			return "", fmt.Errorf("URL %q cannot start with \"-\"", rel)
		}
		return rel, nil
	}
	resolved := strings.TrimSuffix(base, "/")
	sep := "/"
	for {
		switch {
		case strings.HasPrefix(rel, "./"):
			rel = rel[2:]
		case strings.HasPrefix(rel, "../"):
			rel = rel[3:]
			i := strings.LastIndexAny(resolved, "/:")
			if i <= 0 {
				return "", fmt.Errorf("cannot resolve the relative URL in .gitmodules against %s", redactURL(base))
			}
			sep, resolved = resolved[i:i+1], resolved[:i]
		default:
			return resolved + sep + rel, nil
		}
	}
}

func cleanSubdir(subdir string) (string, error) {
	if subdir == "" {
		return "", nil
	}
	cleaned := path.Clean(filepath.ToSlash(subdir))
	if cleaned == "." {
		return "", nil
	}
	if !fs.ValidPath(cleaned) {
		return "", fmt.Errorf("subdirectory %q must be a relative path inside the repository", subdir)
	}
	return cleaned, nil
}

// absolutePath makes a path git printed relative to dir absolute.
func absolutePath(dir, p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(dir, p)
}

func short(commit string) string {
	return commit[:min(len(commit), 12)]
}

var errNoGit = errors.New("git is not installed (or not on PATH); install git, or set source.path to ship a directory as is")

// gitError is a git command that failed, with what it printed.
type gitError struct {
	args   []string
	stderr string
	err    error
}

func (e *gitError) Error() string {
	return "git " + strings.Join(e.args, " ") + ": " + e.message()
}

func (e *gitError) Unwrap() error { return e.err }

// message is git's own explanation: its last lines of stderr.
func (e *gitError) message() string {
	var lines []string
	for line := range strings.SplitSeq(e.stderr, "\n") {
		line = strings.TrimSpace(line)
		line = strings.TrimPrefix(line, "fatal: ")
		line = strings.TrimPrefix(line, "error: ")
		if line = strings.TrimSuffix(line, "."); line != "" {
			lines = append(lines, line)
		}
	}
	if len(lines) == 0 {
		return e.err.Error()
	}
	return strings.Join(lines[max(0, len(lines)-8):], "; ")
}

// GitPlace says where a git command ran, for advice that names the
// machine to fix: this one (the upload flow's export) or a deploy host
// (strategy git, whose hosts fetch the repository themselves).
type GitPlace int

const (
	GitHere   GitPlace = iota // this machine, as the user running slipway
	GitOnHost                 // a deploy host, as the deploy user
)

func (p GitPlace) machine() string {
	if p == GitOnHost {
		return "the host"
	}
	return "this machine"
}

func (p GitPlace) user() string {
	if p == GitOnHost {
		return "the deploy user"
	}
	return "you"
}

var (
	dubiousOwnership = regexp.MustCompile(`detected dubious ownership in repository at '([^']*)'`)
	sshAuthRefused   = regexp.MustCompile(`Permission denied \((publickey|password|keyboard-interactive|gssapi)`)
	httpAuthRefused  = regexp.MustCompile(`could not read (Username|Password) for|Authentication failed for|terminal prompts disabled`)
	unresolvedHost   = regexp.MustCompile(`Could not resolve host(?:name)?:? ([^\s:]+)`)
	refusedConnect   = regexp.MustCompile(`(?:connect to host|Failed to connect to) (\S+) port (\d+)(?: after \d+ ms)?: ([^\r\n]+)`)
	missingRepo      = regexp.MustCompile(`'([^']*)' does not appear to be a git repository|repository '([^']*)' (?:does not exist|not found)|Repository not found`)
	missingRef       = regexp.MustCompile(`couldn't find remote ref (\S+)|Remote branch (\S+) not found`)
	gitNotFound      = regexp.MustCompile(`\bgit: (?:command )?not found`)
	fileDenied       = regexp.MustCompile(`(?m)^(?:fatal: |error: )?(.*?):? Permission denied\.?$`)
	quotedPath       = regexp.MustCompile(`'([^']+)'`)
)

// deniedPath is the file a "...: Permission denied" line of git names: the
// last quoted path, else the last word.
func deniedPath(line string) string {
	if m := quotedPath.FindAllStringSubmatch(line, -1); len(m) > 0 {
		return m[len(m)-1][1]
	}
	if fields := strings.Fields(line); len(fields) > 0 {
		return fields[len(fields)-1]
	}
	return "a file"
}

// GitAdvice says what to do about a git command that failed, from what git
// printed on stderr, or "" when git's words name no cause slipway knows:
// the user then gets git's message alone, never a guess. url is the
// repository git was reading, as the user wrote it.
func GitAdvice(stderr string, place GitPlace, url string) string {
	machine := place.machine()
	switch {
	case dubiousOwnership.MatchString(stderr):
		dir := dubiousOwnership.FindStringSubmatch(stderr)[1]
		if place == GitOnHost {
			return fmt.Sprintf("git on the host refuses %s: another user owns it (\"dubious ownership\"); on the host, as the deploy user, run: git config --global --add safe.directory %s, or chown the repository to the deploy user", dir, dir)
		}
		return fmt.Sprintf("git refuses %s: another user owns it (\"dubious ownership\"); run: git config --global --add safe.directory %s, or chown the repository to yourself", dir, dir)
	case strings.Contains(stderr, "Host key verification failed"):
		if place == GitOnHost {
			return "the host does not know the git server's host key; on the host, verify its fingerprint and add it to the deploy user's ~/.ssh/known_hosts (slipway never turns this check off)"
		}
		return "this machine does not know the git server's host key; verify its fingerprint and add it to your ~/.ssh/known_hosts"
	case sshAuthRefused.MatchString(stderr):
		if place == GitOnHost {
			return fmt.Sprintf("the git server refused the host's SSH key for %s: give the host a deploy key (in the deploy user's ~/.ssh), or set forward_agent: true and load your key in ssh-agent", url)
		}
		return fmt.Sprintf("the git server refused your SSH key for %s: load a key it accepts in ssh-agent (ssh-add), and test it with: git ls-remote %s", url, url)
	case httpAuthRefused.MatchString(stderr):
		return fmt.Sprintf("the git server wants credentials for %s that %s does not have (slipway never prompts): use an SSH URL with a key, or a credential helper for %s", url, machine, place.user())
	case unresolvedHost.MatchString(stderr):
		name := unresolvedHost.FindStringSubmatch(stderr)[1]
		return fmt.Sprintf("%s cannot resolve the git server's name %s: check the host name in %s, and DNS on %s (getent hosts %s)", machine, name, url, machine, name)
	case refusedConnect.MatchString(stderr):
		m := refusedConnect.FindStringSubmatch(stderr)
		return fmt.Sprintf("%s cannot connect to the git server %s port %s (%s): check the host and port in %s, and that %s may reach it", machine, m[1], m[2], strings.TrimSpace(m[3]), url, machine)
	case missingRef.MatchString(stderr):
		m := missingRef.FindStringSubmatch(stderr)
		return fmt.Sprintf("%s has no branch or tag %s: check the name, or list them with: git ls-remote %s", url, m[1]+m[2], url)
	case missingRepo.MatchString(stderr):
		return fmt.Sprintf("there is no git repository at %s that %s can read: check the URL (a repository the key may not see, or a directory %s cannot read, looks missing too)", url, place.user(), place.user())
	case gitNotFound.MatchString(stderr):
		if place == GitOnHost {
			return "git is not installed on the host (strategy git fetches and exports there): apt-get install git (Debian/Ubuntu), apk add git (Alpine), dnf install git (RHEL)"
		}
		return errNoGit.Error()
	case fileDenied.MatchString(stderr):
		return fmt.Sprintf("%s may not write (or read) %s on %s", place.user(), deniedPath(fileDenied.FindStringSubmatch(stderr)[1]), machine)
	}
	return ""
}

func gitMessage(err error) string {
	var gerr *gitError
	if errors.As(err, &gerr) {
		return gerr.message()
	}
	return err.Error()
}

// gitCommand prepares git with args, in an environment that cannot point
// it at another repository than the one named in args.
func gitCommand(ctx context.Context, env []string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Env = append(gitEnviron(), env...)
	// ssh and other helpers git starts may hold its output open after
	// git is killed.
	cmd.WaitDelay = 2 * time.Second
	return cmd
}

func runGit(ctx context.Context, env []string, args ...string) (string, error) {
	cmd := gitCommand(ctx, env, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		if errors.Is(err, exec.ErrNotFound) {
			return "", errNoGit
		}
		return "", &gitError{args: args, stderr: stderr.String(), err: err}
	}
	return strings.TrimSuffix(stdout.String(), "\n"), nil
}

func gitStartError(err error) error {
	if errors.Is(err, exec.ErrNotFound) {
		return errNoGit
	}
	return err
}

// gitEnviron is the process environment without the variables that tell
// git which repository to use (set, for instance, inside git hooks).
func gitEnviron() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY",
			"GIT_ALTERNATE_OBJECT_DIRECTORIES", "GIT_COMMON_DIR", "GIT_NAMESPACE", "GIT_PREFIX":
			return true
		}
		return false
	})
}
