package deploy

import (
	"sync"

	"github.com/slipway-deploy/slipway/internal/source"
)

// deltaPlan is a delta upload's content for the hosts holding one live
// manifest: the diff, the pick of unchanged entries from the manifest's
// lines, and the manifest patch (both only for a canonical manifest).
type deltaPlan struct {
	once  sync.Once
	delta *source.Delta
	pick  *manifestPick
	patch []byte
}

// deltaPlan is what a delta upload to t sends, nil for a full upload: a
// delta needs the upload strategy, delta enabled, and a trusted manifest
// of the live release. The hosts that hold the same live manifest share
// one plan (a fleet normally holds one manifest): fifty hosts do not cost
// fifty diffs, lists and patches of the whole app.
func (d *deployRun) deltaPlan(t *Target) *deltaPlan {
	if !d.delta() || t.State.live == nil || !t.State.HasRelease(t.State.Current) {
		return nil
	}
	d.mu.Lock()
	if d.deltas == nil {
		d.deltas = map[*parsedManifest]*deltaPlan{}
	}
	p, ok := d.deltas[t.State.live]
	if !ok {
		p = &deltaPlan{}
		d.deltas[t.State.live] = p
	}
	d.mu.Unlock()
	p.once.Do(func() {
		shared := append(append([]string{}, d.opts.Config.Shared.Dirs...), d.opts.Config.Shared.Files...)
		live := t.State.live
		delta := d.src.Tree.Diff(live.entries, shared)
		p.delta = &delta
		if live.canonical {
			p.pick = pickFromManifest(live.order, delta.CopyTree)
			p.patch = d.src.Tree.Patch(live.entries)
		}
	})
	return p
}

// checklist is source.Checklist(files); the whole tree's (what full
// uploads and verify: all check) is made once for every host.
func (d *deployRun) checklist(files []source.File) []byte {
	all := d.src.Tree.Files
	if len(files) == 0 || len(files) != len(all) || &files[0] != &all[0] {
		return source.Checklist(files)
	}
	d.fullCheckOnce.Do(func() { d.fullCheck = source.Checklist(files) })
	return d.fullCheck
}
