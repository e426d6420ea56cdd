package cli

import (
	"context"
	"fmt"
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

// loadDeploy loads the stage's options and prepares what a deploy (or its
// plan) ships; the caller removes prepared when it is done.
func loadDeploy(ctx context.Context, g *globalOptions, streams IO, stage, command string, opts *deployOptions) (deploy.Options, deploy.Source, *source.Prepared, error) {
	dopts, err := loadOptions(g, streams, stage, command)
	if err != nil {
		return deploy.Options{}, deploy.Source{}, nil, err
	}
	src, prepared, err := deploySource(ctx, dopts.Config, opts, streams)
	if err != nil {
		return deploy.Options{}, deploy.Source{}, nil, err
	}
	dopts.Force = opts.force
	return dopts, src, prepared, nil
}

// deploySource turns the config's source and the revision flags into what
// the deploy ships: for the upload strategy, content prepared here (a
// directory as is, or a clean git export, built); for the git strategy, the
// revision every host exports from its mirror.
func deploySource(ctx context.Context, cfg *config.Config, opts *deployOptions, streams IO) (deploy.Source, *source.Prepared, error) {
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
	req := source.Request{Build: sc.Build, Exclude: sc.Exclude, Output: &prefixWriter{w: streams.Err, prefix: "build  | "}}
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
	prepared, err := source.Prepare(ctx, req)
	if err != nil {
		return deploy.Source{}, nil, &SourceError{Err: err}
	}
	if prepared.InMemory() > 0 && os.Getenv("GOGC") == "" {
		// The export is most of the heap and lives as long as the run:
		// collect when the heap has grown by a quarter, not by all of
		// it (Go's default), so peak memory stays near what is live.
		// The export's bytes hold no pointers, so collections stay cheap.
		debug.SetGCPercent(25)
	}
	return deploy.Source{Tree: prepared.Tree, Revision: prepared.Revision, Branch: prepared.Ref, Dirty: prepared.Dirty}, prepared, nil
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
