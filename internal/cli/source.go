package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"

	"github.com/spf13/pflag"

	"github.com/slipway-deploy/slipway/internal/artifact"
	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/deploy"
	"github.com/slipway-deploy/slipway/internal/source"
	"github.com/slipway-deploy/slipway/internal/ui"
)

// addRevisionFlags adds the flags that pick what is deployed (deploy, plan).
func addRevisionFlags(f *pflag.FlagSet, opts *deployOptions) {
	f.StringVar(&opts.revision, "revision", "", "git revision to deploy (commit, tag or branch; default HEAD, or source.branch)")
	f.StringVar(&opts.branch, "branch", "", "git branch to deploy")
	f.StringVar(&opts.tag, "tag", "", "git tag to deploy")
	f.BoolVar(&opts.allowDirty, "allow-dirty", false, "ship uncommitted changes of tracked files (the release is marked dirty)")
	f.StringVar(&opts.from, "from", "", "promote: ship exactly the tree live on this stage (from the artifact cache, or fetched from one of its hosts), never built again")
	f.BoolVar(&opts.rebuild, "rebuild", false, "run source.build even when the artifact cache holds this revision's build")
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
	var src deploy.Source
	var made *content
	if opts.from != "" {
		src, made, err = promotedSource(ctx, g, streams, dopts.Config, stage, opts)
	} else {
		src, made, err = deploySource(ctx, dopts.Config, opts, build)
	}
	if err != nil {
		return deploy.Options{}, deploy.Source{}, nil, err
	}
	made.reportTo(dopts.Events)
	dopts.Force = opts.force
	return dopts, src, made, nil
}

// content is what the source made on this machine (an export, a build
// copy) or took from the artifact cache, to remove or close when the run
// is over, failed or not.
type content struct {
	prepared *source.Prepared
	artifact *artifact.Artifact // the tree, when it came from the cache
	tree     *source.Tree       // what ships, once made
	cache    *artifact.Cache
	stored   chan struct{} // closed when keeping the build in the cache is over
	events   deploy.Observer
}

// Remove waits for the build to be kept in the cache, then removes what
// the run made and closes what it opened.
func (c *content) Remove() {
	if c == nil {
		return
	}
	c.wait()
	c.artifact.Close()
	c.prepared.Remove()
}

// reportTo makes the content's notes (where the tree came from) events of
// the run.
func (c *content) reportTo(events deploy.Observer) {
	if c != nil {
		c.events = events
	}
}

func (c *content) note(format string, args ...any) {
	if c.events != nil {
		c.events.Event(deploy.Event{Kind: deploy.Info, Step: "build", Line: fmt.Sprintf(format, args...)})
	}
}

func (c *content) warn(format string, args ...any) {
	if c.events != nil {
		c.events.Event(deploy.Event{Kind: deploy.Warning, Step: "build", Line: fmt.Sprintf(format, args...)})
	}
}

// keep stores the built tree in the cache while the deploy goes on (the
// upload reads the same files); ctx is the command's, which outlives the
// deploy's pipeline and ends with an interrupt. A cache that cannot keep
// it is a warning, never a failed deploy.
func (c *content) keep(ctx context.Context, tree *source.Tree, build *artifact.Build) {
	if !c.cache.Enabled() {
		return
	}
	c.stored = make(chan struct{})
	go func() {
		defer close(c.stored)
		err := c.cache.Store(ctx, tree, build)
		var evictErr *artifact.EvictError
		var dirErr *artifact.DirError
		switch {
		case err == nil || ctx.Err() != nil: // kept, or the run was interrupted
		case errors.As(err, &evictErr):
			c.warn("the artifact cache kept this build, but %v", err)
		case errors.As(err, &dirErr):
			c.warn("%v; the deploy goes on, and this build is not kept", err)
			c.cacheOff()
		default:
			c.warn("the artifact cache could not keep this build (%v); the deploy goes on", err)
		}
	}()
}

// cacheOff stops the run using a cache it cannot write in: recording the
// deploy there would only fail again.
func (c *content) cacheOff() {
	off := *c.cache
	off.MaxBytes = 0
	c.cache = &off
}

