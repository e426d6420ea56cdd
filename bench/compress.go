package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// A link the compression measurement puts between slipway and the fleet:
// bits per second of the deploy machine's uplink, 0 for none (loopback).
type link struct {
	name string
	bits float64
}

var compressionLinks = []link{{"loopback (no link)", 0}, {"1 Gbit/s uplink", 1e9}, {"100 Mbit/s uplink", 100e6}}

// compressModes are the source.compress settings measured against each
// other (auto is one of them wherever the hosts are: zstd on these hosts,
// which have it and GNU tar).
var compressModes = []string{"none", "gzip", "zstd"}

// compressionResult is what source.compress did to cold deploys.
type compressionResult struct {
	hosts   int
	reps    int
	samples map[string][]sample // by link name + " " + mode
}

// compression measures cold deploys with and without gzip over each link,
// reps times each, the order of the two alternating. The link is shared by
// every host's upload, as the deploying machine's uplink is; the hosts'
// own links are not limited.
func (b *bench) compression(reps int) compressionResult {
	res := compressionResult{hosts: len(b.fleet.Hosts), reps: reps, samples: map[string][]sample{}}
	tools := map[string]tool{}
	for _, mode := range compressModes {
		tools[mode] = b.slipwayToolWith(slipwayDeployTo, mode)
	}
	defer b.setUplink(nil)
	for _, l := range compressionLinks {
		if l.bits > 0 {
			b.setUplink(newUplink(l.bits))
		} else {
			b.setUplink(nil)
		}
		for i := range reps {
			for _, mode := range inTurn(i, compressModes) {
				b.wipe(slipwayDeployTo)
				must(b.sc, os.RemoveAll(filepath.Join(b.home, ".cache")))
				logf("%d hosts: cold deploy over %s, compress: %s, %d/%d", len(b.fleet.Hosts), l.name, mode, i+1, reps)
				s := tools[mode].deploy()
				b.expectLive("slipway", slipwayDeployTo, b.app.build)
				res.samples[l.name+" "+mode] = append(res.samples[l.name+" "+mode], s)
				logf("  %s", s)
			}
		}
	}
	return res
}

// setUplink puts every relay's client → host bytes on u (nil: no limit).
func (b *bench) setUplink(u *uplink) {
	for _, r := range b.relays {
		r.uplink.Store(u)
	}
}

// compressionMD is the report's section on source.compress.
func (r *results) compressionMD() string {
	c := r.compression
	if c.samples == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, `## Compression (source.compress)

Cold deploys of the app by slipway to the same %d hosts with `+"`compress: none`"+`, `+"`compress: gzip`"+`
(Go's gzip at its fastest level on slipway's side, `+"`tar -z`"+` on the host's) and `+"`compress: zstd`"+`
(klauspost/compress's zstd at its fastest level, `+"`tar -I zstd`"+` on the host's), each stream made
once for all the hosts, medians of %d runs. The
link is one the benchmark's relays put between slipway and every host: the deploying machine's
uplink, which every host's upload shares (the loopback row has none). Time is the whole deploy;
CPU as in the table above.

| link | compress | cold deploy | sent per host | slipway CPU | hosts' CPU |
|---|---|---|---|---|---|
`, c.hosts, c.reps)
	for _, l := range compressionLinks {
		for _, mode := range compressModes {
			s := c.samples[l.name+" "+mode]
			if len(s) == 0 {
				continue
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", l.name, mode, secs(medianWall(s)),
				size(perHost(s, c.hosts, func(s sample) int64 { return s.traffic.up })),
				secs(median(field(s, func(s sample) time.Duration { return s.toolCPU }))),
				secs(median(field(s, func(s sample) time.Duration { return s.hostsCPU }))))
		}
	}
	b.WriteString(`
What ` + "`compress: auto`" + ` (the default) does with this: zstd for every host reached over SSH that
has zstd and GNU tar, loopback addresses included; otherwise gzip for a host reached over a
network and none for one on a loopback address, where no link is saved and gzip costs both ends
CPU. The stream is smaller by the app's compression ratio and costs the hosts the time to unpack
it (zstd's a fraction of gzip's); the shared uplink is what a fleet deploy waits for, so the saving
grows with the number of hosts. ` + "`compress: none`" + ` suits a fast private network with slow hosts.

`)
	return b.String()
}
