package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/slipway-deploy/slipway/internal/cli"
)

// The WAN benchmark of issue 15: slipway and Capistrano on hosts that each
// have a file system of their own, as servers have their own disks, at no
// added delay and across a network with a round-trip time (the relays
// delay each direction by half of it); then slipway alone on a bigger
// fleet at that round-trip time. Capistrano's hosts clone from the bare
// repository on their own file system view (file://), so its git server
// is next to the hosts, with no delay; slipway exports from the working
// clone on the deploying machine and sends across the delay.

// wanResult is what the WAN benchmark measured.
type wanResult struct {
	fileSystem     string // of every host: "xfs", "ext4", or "" (one shared tree)
	rtts           []time.Duration
	reps           int
	withCapistrano bool
	hosts          int
	compare        map[time.Duration]fleetResult // slipway and Capistrano on hosts, by round-trip time
	scale          *fleetResult                  // slipway alone on the bigger fleet, at the last RTT; nil if not measured
}

// wanRTT is the round-trip time the goals are measured at: the plan's
// last, the largest.
func (w *wanResult) wanRTT() time.Duration { return w.rtts[len(w.rtts)-1] }

// Goals of issue 15, as slipway's time over Capistrano's, and the most
// round trips per host (0: none).
var wanGoals = map[string]struct {
	withRTT, loopback float64
	roundTrips        int
}{
	"cold":     {0.7, 0.9, 0},
	"redeploy": {1.0 / 3, 0.4, 16},
	"rollback": {1.0 / 8, 0.1, 12},
}

// wanHostsGoal bounds slipway's time on the bigger fleet against the
// smaller, at the goals' round-trip time (redeploy and rollback).
const wanHostsGoal = 2.0

func measureWAN(p plan, res *results, app *appRepo, quiet *quietWait) *wanResult {
	out := &wanResult{fileSystem: p.fileSystem, rtts: p.rtts, reps: p.reps, withCapistrano: res.withCapistrano,
		hosts: p.wanHosts, compare: map[time.Duration]fleetResult{}}
	func() {
		b := newBench(p.wanHosts, app, res.slipwayBin, quiet, p.fileSystem)
		defer b.close()
		tools := []tool{b.slipwayTool(slipwayDeployTo)}
		if res.withCapistrano {
			tools = append(tools, b.capistranoTool(capDeployTo))
		}
		for _, rtt := range p.rtts {
			logf("%d hosts, round-trip time %s", p.wanHosts, rtt)
			b.setRTT(rtt)
			ts := tools
			if rtt == out.wanRTT() && p.wanScaleHosts > 0 {
				// The floor on both fleets, for what each host adds here.
				ts = append(slices.Clone(tools), b.floorTool())
			}
			out.compare[rtt] = b.run(p.reps, ts...)
		}
	}()
	if p.wanScaleHosts > 0 {
		b := newBench(p.wanScaleHosts, app, res.slipwayBin, quiet, p.fileSystem)
		defer b.close()
		logf("%d hosts, round-trip time %s", p.wanScaleHosts, out.wanRTT())
		b.setRTT(out.wanRTT())
		fr := b.run(p.reps, b.slipwayTool(slipwayDeployTo), b.floorTool())
		out.scale = &fr
	}
	return out
}

// fleets is every fleet the WAN benchmark measured.
func (w *wanResult) fleets() []fleetResult {
	var frs []fleetResult
	for _, rtt := range w.rtts {
		frs = append(frs, w.compare[rtt])
	}
	if w.scale != nil {
		frs = append(frs, *w.scale)
	}
	return frs
}

// Round trips per host, three ways. Every connection's TCP connect is one
// more round trip before anything is sent, which neither slipway's count
// nor the relay's exchanges include; the relays count connections.

// ownTrips is slipway's own count (--json), plus its TCP connects.
func ownTrips(s sample, hosts int) float64 {
	if s.slipway == nil {
		return 0
	}
	return s.slipway.tripsPerHost() + float64(s.traffic.conns)/float64(hosts)
}

// relayTrips is the relay's exchanges plus the TCP connects: the same
// measure for every tool.
func relayTrips(s sample, hosts int) float64 {
	return float64(s.traffic.exchanges+s.traffic.conns) / float64(hosts)
}

