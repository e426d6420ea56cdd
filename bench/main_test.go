package main

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/slipway-deploy/slipway/internal/testutil"
)

// TestQuickRun makes the smoke run of `make bench-quick` through the code
// of `make bench`: real sshd fleets, a build of this checkout's slipway,
// every workload, the compression links and the report. It checks that
// every figure the report rests on was measured, so that the benchmark
// cannot stop working unseen. It needs what the end-to-end tests need
// (root, sshd, util-linux, git); Capistrano is measured if installed.
func TestQuickRun(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the quick benchmark run starts SSH fleets")
	}
	p := quickPlan()
	p.docsDir = t.TempDir()
	res, err := measureAll(p)
	if f := (fatal{}); errors.As(err, &f) && f.prerequisite {
		testutil.Require(t, f.msg, false)
	}
	if err != nil {
		t.Fatalf("quick run: %v", err)
	}

	compared := []string{"slipway", "floor"}
	if res.withCapistrano {
		compared = append(compared, "capistrano")
	} else {
		t.Log("Capistrano is not installed: the quick run measured slipway alone")
	}
	checkFleet(t, res.compare, compared, p.reps)
	var scaleHosts []int
	for _, fr := range res.scale {
		scaleHosts = append(scaleHosts, fr.hosts)
		checkFleet(t, fr, []string{"slipway"}, fr.reps)
	}
	if want := append([]int{p.compareHosts, p.goalHosts}, p.extraHosts...); !reflect.DeepEqual(scaleHosts, want) {
		t.Errorf("slipway measured on fleets of %v hosts, want %v", scaleHosts, want)
	}
	checkFleet(t, res.bigScale, []string{"slipway"}, p.scaleReps)
	if res.bigScale.files != p.bigApp.Files {
		t.Errorf("the bigger app's fleet deployed %d files, want %d", res.bigScale.files, p.bigApp.Files)
	}

	// The floor ships the whole app on a cold deploy and the changed file
	// on a redeploy, uncompressed: the relays must have seen that.
	hosts := int64(res.compare.hosts)
	coldUp := median(field(res.compare.get("floor", "cold"), func(s sample) int64 { return s.traffic.up }))
	redeployUp := median(field(res.compare.get("floor", "redeploy"), func(s sample) int64 { return s.traffic.up }))
	if coldUp < hosts*res.app.bytes {
		t.Errorf("the floor's cold deploy sent %d bytes to %d hosts, less than the app (%d bytes) to each", coldUp, hosts, res.app.bytes)
	}
	if redeployUp >= coldUp {
		t.Errorf("the floor's redeploy of one file sent %d bytes, its cold deploy %d: want fewer", redeployUp, coldUp)
	}

	checkCompression(t, res.compression, res.app, p.reps)
	checkWAN(t, res, p)
	checkReport(t, res, p.docsDir)
}

// checkWAN fails t unless the WAN benchmark measured every tool at every
// round-trip time, through relays that added it, and slipway's --json
// gave its round trips and steps. (That the relays delay as they should
// is TestRelayDelaysWithoutLimitingThroughput's; times on a busy machine
// are too noisy to tell a 10 ms round trip from none here.)
func checkWAN(t *testing.T, res *results, p plan) {
	t.Helper()
	w := res.wan
	if w == nil {
		t.Fatal("the WAN benchmark was not measured")
	}
	compared := []string{"slipway"}
	if res.withCapistrano {
		compared = append(compared, "capistrano")
	}
	for _, rtt := range p.rtts {
		fr, ok := w.compare[rtt]
		if !ok || fr.hosts != p.wanHosts {
			t.Errorf("WAN benchmark at %v: measured %v on %d hosts, want %d", rtt, ok, fr.hosts, p.wanHosts)
			continue
		}
		checkFleet(t, fr, compared, p.reps)
		for _, wl := range workloads {
			for _, tool := range compared {
				for _, s := range fr.get(tool, wl) {
					if s.rtt != rtt {
						t.Errorf("WAN benchmark at %v: %s %s went through relays adding %v", rtt, tool, wl, s.rtt)
					}
				}
			}
			for _, s := range fr.get("slipway", wl) {
				if s.slipway == nil || len(s.slipway.roundTrips) != fr.hosts || s.slipway.tripsPerHost() < 2 || len(s.slipway.steps) == 0 {
					t.Errorf("WAN benchmark at %v: slipway %s: no round trips per host or steps from --json: %+v", rtt, wl, s.slipway)
				}
			}
		}
	}
	if w.scale == nil || w.scale.hosts != p.wanScaleHosts {
		t.Errorf("WAN benchmark: slipway alone on %v, want %d hosts", w.scale, p.wanScaleHosts)
	} else {
		// The floor beside slipway on both fleets at the goals' round-trip
		// time, for what each further host costs whatever the tool.
		checkFleet(t, w.compare[w.wanRTT()], []string{"floor"}, p.reps)
		checkFleet(t, *w.scale, []string{"slipway", "floor"}, p.reps)
		if md := res.wanScaleMD(); !strings.Contains(md, "floor: ratio") || strings.Contains(md, "| — | — | — |") {
			t.Errorf("the WAN scale table has no floor for some workload:\n%s", md)
		}
		for _, wl := range workloads {
			for _, s := range w.scale.get("slipway", wl) {
				if s.rtt != w.wanRTT() {
					t.Errorf("WAN benchmark, %d hosts: slipway %s went through relays adding %v, want %v", w.scale.hosts, wl, s.rtt, w.wanRTT())
				}
			}
		}
	}
}

