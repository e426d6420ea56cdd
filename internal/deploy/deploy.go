package deploy

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slipway-deploy/slipway/internal/source"
)

// Source is what a deploy ships and how it is recorded.
type Source struct {
	// Tree is the content to upload (strategy upload): given, or made by
	// Build; nil for the git strategy, where each host exports the commit
	// from its own mirror.
	Tree *source.Tree
	// Build makes Tree on this machine (an export, a build). The deploy
	// calls it once every host is locked and the revision is known not to
	// be live already, so a deploy that will be refused never waits for a
	// build. A Revision left empty is the built tree's digest.
	Build func(ctx context.Context) (*source.Tree, error)
	// Prefetch says that Build only exports (no build commands run,
	// nothing outside this process changes), so the deploy starts it as
	// the hosts are reached and locked rather than after: the export
	// costs no time of its own. A deploy that stops before its build step
	// (refused by a host key, the lock, an unchanged revision) cancels it.
	Prefetch bool
	Revision string // commit SHA, or the tree digest of a plain directory; resolved on the hosts for the git strategy
	Branch   string // branch or tag deployed, for history and revisions.log
	Dirty    bool   // uncommitted changes were shipped (--allow-dirty)
	Git      *GitSource

	// PromotedFrom is the release of another stage whose tree this one
	// ships ("staging@20261122103015"), for a promotion; "" otherwise.
	PromotedFrom string
	// Digest is the digest of the tree a promotion ships, known before
	// Build makes it (the one its stage recorded): a host is already
	// live on that tree, not on its revision.
	Digest string
}

// GitSource is the server-side flow: every host keeps a mirror of URL in
// the repo directory, and exports the commit Want resolves to on the
// primary host, so the whole fleet deploys one commit.
type GitSource struct {
	URL         string
	Want        string   // revision to resolve in the mirror: a SHA, refs/heads/B, refs/tags/T; "" for the default branch
	Subdir      string   // export only this subdirectory, as the release root
	RemoteBuild []string // commands run in the release on each host after the export
	Parallel    int      // hosts fetching at once; 0 for no extra limit
}

// ErrAlreadyLive reports a deploy with nothing to do: the revision is live on
// every host. Deploy returns it with the result; it is not a failure.
var ErrAlreadyLive = fmt.Errorf("the revision is already live on every host: %w", errDone)

// Result says where each host ended up.
type Result struct {
	ReleaseID   string
	Revision    string
	AlreadyLive bool // nothing was done: the revision is live everywhere
	Hosts       []HostResult
	// Switches holds when each host switched; Skew is the time from the
	// first switch to the last within one batch (the largest over batches).
	Switches map[string]SwitchTime
	Skew     time.Duration
	// SkewHosts is the size of the largest batch switched together: skew
	// means something only when it is above one.
	SkewHosts int
	// Duration is the whole run, as the caller measured it.
	Duration time.Duration
}

// HostResult is one host's outcome.
type HostResult struct {
	Host       string
	Live       string // release current points at after the run ("" if none)
	Previous   string // release that was live before the run
	Switched   bool
	RolledBack bool // switched to the new release, then back
	// MovedOn: switched by this run, then, while its lock was gone, on to
	// another run's release (Live), and left there.
	MovedOn bool
	Known   bool // the host's state was read; false if the run stopped before (could not connect)
	// RoundTrips is how many network round trips the run took on the
	// host, from the SSH handshake to the unlock.
	RoundTrips int64
}

// SwitchedError reports a run that failed after the new release went live
// on some hosts: those hosts serve it, the failure came later (an
// after_switch hook, recording history).
type SwitchedError struct {
	ReleaseID string
	Err       error
}

func (e *SwitchedError) Error() string {
	return fmt.Sprintf("release %s is live, but a step after the switch failed: %v", e.ReleaseID, e.Err)
}

func (e *SwitchedError) Unwrap() error { return e.Err }

// Deploy ships src as a new release to every selected host of the stage and
// switches them all to it, or, if anything fails before the switch, leaves
// every host on its previous release with no trace of the new one.
func Deploy(ctx context.Context, opts Options, src Source) (*Result, error) {
	d := newDeployRun(ctx, opts, src)
	if d.viaStore() {
		// Without credentials for the store, stop before reaching any
		// host, not after the build.
		if _, err := d.openStore(); err != nil {
			return nil, err
		}
	}
	stopPrefetch := d.startPrefetch(ctx)
	err := d.pipeline(d.steps())
	stopPrefetch()
	d.streams.close()
	res := d.result()
	if errors.Is(err, ErrAlreadyLive) {
		res.AlreadyLive = true
		return res, nil
	}
	var rb *RolledBackError
	if err != nil && d.live.Load() && !errors.As(err, &rb) {
		return res, &SwitchedError{ReleaseID: d.releaseID, Err: err}
	}
	return res, err
}

// deployRun is the state of one deploy shared by its steps.
type deployRun struct {
	*run
	src       Source
	releaseID string
	live      atomic.Bool // some host is live on the new release now (after any switch back)
	prefetch  chan built  // the result of src.Build started with the run (Source.Prefetch), or nil
	streams   streams     // upload streams made once for several hosts

	mu          sync.Mutex
	deltas      map[*parsedManifest]*deltaPlan // by the live manifest the hosts hold
	switchTimes map[string]SwitchTime
	skew        time.Duration
	skewHosts   int

	shippedTrees map[string][]source.File // the tree without shared paths, by the paths left out
	checklists   map[string][]byte        // their checklists

	migrationsOnce sync.Once
	migrations     *[]string // of the upload's tree, when migrations.path is set
	gitMigrations  *[]string // as the first host's export listed them
}

