package deploy

import (
	"context"
	"errors"
	"strings"

	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/layout"
	"github.com/slipway-deploy/slipway/internal/shell"
)

// Cleanup prunes old releases on every selected host, under the lock.
func Cleanup(ctx context.Context, opts Options) (map[string]PruneResult, error) {
	r := newRun(ctx, opts)
	results := make([]PruneResult, len(r.targets))
	prune := stepFunc{name: "cleanup", fn: func(ctx context.Context, t *Target) error {
		res, err := Prune(ctx, t, r.layout, opts.Config.KeepReleases, opts.Config.Cleanup.Sudo)
		results[t.Index] = res
		r.reportPrune(t, res, nil)
		return err
	}}
	inspect := inspectStep{r: r}
	steps := []Step{perHost(connectStep{r: r})}
	steps = append(steps, lockSteps(r, &inspect)...)
	err := r.pipeline(append(steps, perHost(inspect), perHost(prune)))
	out := map[string]PruneResult{}
	for _, t := range r.targets {
		out[t.Name()] = results[t.Index]
	}
	return out, err
}

// cleanupStep prunes old releases after a successful switch. A failure to
// prune is a warning: the deploy itself succeeded.
type cleanupStep struct {
	releaseHosts
	d *deployRun
	// last: nothing follows on the hosts (no opcache_reset), so cleanup
	// releases the lock in its own round trip.
	last bool
}

func (cleanupStep) Name() string { return "cleanup" }

func (s cleanupStep) Run(ctx context.Context, t *Target) error {
	return s.runVia(ctx, t, t.Exec.Exec)
}

// runVia prunes with exec, which may carry the record step's script
// (fold.go): a failure of that is the record's, not cleanup's.
func (s cleanupStep) runVia(ctx context.Context, t *Target, exec execFunc) error {
	cfg := s.d.opts.Config
	res, err := prune(ctx, t, s.d.layout, cfg.KeepReleases, cfg.Cleanup.Sudo, func(script string) (host.Result, error) {
		if s.last {
			// The deploy's last work on t: its lock goes in the same
			// round trip.
			return s.d.lock.execReleasing(ctx, t, script, exec)
		}
		return exec(ctx, host.Command{Script: script})
	})
	var other *phaseError
	if errors.As(err, &other) {
		return err
	}
	s.d.reportPrune(t, res, why(ctx, err))
	return nil
}

// Plan notes what cleanup would delete after this deploy: the new release
// live, the old one its rollback target.
func (s cleanupStep) Plan(_ context.Context, t *Target) error {
	s.d.plan.host(t).Cleanup = PlanPrune(afterDeploy(t.State, s.d.releaseID), s.d.opts.Config.KeepReleases).Delete
	return nil
}

// reportPrune warns about releases cleanup kept or could not delete.
func (r *run) reportPrune(t *Target, res PruneResult, err error) {
	if err != nil {
		r.warn(t, "cleanup failed, old releases stay until the next cleanup: %v", err)
	}
	if len(res.InUse) > 0 {
		r.warn(t, "kept %s: a running process still uses it (its working directory, executable or open files); cleanup deletes it once that process is gone", strings.Join(res.InUse, ", "))
	}
	if len(res.Failed) > 0 {
		r.warn(t, "could not delete %s: it holds files the deploy user cannot remove (made by the web server's user?). Set cleanup: {sudo: true} to delete with sudo -n, or give the deploy user rights with a default ACL (setfacl -d -m u:DEPLOY_USER:rwX on the writable directories)", strings.Join(res.Failed, ", "))
	}
}

// PrunePlan is what cleanup deletes on one host and why it keeps the rest.
type PrunePlan struct {
	Delete []string // release ids whose directories go (and their metadata, once gone, unless they failed)
	Forget []string // metadata whose release is gone: failed ones, long gone; ones that went live, at once
}