func medianOf(samples []sample, f func(sample) float64) float64 {
	xs := make([]float64, len(samples))
	for i, s := range samples {
		xs[i] = f(s)
	}
	slices.Sort(xs)
	switch n := len(xs); {
	case n == 0:
		return 0
	case n%2 == 1:
		return xs[n/2]
	default:
		return (xs[n/2-1] + xs[n/2]) / 2
	}
}

func rttName(rtt time.Duration) string {
	if rtt == 0 {
		return "none added (loopback)"
	}
	return rtt.String()
}

// fileSystemName says where every host's files are, for fileSystem as
// newBench takes it.
func fileSystemName(fileSystem string) string {
	switch fileSystem {
	case "xfs":
		return "its own XFS (with reflinks)"
	case "":
		return "one shared directory tree of this machine's file system"
	}
	return "its own " + fileSystem
}

// Markers of the WAN section of benchmarks.md, so that `make bench-wan`
// can rewrite it alone.
const (
	wanBegin = "<!-- WAN benchmark (issue 15): written by make bench or make bench-wan -->"
	wanEnd   = "<!-- WAN benchmark (issue 15): end -->"
)

// wanMD is the WAN section of benchmarks.md, between its markers.
func (r *results) wanMD() string {
	w := r.wan
	if w == nil {
		return ""
	}
	var b strings.Builder
	wanRTT := w.wanRTT()
	b.WriteString(wanBegin + "\n")
	title := "## Against the goals of issue 15: per-host file systems"
	if wanRTT > 0 {
		title += fmt.Sprintf(", and %s round trips", wanRTT)
	}
	b.WriteString(title + "\n\n")
	what := "`make bench`"
	if r.plan.only == "wan" {
		what = "`make bench-wan` (this section alone)"
	}
	fmt.Fprintf(&b, "Measured by %s on %s (the run took %s). %d hosts, each with %s as /srv, medians of %d run(s) each",
		what, r.started.Format("2006-01-02 15:04 MST"), r.took.Round(time.Second), w.hosts, fileSystemName(w.fileSystem), w.reps)
	if w.reps < 3 {
		b.WriteString(" (**fewer than the 3 runs issue 15 asks for: not the benchmark's figures**)")
	}
	fmt.Fprintf(&b, `. The network is loopback
through the benchmark's relays, which for a round-trip time RTT hold each direction's bytes RTT/2
before passing them on (a queue per direction: the delay adds no limit on throughput) and emulate
the TCP connect's round trip; no delay means the relays pass bytes at once. slipway runs with its
default `+"`--parallel`"+` (%d) and `+"`--json`"+`; the rest of the set-up is the one under *What runs, exactly*
below: the same app, one-line change, configurations and order. Capistrano's hosts clone from the
bare repository on their side (file://): its git server is next to the hosts, with no delay;
slipway exports from the same repository on the deploying machine and sends across the delay.

`, cli.DefaultParallel)
	if w.fileSystem != "" {
		fmt.Fprintf(&b, "Each host's file system is a sparse image on a loop device (`testutil.HostOptions{FileSystem: %q}`%s), mounted in the host's\n"+
			"mount namespace only: hosts do not share a file system, its journal or its locks, as they would on one ext4 disk. They do\n"+
			"still share this machine's %s cores, its page cache and the one disk under the images.\n\n",
			w.fileSystem, map[string]string{"xfs": ", `mkfs.xfs -m reflink=1`", "ext4": ", `mkfs.ext4`"}[w.fileSystem], cores())
	}

	// Times against Capistrano's.
	fmt.Fprintf(&b, "| workload (%d hosts) | round-trip time | slipway | Capistrano 3 | slipway / Capistrano | goal | met? |\n|---|---|---|---|---|---|---|\n", w.hosts)
	for _, wl := range workloads {
		for _, rtt := range w.rtts {
			fr := w.compare[rtt]
			s := medianWall(fr.get("slipway", wl))
			goal := wanGoals[wl].withRTT
			if rtt == 0 {
				goal = wanGoals[wl].loopback
			}
			capCell, vs, ok := "—", "—", "—"
			if c := fr.get("capistrano", wl); len(c) > 0 {
				cw := medianWall(c)
				capCell, vs, ok = secs(cw), fmt.Sprintf("%.2f×", float64(s)/float64(cw)), met(float64(s) <= goal*float64(cw))
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | ≤ %s | %s |\n", workloadTitle[wl], rttName(rtt), secs(s), capCell, vs, goalRatio(goal), ok)
		}
	}

	// Round trips.
	fr := w.compare[wanRTT]
	fmt.Fprintf(&b, `
Round trips per host at %s, medians: slipway's own count (the --json run_finished results'
`+"`round_trips`"+`, SSH handshake to unlock, as internal/host counts them: data round trips only) plus
one for each TCP connect (the relays count connections: %s per host), beside what the relay sees
for both tools (its exchanges, each time the client sends after the host has answered, plus the
connects), an upper bound on the round trips a client waits for. The last two columns divide the
time the round-trip time added (the median at %s less the median with none) by it: the round trips
each tool waited for one after another, whatever it counted.

| workload | slipway: own count + connects | slipway: relay's exchanges + connects | Capistrano: relay's exchanges + connects | goal (slipway) | met? | time added ÷ RTT: slipway | time added ÷ RTT: Capistrano |
|---|---|---|---|---|---|---|---|
`, wanRTT, tripsCell(perHost(fr.get("slipway", "rollback"), fr.hosts, func(s sample) int64 { return s.traffic.conns })), wanRTT)
	for _, wl := range workloads {
		slip := fr.get("slipway", wl)
		own := medianOf(slip, func(s sample) float64 { return ownTrips(s, fr.hosts) })
		goal, ok := "—", "—"
		if g := wanGoals[wl].roundTrips; g > 0 {
			goal, ok = fmt.Sprintf("≤ %d", g), met(own <= float64(g))
		}
		capCell, capAdded := "—", "—"
		if c := fr.get("capistrano", wl); len(c) > 0 {
			capCell = tripsCell(medianOf(c, func(s sample) float64 { return relayTrips(s, fr.hosts) }))
			capAdded = w.addedTrips("capistrano", wl)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s |\n", workloadTitle[wl], tripsCell(own),
			tripsCell(medianOf(slip, func(s sample) float64 { return relayTrips(s, fr.hosts) })), capCell, goal, ok,
			w.addedTrips("slipway", wl), capAdded)
	}

	b.WriteString(r.wanScaleMD())
	b.WriteString(r.wanProfileMD())
	b.WriteString("\n### Every measurement of this section\n\nThe columns are those of *Every measurement* below.\n")
	for _, rtt := range w.rtts {
		fmt.Fprintf(&b, "\n%d hosts, round-trip time %s:\n\n", w.hosts, rttName(rtt))
		b.WriteString(r.detailTable(w.compare[rtt], []string{"slipway", "capistrano", "floor"}))
	}
	if w.scale != nil {
		fmt.Fprintf(&b, "\n%d hosts, round-trip time %s:\n\n", w.scale.hosts, rttName(wanRTT))
		b.WriteString(r.detailTable(*w.scale, []string{"slipway", "floor"}))
	}
	b.WriteString("\n" + wanEnd + "\n")
	return b.String()
}

// goalRatio prints a goal as "1/n" where it is one, else as "x×".
func goalRatio(g float64) string {
	if n := math.Round(1 / g); n >= 2 && math.Abs(1/g-n) < 1e-9 {
		return fmt.Sprintf("1/%.0f", n)
	}
	return fmt.Sprintf("%.2g×", g)
}

// tripsAdded prints a time as the round trips of rtt it makes, with no
// "-0.0" for a change too small to show.
func tripsAdded(d, rtt time.Duration) string {
	x := d.Seconds() / rtt.Seconds()
	if math.Abs(x) < 0.05 {
		x = 0
	}
	return fmt.Sprintf("%.1f", x)
}

func roundTrips(n float64) string {
	if n == 1 {
		return "1 round trip"
	}
	return fmt.Sprintf("%.0f round trips", n)
}

func tripsCell(x float64) string { return fmt.Sprintf("%.1f", x) }

// addedTrips is what the goals' round-trip time added to tool's median
// time of workload, in round trips: how many it waited for in series.
func (w *wanResult) addedTrips(tool, workload string) string {
	if len(w.rtts) < 2 {
		return "—"
	}
	with, without := w.compare[w.wanRTT()].get(tool, workload), w.compare[0].get(tool, workload)
	if len(with) == 0 || len(without) == 0 {
		return "—"
	}
	return tripsAdded(medianWall(with)-medianWall(without), w.wanRTT())
}

// wanScaleMD compares the bigger fleet with the smaller at the goals'
// round-trip time, and projects 1,000 hosts.
func (r *results) wanScaleMD() string {
	w := r.wan
	if w.scale == nil {
		return ""
	}
	wanRTT := w.wanRTT()
	small, big := w.compare[wanRTT], *w.scale
	waves := math.Ceil(1000 / float64(cli.DefaultParallel))
	var b strings.Builder
	fmt.Fprintf(&b, `
slipway alone on %d hosts against %d, each on %s, at %s, and 1,000 hosts projected two ways:
the straight line through the two fleets (as docs/scaling.md fits its figures), which sees what
every host adds on this machine but not the waves of `+"`--parallel`"+` (both fleets fit in one wave
of %d); and that line plus the %.0f further waves 1,000 hosts take, each paying slipway's round trips
per host (its own count + connects) at %s once more, which assumes each step waits for every
wave in turn.

The last three columns are the **floor** (bench/floor.go) on the same two fleets: only the
work on the hosts that any tool writing a complete release per host must do, each host over one
OpenSSH connection through its relay, all at once. Its own ratio is what each further host costs
on this machine whatever the tool: a goal below it cannot be met here.

| workload | %d hosts | %d hosts | ratio | goal | met? | 1,000 hosts: the line | 1,000 hosts: the line + %.0f waves of --parallel %d | floor: %d hosts | floor: %d hosts | floor: ratio |
|---|---|---|---|---|---|---|---|---|---|---|
`, big.hosts, small.hosts, fileSystemName(w.fileSystem), wanRTT, cli.DefaultParallel, waves-1, wanRTT,
		small.hosts, big.hosts, waves, cli.DefaultParallel, small.hosts, big.hosts)
	for _, wl := range workloads {
		t0, t1 := medianWall(small.get("slipway", wl)), medianWall(big.get("slipway", wl))
		p := w.projectThousand(wl)
		line := secs(p.line)
		if p.fell {
			line = "no growth measured: " + secs(p.line)
		}
		goal, ok := "—", "—"
		if wl != "cold" {
			goal, ok = fmt.Sprintf("≤ %.0f×", wanHostsGoal), met(float64(t1) <= wanHostsGoal*float64(t0))
		}
		f0, f1, fRatio := "—", "—", "—"
		if fs, fb := small.get("floor", wl), big.get("floor", wl); len(fs) > 0 && len(fb) > 0 {
			m0, m1 := medianWall(fs), medianWall(fb)
			f0, f1, fRatio = secs(m0), secs(m1), fmt.Sprintf("%.2f×", float64(m1)/float64(m0))
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %.2f× | %s | %s | %s | %s | %s | %s | %s |\n", workloadTitle[wl], secs(t0), secs(t1),
			float64(t1)/float64(t0), goal, ok, line, secs(p.withWaves), f0, f1, fRatio)
	}
	rss := peakRSS(big)
	fmt.Fprintf(&b, "| peak RSS of slipway at %d hosts (highest of all its runs) | | %s | | ≤ 150 MB | %s | | | | | |\n",
		big.hosts, size(float64(rss)), met(float64(rss) <= rssGoal))
	hostsCPU := func(fr fleetResult) time.Duration {
		return median(field(fr.get("slipway", "redeploy"), func(s sample) time.Duration { return s.hostsCPU }))
	}
	fmt.Fprintf(&b, "\nAll hosts share this machine's %s cores: the hosts' own CPU time on a redeploy was %s on %d hosts and %s on %d, "+
		"so the ratios above measure this machine's cores as much as slipway; on real servers each host works on its own CPU and disk.\n",
		cores(), secs(hostsCPU(small)), small.hosts, secs(hostsCPU(big)), big.hosts)
	return b.String()
}

// projection is slipway's time on 1,000 hosts at the goals' round-trip
// time, projected from the two fleets.
type projection struct {
	// line is the straight line through the two fleets' times at 1,000
	// hosts; where the bigger fleet was the faster (noise), the bigger
	// fleet's time, and fell is set.
	line time.Duration
	fell bool
	// withWaves adds, to line, slipway's round trips per host at the
	// round-trip time for every further wave of --parallel hosts.
	withWaves time.Duration
}

func (w *wanResult) projectThousand(workload string) projection {
	small, big := w.compare[w.wanRTT()], *w.scale
	t0, t1 := medianWall(small.get("slipway", workload)), medianWall(big.get("slipway", workload))
	a, slope := fit([]float64{float64(small.hosts), float64(big.hosts)}, []float64{t0.Seconds(), t1.Seconds()})
	p := projection{line: time.Duration((a + slope*1000) * float64(time.Second))}
	if slope < 0 {
		p.line, p.fell = t1, true
	}
	waves := math.Ceil(1000 / float64(cli.DefaultParallel))
	trips := medianOf(big.get("slipway", workload), func(s sample) float64 { return ownTrips(s, big.hosts) })
	p.withWaves = p.line + time.Duration((waves-1)*trips*float64(w.wanRTT()))
	return p
}

// wanThousandHosts is the bullet of scaling.md's 1,000 hosts on the WAN
// benchmark's projection; "" when it was not measured.
func (r *results) wanThousandHosts() string {
	w := r.wan
	if w == nil || w.scale == nil || w.wanRTT() == 0 {
		return ""
	}
	var parts []string
	for _, wl := range workloads {
		p := w.projectThousand(wl)
		parts = append(parts, fmt.Sprintf("%s about %s (%s with the waves of `--parallel %d`)", strings.ToLower(workloadTitle[wl]), secs(p.line), secs(p.withWaves), cli.DefaultParallel))
	}
	return fmt.Sprintf("- **At %s round-trip time** ([benchmarks.md](benchmarks.md), issue 15's section: hosts each on %s, %d and %d hosts), on the line through the two fleets, 1,000 hosts would take: %s.\n",
		w.wanRTT(), fileSystemName(w.fileSystem), w.hosts, w.scale.hosts, strings.Join(parts, "; "))
}

// stepProfile is one step of slipway's run, over the hosts.
type stepProfile struct {
	step                string
	hosts               int           // hosts it ran on (0: a step of the whole fleet)
	medianTook, longest time.Duration // over the hosts
	roundTrips          float64       // median over the hosts
}

// profileSteps summarises a run's step_finished events, step by step in
// the order they first finished.
func profileSteps(run *slipwayRun) []stepProfile {
	var order []string
	byStep := map[string][]stepRun{}
	for _, s := range run.steps {
		if _, ok := byStep[s.step]; !ok {
			order = append(order, s.step)
		}
		byStep[s.step] = append(byStep[s.step], s)
	}
	var out []stepProfile
	for _, name := range order {
		runs := byStep[name]
		took := make([]time.Duration, len(runs))
		trips := make([]int64, len(runs))
		p := stepProfile{step: name}
		for i, s := range runs {
			took[i], trips[i] = s.took, s.roundTrips
			if s.host != "" {
				p.hosts++
			}
		}
		p.medianTook, p.longest, p.roundTrips = median(took), slices.Max(took), float64(median(trips))
		out = append(out, p)
	}
	return out
}

// stepTimes is, per step of a workload, the median over the runs of its
// slowest host's time and of its round trips on a host, in the order the
// steps first finished; and the median time outside the steps.
type stepTimes struct {
	order   []string
	longest map[string]time.Duration
	trips   map[string]float64
	fleet   map[string]bool // a step of the whole fleet
	outside time.Duration
}

func stepTimesOf(samples []sample) stepTimes {
	st := stepTimes{longest: map[string]time.Duration{}, trips: map[string]float64{}, fleet: map[string]bool{}}
	longest, trips := map[string][]time.Duration{}, map[string][]float64{}
	var outside []time.Duration
	for _, s := range samples {
		if s.slipway == nil {
			continue
		}
		var inSteps time.Duration
		for _, p := range profileSteps(s.slipway) {
			if _, ok := longest[p.step]; !ok {
				st.order = append(st.order, p.step)
			}
			longest[p.step] = append(longest[p.step], p.longest)
			trips[p.step] = append(trips[p.step], p.roundTrips)
			st.fleet[p.step] = p.hosts == 0
			inSteps += p.longest
		}
		outside = append(outside, max(0, s.wall-inSteps))
	}
	for _, step := range st.order {
		st.longest[step] = median(longest[step])
		slices.Sort(trips[step])
		st.trips[step] = trips[step][(len(trips[step])-1)/2]
	}
	st.outside = median(outside)
	return st
}

// wanProfileMD is where slipway's time goes at the goals' round-trip
// time: its steps, from the --json events, against the same steps with no
// added delay.
func (r *results) wanProfileMD() string {
	w := r.wan
	wanRTT := w.wanRTT()
	if wanRTT == 0 || len(w.rtts) < 2 {
		return ""
	}
	fr, fr0 := w.compare[wanRTT], w.compare[0]
	var b strings.Builder
	fmt.Fprintf(&b, `
### Where slipway's time goes at %s

Each step on %d hosts from slipway's --json step_finished events, medians over the runs: the
slowest host's time (the step's barrier waits for it) with no added delay and at %s; what the
delay added, in round trips (÷ %s); and the step's round trips on a host as slipway counts them.
Steps run one after another; the time outside them is slipway's own work before the first and
after the last (reading the config, starting the run) and the TCP connects.

| workload | step | no delay | at %s | added ÷ RTT | slipway's count |
|---|---|---|---|---|---|
`, wanRTT, fr.hosts, wanRTT, wanRTT, wanRTT)
	var summary []string
	for _, wl := range workloads {
		with, without := stepTimesOf(fr.get("slipway", wl)), stepTimesOf(fr0.get("slipway", wl))
		if len(with.order) == 0 {
			continue
		}
		var counted float64
		var longest, grew string
		for _, step := range with.order {
			name := step
			if with.fleet[step] {
				name += " (whole fleet)"
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %.0f |\n", workloadTitle[wl], name, secs(without.longest[step]),
				secs(with.longest[step]), tripsAdded(with.longest[step]-without.longest[step], wanRTT), with.trips[step])
			counted += with.trips[step]
			if longest == "" || with.longest[step] > with.longest[longest] {
				longest = step
			}
			if grew == "" || with.longest[step]-without.longest[step] > with.longest[grew]-without.longest[grew] {
				grew = step
			}
		}
		fmt.Fprintf(&b, "| %s | outside the steps | %s | %s | %s | |\n", workloadTitle[wl], secs(without.outside), secs(with.outside),
			tripsAdded(with.outside-without.outside, wanRTT))
		t, t0 := medianWall(fr.get("slipway", wl)), medianWall(fr0.get("slipway", wl))
		summary = append(summary, fmt.Sprintf("the %s took %s with no delay and %s at %s: the delay added %.1f round trips in series, where slipway's steps count %.0f; "+
			"the longest step at %s was %s (%s, %s with no delay), the one the delay grew most %s (by %.1f round trips, %.0f counted)",
			strings.ToLower(workloadTitle[wl]), secs(t0), secs(t), wanRTT, (t-t0).Seconds()/wanRTT.Seconds(), counted,
			wanRTT, longest, secs(with.longest[longest]), secs(without.longest[longest]),
			grew, (with.longest[grew]-without.longest[grew]).Seconds()/wanRTT.Seconds(), with.trips[grew]))
	}
	if len(summary) > 0 {
		fmt.Fprintf(&b, "\nIn short: %s. A step whose added time is well above its count waits for round trips slipway does not count; "+
			"a step that is long with no delay too is the hosts' work (their CPU and disks, shared on this machine), which latency does not change.\n\n",
			strings.Join(summary, "; "))
	}
	return b.String()
}

// writeWAN writes the WAN section alone (BENCH_ONLY=wan) into
// benchmarks.md, in place of the one there; a quick run prints it.
func (r *results) writeWAN() error {
	section := r.wanMD()
	if r.plan.docsDir == "" {
		fmt.Print(section)
		return nil
	}
	path := filepath.Join(r.plan.docsDir, "benchmarks.md")
	doc, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := os.WriteFile(path, []byte(splice(string(doc), wanBegin, wanEnd, section, "\n## Against the goals of issue 6")), 0o644); err != nil {
		return err
	}
	logf("wrote the WAN section of %s", path)
	return nil
}
