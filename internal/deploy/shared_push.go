package deploy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"

	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/layout"
	"github.com/slipway-deploy/slipway/internal/shell"
)

// slipway shared push: one shared file written on every host, under the
// deploy lock, never half-written. Each host first gets the new copy under
// a temporary name beside the file, checked against the local file's
// checksum and synced; only when every host has it does each replace the
// file with one rename(2), keeping the previous copy in the history. A run
// killed at any point leaves every host with the old file or the new one,
// whole (and at worst a temporary copy, which the next push removes).

// sharedHistoryKeep is how many previous copies of each shared file the
// history keeps.
const sharedHistoryKeep = 10

// sharedHistoryStamp names a copy in the history: when the push that
// replaced it started, in UTC, to the nanosecond (two pushes in one second
// keep both), sorting in time order.
const sharedHistoryStamp = "20060102T150405.000000000Z"

// sharedHistoryGlob matches the names of sharedHistoryStamp, so pruning
// never touches anything else.
const sharedHistoryGlob = shell.Raw("[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]T[0-9][0-9][0-9][0-9][0-9][0-9].[0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9][0-9]Z")

// SharedHistoryDir is where the previous copies of the shared file name
// are kept on each host: shared/.slipway/history/NAME/, one file per copy.
func SharedHistoryDir(l layout.Layout, name string) string {
	return path.Join(l.SharedDir(), layout.MetaDir, "history", name)
}

// PushRequest is a shared file to push.
type PushRequest struct {
	Local SharedLocal // the file to push, and the shared file it becomes
	// Confirm is shown the comparison with each host's copy before
	// anything is written, while the run holds the lock; an error stops
	// the push, with nothing written.
	Confirm func(ctx context.Context, diff *SharedDiff) error
}

// PushResult says what a push did.
type PushResult struct {
	Diff *SharedDiff // each host's copy before the push, against the local file
	// Unchanged: every host had the file already; nothing was written and
	// no hook ran.
	Unchanged bool
	Pushed    []string // the hosts whose copy was replaced, in stage order
	// Kept are the hosts of Pushed that had a copy before: it is kept in
	// History.
	Kept    []string
	History string // where each host keeps the copies replaced
}

// errSharedSame ends a push with nothing to write.
var errSharedSame = fmt.Errorf("every host has this copy already: %w", errDone)

// PushShared writes the local file as the shared file it names on every
// selected host (see the top of this file), then runs the
// after_shared_push hooks in the live release.
func PushShared(ctx context.Context, opts Options, req PushRequest) (*PushResult, error) {
	name := req.Local.Name
	if !opts.Config.Shared.HasFile(name) {
		return nil, fmt.Errorf("%s is not one of shared.files", name)
	}
	r := newRun(ctx, opts)
	if r.primary() == nil {
		return nil, errNoSharedFiles
	}
	res := &PushResult{History: SharedHistoryDir(r.layout, name)}
	inspect := inspectStep{r: r, sums: []string{name}}
	compare := &compareSharedStep{r: r, locals: []SharedLocal{req.Local}}
	push := &sharedPush{r: r, name: name, local: req.Local.Path, stamp: r.opts.Now().UTC().Format(sharedHistoryStamp)}
	steps := []Step{perHost(connectStep{r: r})}
	steps = append(steps, lockSteps(r, &inspect)...)
	steps = append(steps,
		perHost(inspect),
		fleetWide(compare),
		fleetWide(confirmPushStep{compare: compare, push: push, confirm: req.Confirm}),
		perHost(uploadSharedStep{push}),
		perHost(replaceSharedStep{push}),
	)
	for _, h := range opts.Config.Hooks.AfterSharedPush {
		hook := hookStep{r: r, phase: "after_shared_push", hook: h, releaseFor: currentRelease, env: []string{"SLIPWAY_SHARED_FILE=" + name}}
		steps = append(steps, perHost(sharedPushHookStep{hook}))
	}
	err := r.pipeline(steps)
	if len(compare.diffs) > 0 {
		res.Diff = compare.diffs[0]
	}
	for _, t := range r.targets {
		if push.replaced(t) {
			res.Pushed = append(res.Pushed, t.Name())
			if t.State.SharedSums[name] != "" {
				res.Kept = append(res.Kept, t.Name())
			}
		}
	}
	if errors.Is(err, errSharedSame) {
		res.Unchanged = true
		err = nil
	}
	return res, err
}