// PlanPrune decides, from a host's state, which releases cleanup deletes:
//
//   - releases that went live: the newest keep are kept;
//   - the live release and the rollback target are always kept;
//   - releases rolled back from are kept while newer than the oldest kept
//     release (they may be wanted for a look), else deleted;
//   - failed releases and leftovers of killed runs ("preparing" while no run
//     holds the lock) are deleted and never counted;
//   - directories without slipway metadata (Capistrano's, or anyone's) are
//     never touched.
//
// Metadata of deleted failed releases stays, so history shows the failure
// and the id is never reused; the metadata of the oldest such entries goes
// once there are more than keep of them.
func PlanPrune(s *State, keep int) PrunePlan {
	protected := map[string]bool{s.Current: true, s.RollbackTarget(): true}
	var plan PrunePlan
	var deployed []string
	for _, id := range s.Releases {
		if m, ok := s.Meta[id]; ok && m.State == StateDeployed {
			deployed = append(deployed, id)
		}
	}
	kept := map[string]bool{}
	for i := len(deployed) - 1; i >= 0 && len(kept) < keep; i-- {
		kept[deployed[i]] = true
	}
	oldestKept := ""
	for id := range kept {
		if oldestKept == "" || id < oldestKept {
			oldestKept = id
		}
	}
	for _, id := range s.Releases {
		m, ours := s.Meta[id]
		if !ours || protected[id] || kept[id] {
			continue
		}
		switch m.State {
		case StateDeployed:
			plan.Delete = append(plan.Delete, id)
		case StateRolledBack:
			if id < oldestKept {
				plan.Delete = append(plan.Delete, id)
			}
		case StateFailed, StateInterrupted, StatePreparing:
			plan.Delete = append(plan.Delete, id)
		}
	}
	// Failed entries whose directory is gone: keep the newest keep of them.
	var failed []string
	for id, m := range s.Meta {
		if neverLive(m.State) && !s.HasRelease(id) {
			failed = append(failed, id)
		}
	}
	layout.SortIDs(failed)
	if len(failed) > keep {
		plan.Forget = append(plan.Forget, failed[:len(failed)-keep]...)
	}
	// Entries of releases that went live whose directory is gone: a
	// removal (or a recycle, recycle.go) stopped between the directory
	// and its metadata.
	var gone []string
	for id, m := range s.Meta {
		if !neverLive(m.State) && !s.HasRelease(id) && id != s.Current {
			gone = append(gone, id)
		}
	}
	layout.SortIDs(gone)
	plan.Forget = append(plan.Forget, gone...)
	return plan
}

// PruneResult says what cleanup did on one host.
type PruneResult struct {
	Deleted []string
	InUse   []string // kept: a running process still uses them
	Failed  []string // could not be deleted (files of another user)
}

// Prune deletes what PlanPrune chose on one host, and stray switch links
// left by killed runs. A release a running process still uses (its working
// directory, executable, a mapped or open file, as /proc shows them to the
// deploy user) is kept and reported; one that cannot be deleted is
// reported, never a failure of the deploy. rm -rf does not follow
// symlinks, so nothing outside a release directory is touched, and the
// release path is checked to be a real directory first.
func Prune(ctx context.Context, t *Target, l layout.Layout, keep int, sudo bool) (PruneResult, error) {
	return prune(ctx, t, l, keep, sudo, func(script string) (host.Result, error) {
		return t.Exec.Exec(ctx, host.Command{Script: script})
	})
}

// prune is Prune with the script run by exec (a deploy's releases its lock
// in the same round trip).
func prune(ctx context.Context, t *Target, l layout.Layout, keep int, sudo bool, exec func(string) (host.Result, error)) (PruneResult, error) {
	plan := PlanPrune(t.State, keep)
	res, err := exec(pruneScript(l, plan, t.State.Meta, sudo))
	var out PruneResult
	gone := map[string]bool{}
	for _, line := range strings.Split(string(res.Stdout), "\n") {
		kind, id, _ := strings.Cut(line, " ")
		switch kind {
		case "deleted":
			out.Deleted = append(out.Deleted, id)
			gone[id] = true
		case "in-use":
			out.InUse = append(out.InUse, id)
		case "failed":
			out.Failed = append(out.Failed, id)
		}
	}
	var left []string
	for _, id := range t.State.Releases {
		if !gone[id] {
			left = append(left, id)
		}
	}
	t.State.Releases = left
	for _, id := range plan.Forget {
		delete(t.State.Meta, id)
	}
	for id := range gone {
		if m := t.State.Meta[id]; m != nil && !neverLive(m.State) {
			delete(t.State.Meta, id)
		}
	}
	return out, err
}

