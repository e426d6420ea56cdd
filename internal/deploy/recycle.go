package deploy

import (
	"github.com/slipway-deploy/slipway/internal/layout"
	"github.com/slipway-deploy/slipway/internal/shell"
)

// Recycling: a redeploy on a host whose history is full (keep_releases
// releases) makes its new release, and then cleanup deletes the oldest.
// Copying the live release costs the host an inode for every file of the
// app, however small the change, and deleting the oldest costs as much
// again. With source.recycle (the default), the new release is instead
// the directory of the release cleanup would delete after this deploy,
// renamed and brought up to date: a one-line change then costs the host
// about that line, not the app.
//
// What makes a recycled release the same as a copy of the live one is the
// manifests and the file system's change times:
//
//   - an entry stays only when the old release's manifest line for it
//     (type, mode, size, SHA-256, name, link target) is the live one's,
//     and it has not changed since the old release's manifest was written
//     (its ctime, which no one can set back, is older than the
//     manifest's by more than a millisecond: anything within one tick of
//     the clock counts as changed): so an entry the app or a hook wrote,
//     chmodded or replaced afterwards is taken from the live release
//     again, like any other;
//   - everything else in the old directory goes: files the app wrote at
//     run time, shared links, names the manifests do not hold plainly;
//     directories stay where something under them stays;
//   - what is missing is copied from the live release by the same copier
//     a copy would use, and the upload sends what changed, as always.
//
// It is only tried where it is safe and cheap, else the release is a copy
// as before:
//   - a delta whose unchanged entries the host picks from the live
//     manifest (manifestPick), on a host with GNU tar (and its find, mv);
//   - not with source.hardlink: there the files of every release share
//     inodes, whose change times every new link moves;
//   - the candidate went live (so it passed its verify), is neither the
//     live release nor the rollback target, before this deploy or after
//     it (so recycling needs keep_releases of 3 or more), and the host
//     confirms that its directory and manifest are there, that no process
//     uses it (as cleanup checks), and that the deploy user owns every
//     entry and can write every directory in it, so the removals cannot
//     fail halfway.
//
// The cost of a failure: a deploy that fails after recycling leaves one
// release fewer (the oldest, which its success would have deleted), and
// the deploys after it copy until one goes live, so that a streak of
// failures costs one release, not the history.

// recycleCandidate is the release whose directory t's new release reuses,
// "" for none: the oldest release that went live among those cleanup
// would delete once this deploy's release is live.
func (d *deployRun) recycleCandidate(t *Target) string {
	src := d.opts.Config.Source
	if !src.Recycle || src.Hardlink || t.State.Tar != tarGNU {
		return ""
	}
	if plan := d.deltaPlan(t); plan == nil || plan.pick == nil || len(plan.delta.CopyTree) == 0 {
		return ""
	}
	return recycleChoice(t.State, d.releaseID, d.opts.Config.KeepReleases)
}

// recycleChoice is the release of st whose directory release id reuses,
// "" for none (see recycleCandidate).
func recycleChoice(st *State, id string, keep int) string {
	// After a failure (its release recorded failed or interrupted, or
	// left preparing by a killed run), the next deploy copies: a streak
	// of failed deploys costs the history at most the one release the
	// first of them recycled.
	newest := ""
	for rid := range st.Meta {
		if rid > newest {
			newest = rid
		}
	}
	if m := st.Meta[newest]; m == nil || neverLive(m.State) {
		return ""
	}
	candidate := ""
	for _, rid := range PlanPrune(afterDeploy(st, id), keep).Delete {
		m := st.Meta[rid]
		// Never the release a rollback would go back to now: should this
		// deploy fail, it must still be there (with keep_releases 2 or
		// less, that is the one cleanup would delete).
		if m == nil || neverLive(m.State) || rid == st.RollbackTarget() {
			continue
		}
		if candidate == "" || rid < candidate {
			candidate = rid
		}
	}
	return candidate
}

// afterDeploy is st as it will be once release id went live on it.
func afterDeploy(st *State, id string) *State {
	after := *st
	after.Releases = append(append([]string{}, st.Releases...), id)
	after.Meta = map[string]*ReleaseMeta{id: {ID: id, State: StateDeployed}}
	for k, v := range st.Meta {
		after.Meta[k] = v
	}
	after.Current = id
	return &after
}

