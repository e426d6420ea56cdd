package deploy

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"sync"

	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/shell"
	"github.com/slipway-deploy/slipway/internal/source"
)

// manifestStep gives every host the parsed manifest of its live release,
// for a delta upload. Inspect read only each manifest's checksum and size;
// this fetches each distinct manifest from one host that holds it (a fleet
// normally holds one: one transfer instead of one per host, and one copy
// in memory), checks it against that checksum and parses it. A host whose
// manifest cannot be had is told why and gets a full upload.
type manifestStep struct{ r *run }

func (manifestStep) Name() string { return "read manifest" }

func (s manifestStep) RunFleet(ctx context.Context, targets []*Target) error {
	groups := map[string][]*Target{}
	var sums []string
	for _, t := range withState(targets) {
		st := t.State
		if st.manifestSum == "" || st.ManifestErr != nil {
			continue
		}
		if st.manifestSize > maxManifest {
			st.ManifestErr = fmt.Errorf("it is %d bytes, more than the %d read", st.manifestSize, maxManifest)
			continue
		}
		if groups[st.manifestSum] == nil {
			sums = append(sums, st.manifestSum)
		}
		groups[st.manifestSum] = append(groups[st.manifestSum], t)
	}
	var wg sync.WaitGroup
	for _, sum := range sums {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p, err := s.fetch(ctx, sum, groups[sum])
			for _, t := range groups[sum] {
				st := t.State
				if err != nil {
					st.ManifestErr = err
					continue
				}
				st.live = p
			}
		}()
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	for _, t := range withState(targets) {
		if err := t.State.ManifestErr; err != nil {
			s.r.warn(t, "the live release's manifest is unreadable (%v) and is not trusted: this host gets a full upload", err)
		}
	}
	return nil
}

// fetch reads the manifest with checksum sum from the first of hosts that
// gives it whole, and parses it.
func (s manifestStep) fetch(ctx context.Context, sum string, hosts []*Target) (*parsedManifest, error) {
	var last error
	for _, t := range hosts {
		file := s.r.layout.ManifestFile(t.State.Current)
		// Gzipped: a manifest is lines of names and checksums, a
		// quarter of its size compressed, and far away its transfer
		// costs round trips of its own.
		// (Through a pipe: given the file, gzip fails on a time it
		// cannot store, as a manifest unpacked from the stream has.)
		script := shell.Script("[ -f {{file}} ] || { echo {{file}}': no such file' >&2; exit 1; }\ncat -- {{file}} | gzip -1 -c", shell.Args{"file": file})
		res, err := t.Exec.Query(ctx, host.Command{Script: script})
		var raw []byte
		if err == nil {
			raw, err = gunzipAtMost(res.Stdout, maxManifest)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			last = fmt.Errorf("reading it from %s: %w", t.Name(), err)
			continue
		}
		got := sha256.Sum256(raw)
		if hex.EncodeToString(got[:]) != sum {
			last = fmt.Errorf("it changed on %s while it was read", t.Name())
			continue
		}
		return parseManifest(raw)
	}
	return nil, last
}

// gunzipAtMost decompresses b, refusing more than limit bytes.
func gunzipAtMost(b []byte, limit int64) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	out, err := io.ReadAll(io.LimitReader(zr, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(out)) > limit {
		return nil, fmt.Errorf("it is more than the %d bytes read", limit)
	}
	return out, nil
}

type parsedManifest struct {
	entries map[string]source.Entry
	// canonical: the host's file is exactly what slipway would write for
	// entries, so a delta may send the manifest as a patch and the host
	// may pick entries from it by line number.
	canonical bool
	order     []string // paths in line order, when canonical
	err       error
}

// parseManifest parses a live manifest as a host holds it.
func parseManifest(raw []byte) (*parsedManifest, error) {
	p := &parsedManifest{}
	p.entries, p.err = source.ParseManifest(raw)
	if p.err == nil {
		p.canonical = bytes.Equal(source.EncodeManifest(p.entries), raw)
	}
	if p.canonical {
		p.order = source.ManifestOrder(p.entries)
	}
	return p, p.err
}