// wait waits until the build is kept in the cache (or failed to be).
func (c *content) wait() {
	if c != nil && c.stored != nil {
		<-c.stored
	}
}

// deployed records in the cache that the tree went live on stage.
func (c *content) deployed(stage string, res *deploy.Result, err error) {
	var switched *deploy.SwitchedError
	if c == nil || c.tree == nil || res == nil || res.AlreadyLive || (err != nil && !errors.As(err, &switched)) {
		return
	}
	if err := c.cache.Deployed(c.tree.Digest, stage, res.ReleaseID); err != nil {
		c.warn("the artifact cache could not record this deploy: %v", err)
	}
}

// openCache opens the artifact cache as the environment bounds it.
func openCache() (*artifact.Cache, error) {
	cache, err := artifact.Open(os.Getenv)
	if err != nil {
		return nil, &UserError{Msg: err.Error()}
	}
	return cache, nil
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
	cache, err := openCache()
	if err != nil {
		return deploy.Source{}, nil, err
	}
	made := &content{cache: cache}
	// What a build makes is kept in the artifact cache, and a clean
	// revision built before with the same build configuration is taken
	// from there instead of built again. A built directory is kept (it
	// can be promoted from the cache) but never looked up: its revision
	// is known only once it is built. An export or a directory with
	// nothing to build costs nothing to make again, and is not kept.
	var key string
	if len(sc.Build) > 0 && req.Dir == "" {
		key = artifact.BuildKey(sc.Build, sc.Exclude, sc.Subdir, sc.Submodules)
	}
	commandCtx := ctx
	build := func(ctx context.Context) (*source.Tree, error) {
		if key != "" && !opts.rebuild && !pending.Dirty {
			a, err := cache.Lookup(pending.Revision, key)
			if err != nil {
				made.warn("artifact cache: %v", err)
			}
			if a != nil {
				made.artifact, made.tree = a, a.Tree
				made.note("revision %s was built before with this build configuration: shipping tree %s from the artifact cache (built %s); the build does not run",
					ui.Short(pending.Revision), ui.Short(a.Digest), a.Created.Local().Format("2006-01-02 15:04:05"))
				return a.Tree, nil
			}
		}
		prepared, err := pending.Make(ctx)
		if err != nil {
			return nil, &SourceError{Err: err}
		}
		made.prepared, made.tree = prepared, prepared.Tree
		if len(req.Build) > 0 {
			made.keep(commandCtx, prepared.Tree, &artifact.Build{Revision: prepared.Revision, Key: key, Branch: prepared.Ref, Dirty: prepared.Dirty})
		}
		if prepared.InMemory() > 0 && os.Getenv("GOGC") == "" {
			// The export is most of the heap and lives as long as the run:
			// collect when the heap has grown by a quarter, not by all of
			// it (Go's default), so peak memory stays near what is live.
			// The export's bytes hold no pointers, so collections stay cheap.
			debug.SetGCPercent(25)
		}
		return prepared.Tree, nil
	}
	// An export with no build commands changes nothing outside this
	// process: the deploy may start it as it reaches the hosts.
	src := deploy.Source{Revision: pending.Revision, Branch: pending.Ref, Dirty: pending.Dirty, Build: build, Prefetch: len(req.Build) == 0}
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

// promotedSource is what `deploy STAGE --from FROM` ships: exactly the
// tree live on FROM's hosts, never built again. The release FROM serves
// is read now (every host must agree on it, and it must record its
// tree's digest), so the deploy knows the revision it ships; the tree is
// taken, in the deploy's build step, from the artifact cache by that
// digest, or fetched from FROM's first host and checked against it.
func promotedSource(ctx context.Context, g *globalOptions, streams IO, cfg *config.Config, stage string, opts *deployOptions) (deploy.Source, *content, error) {
	switch {
	case opts.revision != "" || opts.branch != "" || opts.tag != "" || opts.allowDirty || opts.rebuild:
		return deploy.Source{}, nil, &UserError{Msg: fmt.Sprintf("--from %s ships the tree live on %s as it is: --revision, --branch, --tag, --allow-dirty and --rebuild do not apply", opts.from, opts.from)}
	case opts.from == stage:
		return deploy.Source{}, nil, &UserError{Msg: fmt.Sprintf("--from %s: that is the stage being deployed; promote from another stage, e.g. slipway deploy %s --from staging", stage, stage)}
	case cfg.Source.Strategy == "git":
		return deploy.Source{}, nil, &UserError{Msg: fmt.Sprintf("%s: --from promotes a tree built here (strategy: upload); with strategy: git each host builds its own release, so deploy the same revision instead", cfg.Source.Where)}
	}
	// The stage promoted from is read whole, whatever --hosts and
	// --roles select of the stage deployed; its progress shows only
	// failures and warnings.
	gq := *g
	gq.quiet, gq.hosts, gq.roles = true, nil, nil
	fromOpts, err := loadOptions(&gq, streams, opts.from, "deploy "+stage+" --from "+opts.from)
	if err != nil {
		return deploy.Source{}, nil, err
	}
	live, err := deploy.ReadLive(ctx, fromOpts, false)
	if err != nil {
		return deploy.Source{}, nil, err
	}
	digest, origin := live.Meta.Digest, live.Origin()
	if digest == "" {
		return deploy.Source{}, nil, fmt.Errorf("%s's live release %s records no tree digest (built on its hosts with strategy: git, or by an older slipway), so nothing can prove a copy of it is the same: deploy its revision %s to %s instead",
			opts.from, live.ID, orDash(live.Meta.Revision), stage)
	}
	cache, err := openCache()
	if err != nil {
		return deploy.Source{}, nil, err
	}
	made := &content{cache: cache}
	src := deploy.Source{Revision: live.Meta.Revision, Branch: live.Meta.Branch, Dirty: live.Meta.Dirty, PromotedFrom: origin, Digest: digest}
	src.Build = func(ctx context.Context) (*source.Tree, error) {
		a, err := cache.Get(digest)
		if err != nil {
			made.warn("artifact cache: %v", err)
		}
		if a != nil {
			made.note("promoting %s: tree %s from the artifact cache; nothing is built", origin, ui.Short(digest))
		} else {
			from := live.Hosts[0]
			made.note("promoting %s: tree %s is not in the artifact cache; fetching it from %s", origin, ui.Short(digest), from)
			if err := cache.Ready(); err != nil {
				// A cache that cannot be written (a read-only home in
				// a CI container, a full disk) is no reason to refuse a
				// promotion: the tree is fetched into a temporary
				// directory, removed once the deploy is over.
				made.warn("%v; the tree is fetched into a temporary directory and not kept", err)
				made.cacheOff()
				cache = made.cache
			}
			var stats *deploy.FetchStats
			build := &artifact.Build{Revision: live.Meta.Revision, Branch: live.Meta.Branch, Dirty: live.Meta.Dirty}
			a, err = cache.Import(ctx, digest, "fetched from "+origin+" on "+from, build, func(w io.Writer) error {
				var fetchErr error
				stats, fetchErr = deploy.FetchRelease(ctx, live, w)
				return fetchErr
			})
			var evictErr *artifact.EvictError
			var digestErr *artifact.DigestError
			switch {
			case errors.As(err, &evictErr): // the tree is kept and open all the same
				made.warn("the artifact cache kept tree %s, but %v", ui.Short(digest), err)
			case errors.As(err, &digestErr):
				return nil, fmt.Errorf("promoting %s: the tree fetched from %s is not the one the release recorded: %w (its files or its manifest were changed on the host, or the tree has setuid, setgid or sticky bits, or symlinks made on macOS, which a manifest does not keep); refusing to ship it (deploy %s again, then promote, from the machine that built it for such a tree)",
					origin, from, err, opts.from)
			case err != nil:
				return nil, fmt.Errorf("promoting %s: %w", origin, err)
			}
			made.note("fetched %d files and links (%s on the wire) from %s; their digest is the one %s recorded", stats.Files, ui.HumanBytes(stats.Bytes), from, origin)
		}
		made.artifact, made.tree = a, a.Tree
		return a.Tree, nil
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