// pruneScript deletes the releases of plan, keeping those in use and
// reporting one line per release.
func pruneScript(l layout.Layout, plan PrunePlan, meta map[string]*ReleaseMeta, sudo bool) string {
	rm := shell.Raw("rm")
	if sudo {
		rm = "sudo -n rm"
	}
	var b strings.Builder
	b.WriteString(inUseFunc)
	for _, id := range plan.Delete {
		dir := l.ReleaseDir(id)
		// The metadata of a release that went live goes with it; a failed
		// one's stays, so history keeps the failure (see PlanPrune).
		forget := []string{l.ManifestFile(id)}
		if m := meta[id]; m != nil && !neverLive(m.State) {
			forget = append(forget, l.HistoryFile(id))
		}
		b.WriteString(shell.Script(`d={{dir}}
if [ -d "$d" ] && [ ! -L "$d" ]; then
  if in_use "$d"; then echo {{in_use}}
  elif {{rm}} -rf -- "$d" 2>/dev/null; then rm -f -- {{forget}}; echo {{deleted}}
  else echo {{failed}}; fi
else rm -f -- {{forget}}; echo {{deleted}}; fi
`, shell.Args{
			"dir": dir, "rm": rm, "forget": forget,
			"in_use": "in-use " + id, "deleted": "deleted " + id, "failed": "failed " + id,
		}))
	}
	for _, id := range plan.Forget {
		b.WriteString(shell.Script("rm -f -- {{file}}\n", shell.Args{"file": l.HistoryFile(id)}))
	}
	// Switch links of runs that died before renaming them. Ours holds the
	// lock, so none of these is in use.
	b.WriteString(shell.Script(`for f in {{deploy_to}}/.{{current}}.slipway-*; do if [ -L "$f" ]; then rm -f -- "$f"; fi; done`+"\n", shell.Args{
		"deploy_to": l.DeployTo, "current": l.Current,
	}))
	// Work files of metadata and manifest writes that were stopped halfway
	// (an interrupt, a kill). Ours holds the lock, so none is being
	// written.
	b.WriteString(shell.Script(`rm -f -- {{history}}/*.tmp {{manifests}}/*.tmp {{manifests}}/*.patch {{manifests}}/*.body`+"\n", shell.Args{
		"history": l.HistoryDir(), "manifests": l.ManifestsDir(),
	}))
	// Manifests of releases whose directory is gone: a removal stopped
	// between the directory and its manifest.
	b.WriteString(shell.Script(`for m in {{manifests}}/*; do if [ -f "$m" ] && [ ! -e {{releases}}/"${m##*/}" ]; then rm -f -- "$m"; fi; done`+"\n", shell.Args{
		"manifests": l.ManifestsDir(), "releases": l.ReleasesDir(),
	}))
	return b.String()
}

// inUseFunc defines in_use DIR: true when a process this user can see has
// its working directory, root or executable in DIR, or a file of DIR open
// or mapped. One ls and one grep, however many processes, with what GNU
// and BusyBox both have (BusyBox's find has no -lname).
const inUseFunc = `in_use() {
  ls -l /proc/[0-9]*/cwd /proc/[0-9]*/root /proc/[0-9]*/exe /proc/[0-9]*/fd/ 2>/dev/null |
    d="$1" awk '{ i = index($0, " -> "); if (i) { t = substr($0, i + 4); if (t == ENVIRON["d"] || index(t, ENVIRON["d"] "/") == 1) { found = 1; exit } } } END { exit !found }' && return 0
  grep -qsF -- "$1/" /proc/[0-9]*/maps 2>/dev/null
}
`