func newDeployRun(ctx context.Context, opts Options, src Source) *deployRun {
	return &deployRun{run: newRun(ctx, opts), src: src}
}

// steps is the whole deploy, in order: everything up to the rollout
// prepares the new release beside the live one on every host; the rollout
// switches them.
func (d *deployRun) steps() []Step {
	cfg := d.opts.Config
	inspect := inspectStep{r: d.run, sharedFiles: cfg.Shared.Files, sharedDirs: cfg.Shared.Dirs, forSwitch: true, flavour: true, manifest: d.delta(), fetcher: d.viaStore()}
	steps := []Step{perHost(connectStep{r: d.run})}
	steps = append(steps, lockSteps(d.run, &inspect)...)
	steps = append(steps, perHost(inspect), fleetWide(driftStep{d}))
	if d.src.Git != nil {
		steps = append(steps, perHost(fetchStep{d: d}), fleetWide(resolveStep{d}))
	}
	steps = append(steps, fleetWide(alreadyLiveStep{d}))
	if d.src.Build != nil {
		steps = append(steps, fleetWide(buildStep{d}))
	}
	steps = append(steps, fleetWide(chooseReleaseStep{d}))
	if d.delta() {
		steps = append(steps, fleetWide(manifestStep{d.run}))
	}
	var upload HostStep = uploadStep{d: d}
	if d.viaStore() {
		st := &storeRun{d: d}
		steps, upload = append(steps, fleetWide(storePacksStep{st})), storeUploadStep{st: st}
	}
	// The upload's round trip carries the creation of the release before
	// it and, up to the barrier before the switch, what follows it with
	// no hook in between (fold.go).
	create := createReleaseStep{d: d}
	var then []scripted
	if sh := cfg.Shared; len(sh.Dirs)+len(sh.Files) > 0 {
		then = append(then, linkSharedStep{d: d})
	}
	if _, inRelease := splitWritable(cfg); len(inRelease) > 0 {
		then = append(then, writableStep{d: d})
	}
	beforeSwitch := hookSteps(d.run, "before_switch", cfg.Hooks.BeforeSwitch, d.releaseFor)
	sync := prepareSwitchStep{d: d}
	if len(beforeSwitch) == 0 {
		then = append(then, sync)
	}
	switch lead, ok := upload.(foldLead); {
	case d.src.Git != nil:
		steps = append(steps, perHost(create), perHost(exportStep{d: d}))
		steps = append(steps, hookSteps(d.run, "remote_build", commandsAsHooks(d.src.Git.RemoteBuild), d.releaseFor)...)
		steps = append(steps, scriptedSteps(then)...)
	case ok:
		steps = append(steps, perHost(fold([]scripted{create}, lead, then)))
	default:
		steps = append(steps, perHost(create), perHost(upload))
		steps = append(steps, scriptedSteps(then)...)
	}
	steps = append(steps, beforeSwitch...)
	if len(beforeSwitch) > 0 {
		steps = append(steps, perHost(sync))
	}
	// Everything is prepared on every host; the rollout switches them,
	// all at once or batch by batch, each batch followed by its
	// after_switch hooks and health check.
	steps = append(steps, fleetWide(rolloutStep{d}))
	reset := opcacheResetSteps(d.run)
	// Record and cleanup in one round trip (fold.go).
	steps = append(steps, perHost(fold([]scripted{recordStep{d: d}}, cleanupStep{d: d, last: len(reset) == 0}, nil)))
	return append(steps, reset...)
}

// delta says whether this deploy may send only the changes: the upload
// strategy with source.delta on.
func (d *deployRun) delta() bool {
	return d.src.Git == nil && d.opts.Config.Source.Delta
}

func (d *deployRun) releaseFor(*Target) string { return d.releaseID }

func (d *deployRun) result() *Result {
	d.mu.Lock()
	res := &Result{ReleaseID: d.releaseID, Revision: d.src.Revision, Switches: d.switchTimes, Skew: d.skew, SkewHosts: d.skewHosts}
	d.mu.Unlock()
	for _, t := range d.targets {
		hr := HostResult{Host: t.Name(), RoundTrips: roundTrips(t)}
		if t.State != nil {
			hr.Known = true
			hr.Live, hr.Previous = t.State.Current, t.State.Previous
			hr.Switched = d.releaseID != "" && t.State.Current == d.releaseID
			hr.RolledBack, hr.MovedOn = t.rolledBack, t.movedOn
		}
		res.Hosts = append(res.Hosts, hr)
	}
	return res
}

func (d *deployRun) meta(state string) *ReleaseMeta {
	m := &ReleaseMeta{
		ID:        d.releaseID,
		State:     state,
		CreatedAt: d.opts.Now().UTC(),
		User:      d.owner.User,
		Machine:   d.owner.Machine,
		Stage:     d.opts.Stage.Name,
		Revision:  d.src.Revision,
		Branch:    d.src.Branch,
		Dirty:     d.src.Dirty,

		PromotedFrom: d.src.PromotedFrom,
	}
	if d.src.Tree != nil {
		m.Digest = d.src.Tree.Digest
	}
	m.Migrations = d.releaseMigrations()
	return m
}

// releaseMigrations are the migrations the new release ships, nil while
// unknown (no migrations.path, or the git export has not run yet).
func (d *deployRun) releaseMigrations() *[]string {
	dir := d.opts.Config.Migrations.Path
	if dir == "" {
		return nil
	}
	if d.src.Tree != nil {
		d.migrationsOnce.Do(func() {
			names := treeMigrations(d.src.Tree, dir)
			d.migrations = &names
		})
		return d.migrations
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.gitMigrations
}
