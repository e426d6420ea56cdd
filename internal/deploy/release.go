package deploy

import (
	"context"
	"encoding/json"
	"io"
	"path"

	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/layout"
	"github.com/slipway-deploy/slipway/internal/shell"
)

// chooseReleaseStep picks one release id for the whole fleet, newer than any
// release on any host, so no id is ever reused. A dry run picks it the
// same way.
type chooseReleaseStep struct{ d *deployRun }

func (chooseReleaseStep) Name() string { return "choose release id" }

func (s chooseReleaseStep) RunFleet(_ context.Context, targets []*Target) error {
	var existing []string
	for _, t := range withState(targets) {
		existing = append(existing, t.State.Releases...)
		for id := range t.State.Meta {
			existing = append(existing, id)
		}
	}
	id, err := layout.NewReleaseID(s.d.opts.Now(), existing)
	if err != nil {
		return err
	}
	s.d.releaseID = id
	return nil
}

// createReleaseStep makes the release directory and its metadata. mkdir
// without -p fails if the directory exists: a release is never written
// over. For a delta upload the unchanged entries are then copied from the
// live release (reflinks where the file system has them, hard links with
// source.hardlink; see copy.go), or the directory of the release cleanup
// would delete is reused and brought up to date (recycle.go); nothing
// else of the live release comes along, so files the app wrote at run
// time and shared links stay behind.
type createReleaseStep struct {
	releaseHosts
	d *deployRun
}

func (createReleaseStep) Name() string { return "create release" }

func (s createReleaseStep) Run(ctx context.Context, t *Target) error {
	script, stdin, _ := s.build(t, false)
	if _, err := t.Exec.Exec(ctx, host.Command{Script: script, Stdin: stdin}); err != nil {
		return s.explain(ctx, t, err)
	}
	return nil
}

// build is the step's script on t, and its input; with embed, the paths
// to copy are in the script itself, with no input, unless they are too
// many (ok false).
func (s createReleaseStep) build(t *Target, embed bool) (script string, stdin io.Reader, ok bool) {
	l := s.d.layout
	fill := writeMetaScript(l, s.d.meta(StatePreparing))
	if plan, listed := s.copies(t); plan != nil {
		listIn := fromStdin
		if embed {
			if listIn, ok = embeddedList(listed); !ok {
				return "", nil, false
			}
		} else {
			stdin = copyList(listed)
		}
		var copy string
		if old := s.d.recycleCandidate(t); old != "" {
			copy = recycleScript(l, old, t.State.Current, s.d.releaseID, plan.pick, t.State.Tar, listIn)
		} else {
			copy = copyUnchanged(l, t.State.Current, s.d.releaseID, s.d.opts.Config.Source.Hardlink, plan.pick, t.State.Tar, listIn)
		}
		fill += " && (\n" + copy + "\n)"
	}
	return createReleaseScript(l, s.d.releaseID, fill), stdin, true
}

// copies is t's delta plan when entries of the live release are copied
// (nil otherwise), and the paths the script is told: with the live
// manifest on the host exactly as we read it, the host picks the entries
// from it and only the odd names are listed; else all of them are.
func (s createReleaseStep) copies(t *Target) (*deltaPlan, []string) {
	plan := s.d.deltaPlan(t)
	if plan == nil || len(plan.delta.CopyTree) == 0 {
		return nil, nil
	}
	if plan.pick != nil {
		return plan, plan.pick.odd
	}
	return plan, plan.delta.CopyTree
}

// foldable: the step rides in the upload's round trip where the paths it
// copies fit in its script.
func (s createReleaseStep) foldable(t *Target) bool {
	_, listed := s.copies(t)
	_, ok := embeddedList(listed)
	return ok
}

func (s createReleaseStep) script(_ context.Context, t *Target) (string, error) {
	script, _, _ := s.build(t, true)
	return script, nil
}

func (createReleaseStep) done(context.Context, *Target) error { return nil }

// explain says what to do about a failure to create the release (a
// deploy directory the user cannot write, a full disk).
func (s createReleaseStep) explain(ctx context.Context, t *Target, err error) error {
	return s.d.explainFailure(ctx, t, "creating release "+s.d.layout.ReleaseDir(s.d.releaseID), err)
}

// Plan notes the release whose directory the new one would reuse (see
// recycle.go); what the release is filled with is the upload's part of
// the plan.
func (s createReleaseStep) Plan(_ context.Context, t *Target) error {
	s.d.plan.host(t).Recycle = s.d.recycleCandidate(t)
	return nil
}

// createReleaseScript makes release id's directory and runs fill in it.
// Undo only reaches hosts where the step succeeded: where it fails (a
// full disk), the script removes what it made itself, so no half-copied
// release, or one without metadata that cleanup would never touch, stays
// behind.
func createReleaseScript(l layout.Layout, id, fill string) string {
	return shell.Script(`umask 022 && mkdir -p -- {{releases}} {{shared}} && mkdir -- {{release}} || exit
{ {{fill}}; } || { status=$?; rm -rf -- {{release}} {{meta_tmp}}; exit $status; }`, shell.Args{
		"releases": l.ReleasesDir(), "shared": l.SharedDir(), "release": l.ReleaseDir(id),
		"fill": shell.Raw(fill), "meta_tmp": l.HistoryFile(id) + ".tmp",
	})
}

// Undo removes the release directory and its manifest and marks it failed
// in history.
func (s createReleaseStep) Undo(ctx context.Context, t *Target) error {
	l := s.d.layout
	id := s.d.releaseID
	script := shell.Script("rm -rf -- {{release}} {{link}} {{manifest}} && {{record}}", shell.Args{
		"release": l.ReleaseDir(id), "link": l.LockedSwitchLink(id), "manifest": l.ManifestFile(id),
		"record": shell.Raw(writeMetaScript(l, s.d.meta(s.d.endState()))),
	})
	_, err := t.Exec.Exec(ctx, host.Command{Script: script})
	return err
}

// endState is the state a release that never went live is recorded in:
// interrupted when the run was, else failed.
func (r *run) endState() string {
	if r.interrupted() {
		return StateInterrupted
	}
	return StateFailed
}

// writeMetaScript writes a release's metadata file atomically (temp file and
// rename), so a reader never sees half of it. Files are written through
// cat, not by sh's redirection of printf: on a full disk cat says "No space
// left on device", where dash only says "I/O error".
func writeMetaScript(l layout.Layout, m *ReleaseMeta) string {
	body, err := json.Marshal(m)
	if err != nil {
		panic(err) // ReleaseMeta always marshals
	}
	file := l.HistoryFile(m.ID)
	return shell.Script(`{ [ -d {{dir}} ] || mkdir -p -- {{dir}}; } && printf '%s\n' {{body}} | cat > {{tmp}} && mv -f -- {{tmp}} {{file}}`, shell.Args{
		"dir": l.HistoryDir(), "body": string(body), "tmp": file + ".tmp", "file": file,
	})
}

// revisionScript writes Capistrano's REVISION file into the release.
func revisionScript(l layout.Layout, id, revision string) string {
	return shell.Script(`printf '%s\n' {{revision}} | cat > {{file}}`, shell.Args{
		"revision": revision, "file": path.Join(l.ReleaseDir(id), "REVISION"),
	})
}