// checkFleet fails t unless fr holds reps samples of every workload for
// each of tools, each one with figures a deploy on fr's hosts produces.
func checkFleet(t *testing.T, fr fleetResult, tools []string, reps int) {
	t.Helper()
	hosts := int64(fr.hosts)
	for _, tool := range tools {
		for _, w := range workloads {
			samples := fr.get(tool, w)
			if len(samples) != reps {
				t.Errorf("%d hosts: %s %s: %d samples, want %d", fr.hosts, tool, w, len(samples), reps)
			}
			for _, s := range samples {
				what := func(format string, args ...any) {
					t.Helper()
					t.Errorf("%d hosts: %s %s: "+format+"; sample: %s", append([]any{fr.hosts, tool, w}, append(args, s)...)...)
				}
				switch {
				case s.wall <= 0:
					what("took %v", s.wall)
				case s.traffic.conns < hosts:
					what("%d connections through the relays, want one per host at least", s.traffic.conns)
				case s.traffic.up <= 0 || s.traffic.down <= 0:
					what("sent %d bytes and received %d", s.traffic.up, s.traffic.down)
				case s.traffic.exchanges < hosts:
					what("%d exchanges, want one per host at least", s.traffic.exchanges)
				case int64(s.sessions) < hosts:
					what("the hosts' sshd logged %d sessions, want one per host at least", s.sessions)
				case s.toolCPU <= 0:
					what("used %v of CPU", s.toolCPU)
				case tool != "floor" && s.maxRSS <= 0:
					what("peak RSS %d", s.maxRSS)
				case tool == "slipway" && w != "rollback" && s.skew < 0: // a rollback prints none
					what("no fleet skew in slipway's --json run_finished event (skew_ms)")
				}
			}
		}
	}
}

// checkCompression fails t unless every link and compress mode was
// measured, the uncompressed stream carried the whole app to every host,
// gzip sent less, and each uplink held its bandwidth.
func checkCompression(t *testing.T, c compressionResult, app appInfo, reps int) {
	t.Helper()
	for _, l := range compressionLinks {
		for _, mode := range compressModes {
			samples := c.samples[l.name+" "+mode]
			if len(samples) != reps {
				t.Errorf("compression over %s, %s: %d samples, want %d", l.name, mode, len(samples), reps)
				continue
			}
			for _, s := range samples {
				if l.bits == 0 {
					continue
				}
				least := time.Duration(float64(s.traffic.up)*8/l.bits*float64(time.Second)) - uplinkBurst
				if s.wall < least {
					t.Errorf("compression over %s, %s: %d bytes went up in %v, faster than the link carries them (%v)", l.name, mode, s.traffic.up, s.wall, least)
				}
			}
		}
		none := perHost(c.samples[l.name+" none"], c.hosts, func(s sample) int64 { return s.traffic.up })
		gzip := perHost(c.samples[l.name+" gzip"], c.hosts, func(s sample) int64 { return s.traffic.up })
		if none < float64(app.bytes) {
			t.Errorf("compression over %s: compress: none sent %.0f bytes per host, less than the app (%d bytes)", l.name, none, app.bytes)
		}
		if gzip >= none {
			t.Errorf("compression over %s: compress: gzip sent %.0f bytes per host, none %.0f: want fewer", l.name, gzip, none)
		}
		if zstd := perHost(c.samples[l.name+" zstd"], c.hosts, func(s sample) int64 { return s.traffic.up }); zstd >= none {
			t.Errorf("compression over %s: compress: zstd sent %.0f bytes per host, none %.0f: want fewer", l.name, zstd, none)
		}
	}
}