// sharedPush is what the steps of one push share.
type sharedPush struct {
	r     *run
	name  string // the shared file
	local string // the local file
	stamp string // the history name of the copies this push replaces
	sum   string // the local file's SHA-256, as compared
	size  int64
	mode  fs.FileMode

	differs map[string]bool // the hosts whose copy differs: the only ones written
	done    []bool          // by target index: the copy was replaced
}

func (p *sharedPush) path() string { return p.r.layout.SharedPath(p.name) }

// tempPath is where this run uploads the new copy: beside the file, so the
// rename stays in one directory (one file system), under a name of its own.
func (p *sharedPush) tempPath() string {
	return path.Join(path.Dir(p.path()), p.tempPrefix()+p.r.owner.Token[:16])
}

// tempPrefix starts the name of every push's temporary copy of the file.
func (p *sharedPush) tempPrefix() string { return "." + path.Base(p.name) + ".slipway-push-" }

// Where writes only the hosts whose copy differs; the others are skipped,
// and say so.
func (p *sharedPush) where(t *Target) Selection {
	switch {
	case t.Host.NoRelease:
		return NotHere
	case !p.differs[t.Name()]:
		return SkipHere
	}
	return RunHere
}

func (p *sharedPush) replaced(t *Target) bool { return p.done != nil && p.done[t.Index] }

// confirmPushStep ends the push when no host needs the file, and otherwise
// shows the comparison for confirmation.
type confirmPushStep struct {
	compare *compareSharedStep
	push    *sharedPush
	confirm func(context.Context, *SharedDiff) error
}

func (confirmPushStep) Name() string { return "confirm" }

func (s confirmPushStep) RunFleet(ctx context.Context, targets []*Target) error {
	diff := s.compare.diffs[0]
	p := s.push
	p.sum = diff.LocalSum
	p.mode = p.r.opts.Config.Shared.Mode()
	p.done = make([]bool, len(targets))
	p.differs = map[string]bool{}
	for _, h := range diff.Differing() {
		p.differs[h] = true
	}
	if len(p.differs) == 0 {
		return errSharedSame
	}
	info, err := os.Stat(p.local)
	if err != nil {
		return err
	}
	p.size = info.Size()
	if s.confirm == nil {
		return nil
	}
	return s.confirm(ctx, diff)
}

// uploadSharedStep puts the new copy beside the file on each host, checked
// and synced. Undo removes it.
type uploadSharedStep struct{ p *sharedPush }

func (uploadSharedStep) Name() string { return "upload" }

func (s uploadSharedStep) Where(t *Target) Selection { return s.p.where(t) }

func (s uploadSharedStep) Run(ctx context.Context, t *Target) error {
	p := s.p
	f, err := os.Open(p.local)
	if err != nil {
		return err
	}
	defer f.Close()
	script := sharedUploadScript(p.path(), p.tempPath(), p.tempPrefix(), p.sum, p.size, p.mode)
	_, err = t.Exec.Exec(ctx, host.Command{Script: script, Stdin: f})
	return err
}

func (s uploadSharedStep) Undo(ctx context.Context, t *Target) error {
	_, err := t.Exec.Exec(ctx, host.Command{Script: shell.Script("rm -f -- {{tmp}}", shell.Args{"tmp": s.p.tempPath()})})
	return err
}

// replaceSharedStep keeps the previous copy in the history and renames the
// new one over it. It commits: a host replaced is not undone.
type replaceSharedStep struct{ p *sharedPush }

func (replaceSharedStep) Name() string { return "replace" }

func (s replaceSharedStep) Where(t *Target) Selection { return s.p.where(t) }

func (replaceSharedStep) Commits() bool { return true }

func (s replaceSharedStep) Run(ctx context.Context, t *Target) error {
	p := s.p
	l := p.r.layout
	script := sharedReplaceScript(p.path(), p.tempPath(), SharedHistoryDir(l, p.name), p.stamp, fenceScript(l, p.r.owner.Token))
	// Past the point of no return: once the step has begun (on any host,
	// see Runner), an interrupt does not stop it halfway across the fleet.
	if _, err := t.Exec.Exec(context.WithoutCancel(ctx), host.Command{Script: script}); err != nil {
		return err
	}
	p.done[t.Index] = true
	if len(p.r.opts.Config.Hooks.AfterSharedPush) > 0 && currentRelease(t) == "" {
		p.r.warn(t, "nothing is live here yet, so the after_shared_push hooks do not run here")
	}
	return nil
}

