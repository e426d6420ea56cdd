package deploy

import (
	"context"
	"fmt"
	"strings"

	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/layout"
	"github.com/slipway-deploy/slipway/internal/shell"
)

// PrunePlan is what cleanup deletes on one host and why it keeps the rest.
type PrunePlan struct {
	Delete []string // release ids whose directories go
	Forget []string // release ids whose metadata goes too (no directory left to describe)
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
			plan.Forget = append(plan.Forget, id)
		case StateRolledBack:
			if id < oldestKept {
				plan.Delete = append(plan.Delete, id)
				plan.Forget = append(plan.Forget, id)
			}
		case StateFailed, StatePreparing:
			plan.Delete = append(plan.Delete, id)
		}
	}
	// Failed entries whose directory is gone: keep the newest keep of them.
	var failed []string
	for id, m := range s.Meta {
		if (m.State == StateFailed || m.State == StatePreparing) && !s.HasRelease(id) {
			failed = append(failed, id)
		}
	}
	layout.SortIDs(failed)
	if len(failed) > keep {
		plan.Forget = append(plan.Forget, failed[:len(failed)-keep]...)
	}
	return plan
}

// Prune deletes what PlanPrune chose on one host, and stray switch links
// left by killed runs. rm -rf does not follow symlinks, so nothing outside
// a release directory is touched; the release path is checked to be a real
// directory first.
func Prune(ctx context.Context, t *Target, l layout.Layout, keep int) error {
	plan := PlanPrune(t.State, keep)
	var b strings.Builder
	b.WriteString("err=0\n")
	for _, id := range plan.Delete {
		dir := shell.Quote(l.ReleaseDir(id))
		fmt.Fprintf(&b, "if [ -d %[1]s ] && [ ! -L %[1]s ]; then rm -rf -- %[1]s || err=1; fi\nrm -f -- %[2]s\n", dir, shell.Quote(l.ManifestFile(id)))
	}
	for _, id := range plan.Forget {
		fmt.Fprintf(&b, "rm -f -- %s\n", shell.Quote(l.HistoryFile(id)))
	}
	// Switch links of runs that died before renaming them. Ours holds the
	// lock, so none of these is in use.
	fmt.Fprintf(&b, "for f in %s/.%s.slipway-*; do [ -L \"$f\" ] && rm -f -- \"$f\"; done\n", shell.Quote(l.DeployTo), shell.Quote(l.Current))
	b.WriteString("exit $err\n")
	if _, err := t.Exec.Exec(ctx, host.Command{Script: b.String()}); err != nil {
		return err
	}
	deleted := map[string]bool{}
	for _, id := range plan.Delete {
		deleted[id] = true
	}
	var left []string
	for _, id := range t.State.Releases {
		if !deleted[id] {
			left = append(left, id)
		}
	}
	t.State.Releases = left
	for _, id := range plan.Forget {
		delete(t.State.Meta, id)
	}
	return nil
}
