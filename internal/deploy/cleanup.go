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
	Delete []string // release ids whose directories go (and their metadata, once gone, unless they failed)
	Forget []string // failed releases, long gone, whose metadata goes
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
	plan := PlanPrune(t.State, keep)
	rm := "rm"
	if sudo {
		rm = "sudo -n rm"
	}
	var b strings.Builder
	b.WriteString(inUseFunc)
	for _, id := range plan.Delete {
		dir := l.ReleaseDir(id)
		// The metadata of a release that went live goes with it; a failed
		// one's stays, so history keeps the failure (see PlanPrune).
		forget := shell.Quote(l.ManifestFile(id))
		if m := t.State.Meta[id]; m != nil && m.State != StateFailed && m.State != StatePreparing {
			forget += " " + shell.Quote(l.HistoryFile(id))
		}
		fmt.Fprintf(&b, `d=%[1]s
if [ -d "$d" ] && [ ! -L "$d" ]; then
  if in_use "$d" %[2]s; then echo "in-use %[3]s"
  elif %[4]s -rf -- "$d" 2>/dev/null; then rm -f -- %[5]s; echo "deleted %[3]s"
  else echo "failed %[3]s"; fi
else rm -f -- %[5]s; echo "deleted %[3]s"; fi
`, shell.Quote(dir), shell.Quote(fnmatchEscape(dir)), id, rm, forget)
	}
	for _, id := range plan.Forget {
		fmt.Fprintf(&b, "rm -f -- %s\n", shell.Quote(l.HistoryFile(id)))
	}
	// Switch links of runs that died before renaming them. Ours holds the
	// lock, so none of these is in use.
	fmt.Fprintf(&b, "for f in %s/.%s.slipway-*; do if [ -L \"$f\" ]; then rm -f -- \"$f\"; fi; done\n", shell.Quote(l.DeployTo), shell.Quote(l.Current))
	res, err := t.Exec.Exec(ctx, host.Command{Script: b.String()})
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
		if m := t.State.Meta[id]; m != nil && m.State != StateFailed && m.State != StatePreparing {
			delete(t.State.Meta, id)
		}
	}
	return out, err
}

// inUseFunc defines in_use DIR PATTERN: true when a process this user can
// see has its working directory, root or executable in DIR, or a file of
// DIR open or mapped. One find and one grep, however many processes.
const inUseFunc = `in_use() {
  [ -n "$(find /proc/[0-9]*/cwd /proc/[0-9]*/root /proc/[0-9]*/exe /proc/[0-9]*/fd -maxdepth 1 \( -lname "$2" -o -lname "$2/*" \) -print -quit 2>/dev/null)" ] && return 0
  grep -qsF -- "$1/" /proc/[0-9]*/maps 2>/dev/null
}
`

// fnmatchEscape makes a path match itself literally as a find pattern.
func fnmatchEscape(p string) string {
	return strings.NewReplacer("\\", "\\\\", "*", "\\*", "?", "\\?", "[", "\\[").Replace(p)
}
