package deploy

import (
	"strings"
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

// shipped is files without the entries under keepOut; the list of the
// whole tree is made once for all hosts that leave out the same paths.
func (d *deployRun) shipped(files []source.File, keepOut []string) []source.File {
	if len(keepOut) == 0 {
		return files
	}
	whole := len(files) > 0 && len(files) == len(d.src.Tree.Files) && &files[0] == &d.src.Tree.Files[0]
	key := strings.Join(keepOut, "\x00")
	if whole {
		d.mu.Lock()
		defer d.mu.Unlock()
		if cached, ok := d.shippedTrees[key]; ok {
			return cached
		}
	}
	var out []source.File
	for _, f := range files {
		if !underAny(f.Rel, keepOut) {
			out = append(out, f)
		}
	}
	if whole {
		if d.shippedTrees == nil {
			d.shippedTrees = map[string][]source.File{}
		}
		d.shippedTrees[key] = out
	}
	return out
}

// checklist is source.Checklist(files); that of a whole tree (what full
// uploads and verify: all check) is made once for all hosts that leave out
// the same shared paths.
func (d *deployRun) checklist(files []source.File, keepOut []string) []byte {
	whole := d.shipped(d.src.Tree.Files, keepOut)
	if len(files) == 0 || len(files) != len(whole) || &files[0] != &whole[0] {
		return source.Checklist(files)
	}
	key := strings.Join(keepOut, "\x00")
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.checklists[key]; ok {
		return c
	}
	if d.checklists == nil {
		d.checklists = map[string][]byte{}
	}
	c := source.Checklist(files)
	d.checklists[key] = c
	return c
}