// sharedPushHookStep is an after_shared_push hook: in the live release,
// on a host that has one (replaceSharedStep says when one has none).
type sharedPushHookStep struct{ hookStep }

func (s sharedPushHookStep) Where(t *Target) Selection {
	if !t.Host.NoRelease && currentRelease(t) == "" {
		return SkipHere
	}
	return s.hookStep.Where(t)
}

// notRegular fails when the file at "$p" is a symlink, a directory or
// anything else but a regular file: a rename would replace the link
// itself, or move the copy into the directory.
const notRegular = `if [ -L "$p" ] || { [ -e "$p" ] && [ ! -f "$p" ]; }; then printf '%s is not a regular file (a symlink or a directory?); slipway shared push replaces regular files only\n' "$p" >&2; exit 1; fi`

// sharedUploadScript writes its standard input to tmp, beside the shared
// file at file, and keeps it only if it is the file sent (size bytes with
// checksum sum: a transfer cut short leaves nothing behind), with mode,
// the group of the copy it will replace (the web server's, often), synced
// to disk. Temporary copies of runs that died go first: the run holds the
// lock, so no other push is writing one.
func sharedUploadScript(file, tmp, tmpPrefix, sum string, size int64, mode fs.FileMode) string {
	return shell.Script(`p={{file}}; d={{dir}}; tmp={{tmp}}
`+notRegular+`
umask 022 && mkdir -p -- "$d" || exit
for f in "$d"/{{prefix}}*; do if [ -f "$f" ] && [ ! -L "$f" ]; then rm -f -- "$f"; fi; done
umask 077
cat > "$tmp" || { rm -f -- "$tmp"; exit 1; }
if ! s=$(sha256sum < "$tmp") || [ "${s%% *}" != {{sum}} ]; then
  n=$(wc -c < "$tmp"); rm -f -- "$tmp"
  printf 'the copy received (%s bytes) is not the file sent (%s bytes): the transfer was cut short or changed\n' "$n" {{size}} >&2; exit 1
fi
if [ -f "$p" ]; then chgrp "$(ls -ldn -- "$p" | awk '{print $4}')" "$tmp" 2>/dev/null || true; fi
chmod {{mode}} "$tmp" && {{sync}}`, shell.Args{
		"file": file, "dir": path.Dir(file), "tmp": tmp, "prefix": tmpPrefix,
		"sum": sum, "size": size, "mode": fmt.Sprintf("%03o", mode.Perm()),
		"sync": shell.Raw(syncScript("", tmp)),
	})
}

// sharedReplaceScript copies the shared file at file into the history
// (history/stamp), renames tmp over it (one rename(2): a reader sees the
// old file or the new one, whole), syncs the directory so the rename
// survives a crash, and prunes the history to its newest
// sharedHistoryKeep copies. fence checks again, right before the rename,
// that the run still holds the lock.
func sharedReplaceScript(file, tmp, history, stamp, fence string) string {
	return shell.Script(`p={{file}}; tmp={{tmp}}; h={{history}}
[ -f "$tmp" ] || { printf '%s is gone: the new copy was removed before it could replace %s\n' "$tmp" "$p" >&2; exit 1; }
`+notRegular+`
if [ -f "$p" ]; then (umask 077 && mkdir -p -- "$h") && cp -p -- "$p" "$h"/{{stamp}} || exit; fi
{{fence}}
mv -f -- "$tmp" "$p" || exit
{{sync}} || exit
ls -1 -- "$h" 2>/dev/null | sort -r | awk -v keep={{keep}} 'NR > keep' | while IFS= read -r f; do case $f in {{glob}}) rm -f -- "$h/$f";; esac; done`, shell.Args{
		"file": file, "tmp": tmp, "history": history, "stamp": stamp, "dir": path.Dir(file),
		"fence": shell.Raw(fence), "keep": sharedHistoryKeep, "glob": sharedHistoryGlob,
		"sync": shell.Raw(syncScript("", path.Dir(file))),
	})
}