// Work files of a recycle, inside the new release (reserved names, see
// source.Reserved), made before the old directory takes its place; the
// listing is of the old directory, so they are in none.
const (
	recycleListing = ".slipway-recycle-listing"
	recycleRemove  = ".slipway-recycle-remove"
	recycleNames   = ".slipway-recycle-names"
	recycleOdd     = ".slipway-recycle-odd"
)

// recycleScript fills release id, just made empty, with the entries of the
// live release that pick selects (and the odd names listIn writes): from
// release old's directory, renamed to id and brought up to date (see
// above), where the host allows it, else copied (copyUnchanged). Before
// the rename nothing has changed; after it, a failure leaves a directory
// the create step's script removes.
//
// The listing of the old directory has a line per entry, its fields
// separated by double quotes, which no plain name holds (the others are
// listed apart, and removed): path, parent, type, change time. The name
// in a manifest line is its second such field: an escaped name's holds a
// backslash, so it is no plain path.
func recycleScript(l layout.Layout, old, live, id string, pick *manifestPick, tar, listIn string) string {
	a := copyArgs(l, live, id, listIn)
	a["in_use"] = shell.Raw(inUseFunc)
	a["old"], a["old_manifest"], a["old_history"] = l.ReleaseDir(old), l.ManifestFile(old), l.HistoryFile(old)
	a["cond"], a["lines"] = shell.Raw(pick.cond("FNR")), pick.lines
	// The work files, made in the old directory before it moves: named
	// relative to it, then to the new release.
	a["listing"], a["remove"], a["names"], a["odd"] = "./"+recycleListing, "./"+recycleRemove, "./"+recycleNames, "./"+recycleOdd
	a["copy"] = shell.Raw(copyUnchanged(l, live, id, false, pick, tar, listIn))
	return shell.Script(`{{in_use}}o={{old}}
if [ -d "$o" ] && [ ! -L "$o" ] && [ -f {{old_manifest}} ] && ! in_use "$o" && u=$(id -u) &&
  m=$(find {{old_manifest}} -printf '%C@') && [ -n "$m" ] &&
  f=$(find "$o" -maxdepth 0 \( ! -user "$u" -o ! -perm -u=rwx \) -print 2>&1) && [ -z "$f" ] &&
  (cd -- "$o" && : > {{remove}} && : > {{names}} && : > {{odd}} &&
    LC_ALL=C find . -mindepth 1 -depth ! -path {{listing}} ! -path {{remove}} ! -path {{names}} ! -path {{odd}} \( \( \( ! -user "$u" -o -type d ! -perm -u=rwx \) -printf 'foreign\n' -quit \) -o \
      \( \( -path '*[! -~]*' -o -path '*["\\]*' \) -fprint0 {{odd}} \) -o -printf '%P"%h"%y"%C@\n' \) > {{listing}} 2>/dev/null &&
    ! grep -qx foreign {{listing}} || { rm -f -- {{listing}} {{remove}} {{names}} {{odd}}; exit 1; }); then
  mv -T -- "$o" {{release}} && rm -f -- {{old_history}} && cd -- {{release}} || exit
  xargs -0 -r rm -rf -- < {{odd}} || exit
  LC_ALL=C awk -F '"' -v m="$m" -v remove={{remove}} -v names={{names}} -v lines={{lines}} '
    FILENAME == ARGV[1] { if ({{cond}}) { want[$2] = $0; order[++n] = $2 } next }
    FILENAME == ARGV[2] { if (FNR > 1) had[$2] = $0; next }
    {
      p = $1
      if ((p in want) && (p in had) && had[p] == want[p] && substr(want[p], 1, 1) == $3 && $4 + 0 < m - 0.001) keep[p] = 1
      else if (!($3 == "d" && (p in need))) { print p > remove; next }
      if ($2 != ".") need[substr($2, 3)] = 1
    }
    END {
      if (n != lines) { print "the live release'"'"'s manifest changed during the deploy; deploy again" > "/dev/stderr"; exit 1 }
      for (i = 1; i <= n; i++) if (!(order[i] in keep)) print order[i] > names
    }' {{live_manifest}} {{old_manifest}} {{listing}} || exit
  tr '\n' '\000' < {{remove}} | xargs -0 -r rm -rf -- || exit
  tr '\n' '\000' < {{names}} > {{list}} && {{list_in}} >> {{list}} || exit
  rm -f -- {{listing}} {{remove}} {{names}} {{odd}} {{old_manifest}} && cd -- {{live}} || exit
  `+copyListed(false, tar)+`
else
  {{copy}}
fi`, a)
}
