package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/spf13/pflag"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/deploy"
	"github.com/slipway-deploy/slipway/internal/source"
)

// addRevisionFlags adds the flags that pick what is deployed (deploy, plan).
func addRevisionFlags(f *pflag.FlagSet, opts *deployOptions) {
	f.StringVar(&opts.revision, "revision", "", "git revision to deploy (commit, tag or branch; default HEAD, or source.branch)")
	f.StringVar(&opts.branch, "branch", "", "git branch to deploy")
	f.StringVar(&opts.tag, "tag", "", "git tag to deploy")
	f.BoolVar(&opts.allowDirty, "allow-dirty", false, "ship uncommitted changes of tracked files (the release is marked dirty)")
}

// loadDeploy loads the stage's options and what a deploy (or its plan)
// ships; the caller removes the content when it is done.
func loadDeploy(ctx context.Context, g *globalOptions, streams IO, stage, command string, opts *deployOptions) (deploy.Options, deploy.Source, *content, error) {
	dopts, err := loadOptions(g, streams, stage, command)
	if err != nil {
		return deploy.Options{}, deploy.Source{}, nil, err
	}
	build := io.Writer(&prefixWriter{w: streams.Err, prefix: "build  | "})
	if g.quiet {
		build = io.Discard // a failing build still shows its last lines
	}
	src, made, err := deploySource(ctx, dopts.Config, opts, build)
	if err != nil {
		return deploy.Options{}, deploy.Source{}, nil, err
	}
	dopts.Force = opts.force
	return dopts, src, made, nil
}

// content is what the source made on this machine (an export, a build
// copy), to remove when the run is over, failed or not.
type content struct{ prepared *source.Prepared }

func (c *content) Remove() {
	if c != nil {
		c.prepared.Remove()
	}
}

// deploySource turns the config's source and the revision flags into what
// the deploy ships. For the upload strategy the revision is resolved here
// (cheap) and the content (a clean git export, or a copy of the
// directory, built) is made by the deploy itself, once every host is
// locked and the revision is known not to be live: a deploy that will be
// refused never waits for a build. A directory with nothing to build is
// scanned here, so its digest can tell whether it is live already. For the
// git strategy, it is the revision every host exports from its mirror.
func deploySource(ctx context.Context, cfg *config.Config, opts *deployOptions, buildOutput io.Writer) (deploy.Source, *content, error) {
	set := 0
	for _, v := range []string{opts.revision, opts.branch, opts.tag} {
		if v != "" {
			set++
			if err := checkRevisionName(v); err != nil {
				return deploy.Source{}, nil, err
			}
		}
	}
	if set > 1 {
		return deploy.Source{}, nil, &UserError{Msg: "give one of --revision, --branch and --tag"}
	}
	sc := cfg.Source
	if sc.Strategy == "git" {
		want, ref := "", sc.Branch
		switch {
		case opts.revision != "":
			want, ref = opts.revision, opts.revision
		case opts.tag != "":
			want, ref = "refs/tags/"+opts.tag, opts.tag
		case opts.branch != "":
			want, ref = "refs/heads/"+opts.branch, opts.branch
		case sc.Branch != "":
			want = "refs/heads/" + sc.Branch
		}
		return deploy.Source{Branch: ref, Git: &deploy.GitSource{
			URL: sc.Repo, Want: want, Subdir: sc.Subdir, RemoteBuild: sc.RemoteBuild, Parallel: sc.GitParallel,
		}}, nil, nil
	}
	req := source.Request{Build: sc.Build, Exclude: sc.Exclude, Output: buildOutput}
	if sc.PathSet {
		if set > 0 || opts.allowDirty {
			return deploy.Source{}, nil, &UserError{Msg: fmt.Sprintf("%s: source.path ships a directory as is, so --revision, --branch, --tag and --allow-dirty do not apply; remove source.path to ship a git revision", sc.Where)}
		}
		req.Dir = sc.Path
	} else {
		cacheDir, err := os.UserCacheDir()
		if err != nil {
			cacheDir = os.TempDir()
		}
		branch := opts.branch
		if branch == "" && opts.revision == "" && opts.tag == "" && sc.Repo != "" {
			branch = sc.Branch
		}
		req.Git = source.GitExport{
			RepoDir: cfg.Dir, RepoURL: sc.Repo, CacheDir: filepath.Join(cacheDir, "slipway", "repos"),
			Revision: opts.revision, Branch: branch, Tag: opts.tag,
			Submodules: sc.Submodules, AllowDirty: opts.allowDirty, Subdir: sc.Subdir,
		}
	}
	pending, err := source.Resolve(ctx, req)
	if err != nil {
		return deploy.Source{}, nil, &SourceError{Err: err}
	}
	made := &content{}
	build := func(ctx context.Context) (*source.Tree, error) {
		prepared, err := pending.Make(ctx)
		if err != nil {
			return nil, &SourceError{Err: err}
		}
		made.prepared = prepared
		if prepared.InMemory() > 0 && os.Getenv("GOGC") == "" {
			// The export is most of the heap and lives as long as the run:
			// collect when the heap has grown by a quarter, not by all of
			// it (Go's default), so peak memory stays near what is live.
			// The export's bytes hold no pointers, so collections stay cheap.
			debug.SetGCPercent(25)
		}
		return prepared.Tree, nil
	}
	src := deploy.Source{Revision: pending.Revision, Branch: pending.Ref, Dirty: pending.Dirty, Build: build}
	if req.Dir != "" && len(req.Build) == 0 {
		// Nothing to build: the directory's digest is its revision.
		tree, err := build(ctx)
		if err != nil {
			return deploy.Source{}, nil, err
		}
		src.Tree, src.Revision, src.Build = tree, tree.Digest, nil
	}
	return src, made, nil
}

// checkRevisionName refuses revision names git would read as options or
// that no ref can have; the value then only ever reaches git as one
// argument, never a shell.
func checkRevisionName(name string) error {
	bad := strings.IndexFunc(name, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0
	if name == "" || strings.HasPrefix(name, "-") || bad {
		return &UserError{Msg: fmt.Sprintf("%q is not a valid git revision name", name)}
	}
	return nil
}

// SourceError is a failure to produce the release content (unknown
// revision, failing build): no host was touched.
type SourceError struct{ Err error }

func (e *SourceError) Error() string {
	return "preparing the release (no host was touched): " + e.Err.Error()
}
func (e *SourceError) Unwrap() error { return e.Err }