// checkReport fails t unless res wrote both documents into dir with every
// section, and no figure failed to print.
func checkReport(t *testing.T, res *results, dir string) {
	t.Helper()
	if err := res.write(); err != nil {
		t.Fatalf("write the report: %v", err)
	}
	want := map[string][]string{
		"benchmarks.md": {wanBegin, "## Against the goals of issue 15", "### Where slipway's time goes at", wanEnd, "## Against the goals of issue 6", "## Every measurement", "## Compression (source.compress)",
			"## What runs, exactly", "## Caveats", "## Machine", "## Reproduce", "BENCH_QUICK smoke run"},
		"scaling.md": {"## With the number of hosts", "### The trend", "## With the number of files", "## 1,000 hosts and more"},
	}
	for _, title := range workloadTitle {
		want["benchmarks.md"] = append(want["benchmarks.md"], "| "+title+" | ")
		want["scaling.md"] = append(want["scaling.md"], " | "+title+" | ")
	}
	for name, parts := range want {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		doc := string(data)
		for _, part := range parts {
			if !strings.Contains(doc, part) {
				t.Errorf("%s lacks %q", name, part)
			}
		}
		// What fmt prints for a bad verb or argument, and float64's
		// figures of a division by zero.
		for line := range strings.Lines(doc) {
			for _, bad := range []string{"%!", "NaN", "Inf"} {
				if strings.Contains(line, bad) {
					t.Errorf("%s: a figure did not print: %s", name, line)
				}
			}
		}
		t.Logf("%s:\n%s", name, doc)
	}
}

func TestPlanFromEnv(t *testing.T) {
	quickInto := quickPlan()
	quickInto.docsDir = "out"
	moreReps := fullPlan()
	moreReps.reps, moreReps.scaleReps = 5, 2
	wan := fullPlan()
	wan.only, wan.rtts, wan.fileSystem = "wan", []time.Duration{0, 100 * time.Millisecond}, "ext4"
	noDelay := quickPlan()
	noDelay.rtts, noDelay.fileSystem = []time.Duration{0}, ""
	for _, tc := range []struct {
		env  map[string]string
		want plan
	}{
		{map[string]string{}, fullPlan()},
		{map[string]string{"BENCH_QUICK": "1"}, quickPlan()},
		{map[string]string{"BENCH_QUICK": "1", "BENCH_DOCS": "out"}, quickInto},
		{map[string]string{"BENCH_QUICK": "0", "BENCH_DOCS": "out", "BENCH_REPS": "5", "BENCH_SCALE_REPS": "2"}, moreReps},
		{map[string]string{"BENCH_ONLY": "wan", "BENCH_RTT": "100ms", "BENCH_FS": "ext4"}, wan},
		{map[string]string{"BENCH_QUICK": "1", "BENCH_RTT": "0", "BENCH_FS": "shared"}, noDelay},
	} {
		for _, name := range []string{"BENCH_QUICK", "BENCH_DOCS", "BENCH_REPS", "BENCH_SCALE_REPS", "BENCH_ONLY", "BENCH_RTT", "BENCH_FS"} {
			t.Setenv(name, tc.env[name])
		}
		got, err := planFromEnv()
		if err != nil {
			t.Errorf("%v: %v", tc.env, err)
		} else if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%v: plan %+v, want %+v", tc.env, got, tc.want)
		}
	}
	for name, bad := range map[string]string{"BENCH_REPS": "0", "BENCH_RTT": "50", "BENCH_FS": "btrfs", "BENCH_ONLY": "cold"} {
		t.Setenv(name, bad)
		if _, err := planFromEnv(); err == nil {
			t.Errorf("%s=%s: no error", name, bad)
		}
		t.Setenv(name, "")
	}
}
