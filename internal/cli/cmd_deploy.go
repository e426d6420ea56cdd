package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/deploy"
	"github.com/slipway-deploy/slipway/internal/source"
	"github.com/slipway-deploy/slipway/internal/ui"
)

type deployOptions struct {
	stage      string
	revision   string
	branch     string
	tag        string
	allowDirty bool
	force      bool
	canary     int
	noRollback bool
	json       bool
	dryRun     bool
}

func newDeployCmd(g *globalOptions, streams IO) *cobra.Command {
	opts := &deployOptions{}
	cmd := &cobra.Command{
		Use:   "deploy STAGE",
		Short: "Ship a new release to every host of the stage and switch to it",
		Example: `  slipway deploy production
  slipway deploy production --tag v1.4.2
  slipway deploy staging --branch feature/cart --hosts web1,web2
  slipway -c deploy/slipway.yml deploy demo`,
		Args: stageArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.stage = args[0]
			return runDeploy(cmd.Context(), g, streams, opts)
		},
	}
	f := cmd.Flags()
	addRevisionFlags(f, opts)
	f.BoolVar(&opts.force, "force", false, "deploy even if the revision is already live on every host, or the hosts disagree on the live release")
	f.BoolVar(&opts.dryRun, "dry-run", false, "show what the deploy would do on each host and change nothing (same as slipway plan)")
	f.IntVar(&opts.canary, "canary", 0, "switch this many hosts first and check their health before the rest")
	f.BoolVar(&opts.noRollback, "no-rollback", false, "leave the release live when its health check fails")
	f.BoolVar(&opts.json, "json", false, "print NDJSON events on stdout (schema: docs/json-events.md); progress on stderr shows only errors")
	return cmd
}

func runDeploy(ctx context.Context, g *globalOptions, streams IO, opts *deployOptions) error {
	if opts.dryRun {
		return runPlan(ctx, g, streams, opts)
	}
	dopts, err := loadOptions(g, streams, opts.stage, "deploy "+opts.stage)
	if err != nil {
		return err
	}
	src, prepared, err := deploySource(ctx, dopts.Config, opts, streams)
	if err != nil {
		return err
	}
	defer prepared.Remove()
	src.Force = opts.force
	if opts.canary < 0 {
		return &UserError{Msg: "--canary: give a number of hosts, e.g. --canary 1"}
	}
	dopts.Canary, dopts.NoRollback = opts.canary, opts.noRollback
	events := jsonEvents(&dopts, streams, opts.json, "deploy")
	started := time.Now()
	res, err := deploy.Deploy(ctx, dopts, src)
	endProgress(dopts.Events)
	events.finished(res, err)
	if res != nil {
		res.Revision = cmp.Or(res.Revision, src.Revision)
		res.Duration = time.Since(started)
	}
	notifyOutcome(ctx, dopts, "deploy", started, res, err, streams)
	if err == nil && res.AlreadyLive {
		fmt.Fprintf(streams.Err, "revision %s is already live on every host; nothing to do (deploy it again with --force)\n", ui.Short(res.Revision))
		return nil
	}
	printDeployResult(streams.Err, "deploy", res, err)
	return err
}

// addRevisionFlags adds the flags that pick what is deployed (deploy, plan).
func addRevisionFlags(f *pflag.FlagSet, opts *deployOptions) {
	f.StringVar(&opts.revision, "revision", "", "git revision to deploy (commit, tag or branch; default HEAD, or source.branch)")
	f.StringVar(&opts.branch, "branch", "", "git branch to deploy")
	f.StringVar(&opts.tag, "tag", "", "git tag to deploy")
	f.BoolVar(&opts.allowDirty, "allow-dirty", false, "ship uncommitted changes of tracked files (the release is marked dirty)")
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

// printDeployResult prints the final summary: which host is on what.
func printDeployResult(w io.Writer, verb string, res *deploy.Result, err error) {
	if res == nil {
		return
	}
	var rows [][]string
	for _, h := range res.Hosts {
		live := h.Live
		switch {
		case !h.Known:
			live = "(not read)"
		case live == "":
			live = "(none)"
		}
		outcome := "unchanged"
		switch {
		case h.RolledBack:
			outcome = "switched, then back"
		case h.Switched:
			outcome = "switched from " + orDash(h.Previous)
		}
		at := ""
		if st, ok := res.Switches[h.Host]; ok {
			at = st.Local.UTC().Format("15:04:05.000000")
		}
		rows = append(rows, []string{h.Host, live, outcome, at})
	}
	fmt.Fprintln(w)
	ui.Table(w, []string{"HOST", "LIVE", "RESULT", "SWITCHED AT (UTC)"}, rows)
	if res.SkewHosts > 1 {
		fmt.Fprintf(w, "fleet skew: %s from the first switch to the last\n", res.Skew.Round(time.Microsecond))
	}
	var switched *deploy.SwitchedError
	var rolledBack *deploy.RolledBackError
	switch {
	case err == nil:
		fmt.Fprintf(w, "%s done: release %s is live on %d host(s)", verb, res.ReleaseID, len(res.Hosts))
		if res.Duration > 0 {
			fmt.Fprintf(w, " in %s", res.Duration.Round(10*time.Millisecond))
		}
		fmt.Fprintln(w)
	case errors.As(err, &rolledBack):
		fmt.Fprintf(w, "%s: release %s went live, failed, and every host it reached was switched back to its previous release\n", verb, rolledBack.ReleaseID)
	case errors.As(err, &switched):
		fmt.Fprintf(w, "%s: release %s went live, but a later step failed (see below)\n", verb, switched.ReleaseID)
	default:
		fmt.Fprintf(w, "%s failed: no host was switched; every host stays on its previous release\n", verb)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// jsonStream is the --json output of a deploy or rollback, or nothing.
type jsonStream struct{ j *ui.JSON }

// jsonEvents switches a run to --json output: NDJSON events on stdout, and
// on stderr only what a person must see (errors, warnings).
func jsonEvents(opts *deploy.Options, streams IO, enabled bool, command string) jsonStream {
	if !enabled {
		return jsonStream{}
	}
	j := ui.NewJSON(streams.Out)
	var hosts []string
	for _, h := range opts.Hosts {
		hosts = append(hosts, h.Name)
	}
	opts.Events = ui.Fanout{ui.NewProgress(streams.Err, hosts, true), j}
	j.Write(ui.JSONEvent{Type: "run_started", Command: command, Stage: opts.Stage.Name, Hosts: hosts})
	return jsonStream{j}
}

func (s jsonStream) finished(res *deploy.Result, err error) {
	if s.j == nil {
		return
	}
	s.j.Finished(outcomeOf(res, err), exitCode(err), res, err)
}
