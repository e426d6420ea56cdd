package main

import (
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/slipway-deploy/slipway/internal/cli"
)

// stats are the medians of one workload on one fleet.
type stats struct {
	wall, toolCPU, hostsCPU, machineCPU time.Duration
	rss                                 int64   // highest
	sentPerHost                         float64 // bytes
	exchangesPerHost                    float64
	connsPerHost                        float64
	skew                                time.Duration // -1 if none
}

func statsOf(fr fleetResult, w string) stats {
	s := fr.get("slipway", w)
	st := stats{
		wall:             medianWall(s),
		toolCPU:          median(field(s, func(s sample) time.Duration { return s.toolCPU })),
		hostsCPU:         median(field(s, func(s sample) time.Duration { return s.hostsCPU })),
		machineCPU:       median(field(s, func(s sample) time.Duration { return s.machineCPU })),
		rss:              maxRSS(s),
		sentPerHost:      perHost(s, fr.hosts, func(s sample) int64 { return s.traffic.up }),
		exchangesPerHost: perHost(s, fr.hosts, func(s sample) int64 { return s.traffic.exchanges }),
		connsPerHost:     perHost(s, fr.hosts, func(s sample) int64 { return s.traffic.conns }),
		skew:             median(field(s, func(s sample) time.Duration { return s.skew })),
	}
	return st
}

// peakRSS is the highest RSS of slipway on the fleet, all workloads.
func peakRSS(fr fleetResult) int64 {
	var all []sample
	for _, w := range workloads {
		all = append(all, fr.get("slipway", w)...)
	}
	return maxRSS(all)
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", d.Seconds()*1000) }

func (r *results) scalingMD() string {
	var b strings.Builder
	b.WriteString(r.header("How slipway scales"))
	fmt.Fprintf(&b, `How slipway's time and memory grow with the number of hosts and with the number of files, measured
in the same run as [benchmarks.md](benchmarks.md): slipway only, the default `+"`--parallel`"+` (`+strconv.Itoa(cli.DefaultParallel)+`), the same
app (%s files, %s) and workloads, on fleets of the end-to-end tests' OpenSSH hosts. Each figure
is the median of the runs the table shows. **CPU: slipway** is the user + system time of the
slipway process (and the git it runs); **CPU: hosts** that of everything the hosts ran for it
(sshd, shells, cp …); **CPU: machine** is the busy time of the whole machine during the command
(all %s cores: slipway, the hosts, the kernel, the benchmark's relays, anything else).

## With the number of hosts

| hosts | runs | workload | median | per host | CPU: slipway per host | CPU: hosts per host | CPU: machine | peak RSS | sent per host | exchanges per host | fleet skew |
|---|---|---|---|---|---|---|---|---|---|---|---|
`, count(r.app.files), size(float64(r.app.bytes)), cores())
	for _, fr := range r.scale {
		for _, w := range workloads {
			st := statsOf(fr, w)
			skew := "—"
			if st.skew >= 0 {
				skew = st.skew.Round(time.Microsecond).String()
			}
			fmt.Fprintf(&b, "| %d | %d | %s | %s | %s | %s | %s | %s | %s | %s | %.0f | %s |\n", fr.hosts, fr.reps, workloadTitle[w],
				secs(st.wall), ms(st.wall/time.Duration(fr.hosts)), ms(st.toolCPU/time.Duration(fr.hosts)),
				ms(st.hostsCPU/time.Duration(fr.hosts)), secs(st.machineCPU),
				size(float64(st.rss)), size(st.sentPerHost), st.exchangesPerHost, skew)
		}
	}
	if len(r.scale) < 2 {
		return b.String()
	}

	// Straight lines through the fleet sizes.
	fits := map[string]struct{ wall, cpu line }{}
	var hosts []float64
	for _, fr := range r.scale {
		hosts = append(hosts, float64(fr.hosts))
	}
	b.WriteString("\n### The trend\n\nA least-squares line through those points, per workload:\n\n")
	b.WriteString("| workload | time: fixed | time: per host | CPU of slipway: fixed | CPU of slipway: per host | machine busy (CPU ÷ (time × cores)) at the largest fleet | this machine at 1,000 hosts (extrapolated) |\n|---|---|---|---|---|---|---|\n")
	for _, w := range workloads {
		var walls, cpus []float64
		for _, fr := range r.scale {
			st := statsOf(fr, w)
			walls = append(walls, st.wall.Seconds())
			cpus = append(cpus, st.toolCPU.Seconds())
		}
		var f struct{ wall, cpu line }
		f.wall.a, f.wall.b = fit(hosts, walls)
		f.cpu.a, f.cpu.b = fit(hosts, cpus)
		fits[w] = f
		largest := statsOf(r.scale[len(r.scale)-1], w)
		busy := largest.machineCPU.Seconds() / (largest.wall.Seconds() * float64(r.coreCount()))
		fmt.Fprintf(&b, "| %s | %.2f s | %.0f ms | %.2f s | %.1f ms | %.0f%% | %s |\n", workloadTitle[w], f.wall.a, f.wall.b*1000,
			f.cpu.a, f.cpu.b*1000, busy*100, secs(time.Duration((f.wall.a+f.wall.b*1000)*float64(time.Second))))
	}
	var rsses []float64
	for _, fr := range r.scale {
		rsses = append(rsses, float64(peakRSS(fr)))
	}
	var rss line
	rss.a, rss.b = fit(hosts, rsses)
	var perWorkload []string
	for _, w := range workloads {
		var ys []float64
		for _, fr := range r.scale {
			ys = append(ys, float64(statsOf(fr, w).rss))
		}
		_, slope := fit(hosts, ys)
		perWorkload = append(perWorkload, fmt.Sprintf("%s %s", workloadTitle[w], size(slope)))
	}
	fmt.Fprintf(&b, "\nPeak RSS, the highest of all workloads on each fleet: %s", size(rsses[0]))
	for i := 1; i < len(rsses); i++ {
		fmt.Fprintf(&b, " → %s", size(rsses[i]))
	}
	fmt.Fprintf(&b, " at %s hosts: about %s plus %s per host, so **about %s at 1,000 hosts** if the line holds. Per host, by workload: %s.\n",
		joinInts(r.scale), size(rss.a), size(rss.b), size(rss.a+rss.b*1000), strings.Join(perWorkload, ", "))
	b.WriteString(`
All hosts run on this one machine: every host's sshd decrypts and writes its copy on the same few
cores that run slipway. Where the machine is busy close to 100% of the time, the per-host slope is
mostly the hosts' own work (the CPU: hosts column) queued on these cores. On real servers each
host does its share on its own CPU and disk, in parallel; what stays with the deploying machine
is slipway's own CPU per host (the column above), its memory, the bytes it sends and the round
trips it waits for.
`)

	// The bigger app.
	small, big := r.scale[0], r.bigScale
	fmt.Fprintf(&b, "\n## With the number of files\n\n%d hosts. The second app is generated like the first, with the same bytes in %.1f times the files (%s files, %s), so the difference is what files cost apart from their bytes.\n\n",
		big.hosts, float64(r.bigApp.files)/float64(r.app.files), count(r.bigApp.files), size(float64(r.bigApp.bytes)))
	fmt.Fprintf(&b, "| workload | %s files: median (runs) | %s files: median (runs) | ratio | time per extra file and host | CPU of slipway per extra file and host | peak RSS | peak RSS, more files |\n|---|---|---|---|---|---|---|---|\n",
		count(r.app.files), count(r.bigApp.files))
	extraFiles := float64(r.bigApp.files - r.app.files)
	for _, w := range workloads {
		s, l := statsOf(small, w), statsOf(big, w)
		perFile := (l.wall - s.wall).Seconds() / extraFiles / float64(big.hosts)
		cpuPerFile := (l.toolCPU - s.toolCPU).Seconds() / extraFiles / float64(big.hosts)
		fmt.Fprintf(&b, "| %s | %s (%d) | %s (%d) | %.2f× | %.0f µs | %.0f µs | %s | %s |\n", workloadTitle[w],
			secs(s.wall), small.reps, secs(l.wall), big.reps, l.wall.Seconds()/s.wall.Seconds(),
			perFile*1e6, cpuPerFile*1e6, size(float64(s.rss)), size(float64(l.rss)))
	}

	b.WriteString(r.storeMD())
	b.WriteString(r.thousandHosts(fits["cold"].cpu, fits["redeploy"].cpu, rss))
	b.WriteString("\n## Machine\n\n")
	for _, line := range r.machine {
		fmt.Fprintf(&b, "- %s\n", line)
	}
	return b.String()
}

func joinInts(frs []fleetResult) string {
	var parts []string
	for _, fr := range frs {
		parts = append(parts, fmt.Sprint(fr.hosts))
	}
	return strings.Join(parts, ", ")
}

func (r *results) coreCount() int { return runtime.NumCPU() }

// thousandHosts is the plan for fleets of 1,000 hosts and more, with the
// measured figures it rests on.
func (r *results) thousandHosts(coldCPU, redeployCPU, rss line) string {
	largest := r.scale[len(r.scale)-1]
	cold, redeploy := statsOf(largest, "cold"), statsOf(largest, "redeploy")
	var b strings.Builder
	fmt.Fprintf(&b, "\n## 1,000 hosts and more\n\n### What the measurements predict\n\n")

	// Memory.
	perHostBudget := (rssGoal - rss.a) / 1000
	fmt.Fprintf(&b, "- **Memory.** The line above gives %s at 1,000 hosts. To stay under 150 MB there, slipway may keep about %s per host beyond its fixed %s; today it keeps %s. ",
		size(rss.a+rss.b*1000), size(math.Max(perHostBudget, 0)), size(rss.a), size(rss.b))
	b.WriteString("The peak also grows with the number of files (see above), so what slipway keeps per host looks proportional to the app's file list; it should hold one shared, read-only copy of the tree and manifests for all hosts, and buffers bounded by `--parallel`, not by the number of hosts.\n")

	// CPU of the deploying machine.
	fmt.Fprintf(&b, "- **CPU of the deploying machine.** slipway's own CPU grows by %.1f ms per host on a cold deploy and %.1f ms per host on a redeploy: **%.0f s and %.0f s of CPU at 1,000 hosts**, spread over the machine's cores.\n",
		coldCPU.b*1000, redeployCPU.b*1000, coldCPU.b*1000, redeployCPU.b*1000)

	// Bytes.
	coldTotal := cold.sentPerHost * 1000
	fmt.Fprintf(&b, "- **Bytes.** A cold deploy sends %s per host, **%s for 1,000 hosts**, all from the deploying machine: %s at 1 Gbit/s, %s at 10 Gbit/s. A redeploy sends %s per host, %s for 1,000 hosts.\n",
		size(cold.sentPerHost), size(coldTotal), secs(time.Duration(coldTotal*8/1e9*float64(time.Second))),
		secs(time.Duration(coldTotal*8/1e10*float64(time.Second))), size(redeploy.sentPerHost), size(redeploy.sentPerHost*1000))

	// Round trips.
	ex := redeploy.exchangesPerHost
	waves := func(parallel int) float64 { return math.Ceil(1000 / float64(parallel)) }
	fmt.Fprintf(&b, "- **Round trips.** A redeploy makes about %.0f exchanges per host (an upper bound on its round trips, see benchmarks.md). Each step waits for all hosts, and `--parallel` hosts work at once, so over a network with a round-trip time of 20 ms a redeploy of 1,000 hosts waits about %.0f waves × %.0f × 20 ms: **%s with the default `--parallel %d`**, %s with `--parallel 100`, %s with `--parallel 1000`.\n",
		ex, waves(cli.DefaultParallel), ex, secs(time.Duration(waves(cli.DefaultParallel)*ex*0.02*float64(time.Second))), cli.DefaultParallel,
		secs(time.Duration(waves(100)*ex*0.02*float64(time.Second))), secs(time.Duration(waves(1000)*ex*0.02*float64(time.Second))))

	b.WriteString(r.wanThousandHosts())

	// Connections.
	var lim syscall.Rlimit
	limit := "unknown"
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil {
		limit = fmt.Sprintf("%d (soft) / %d (hard)", lim.Cur, lim.Max)
	}
	fmt.Fprintf(&b, "- **Connections.** slipway opens %.1f TCP connection per host and holds it for the whole run: 1,000 hosts hold 1,000 sockets (more through jump hosts, below). Go raises the soft limit of open files to the hard limit when a program starts; here the limits are %s.\n",
		cold.connsPerHost, limit)

	// Skew.
	var skews []string
	for _, fr := range r.scale {
		if st := statsOf(fr, "cold"); st.skew >= 0 {
			skews = append(skews, fmt.Sprintf("%s at %d hosts", st.skew.Round(time.Microsecond), fr.hosts))
		}
	}
	if len(skews) > 0 {
		fmt.Fprintf(&b, "- **Switch skew** (cold deploys): %s. The switch is one request per host over connections already open, fired together, so it grows with the time to send 1,000 small requests, not with their round trips, as long as every connection is still open at the switch.\n",
			strings.Join(skews, ", "))
	}

	if plan := r.storePlanMD(); plan != "" {
		b.WriteString("\n" + plan)
	}
	b.WriteString(`
### What slipway needs for such fleets

1. **Connection pacing, apart from ` + "`--parallel`" + `.** sshd drops new connections at random once
   more than ` + "`MaxStartups`" + ` (default 10:30:100) are unauthenticated at once. A target host sees one
   connection from slipway, so only shared machines suffer: bastions. slipway's connect step
   handshakes ` + "`--parallel`" + ` hosts at once; it needs a limit on handshakes in flight per jump host
   (8 by default, configurable) and a retry with backoff when a connection is reset before the SSH
   banner, so that ` + "`--parallel 500`" + ` is safe.
2. **One connection per bastion, not per target.** Today every target reached through ` + "`ProxyJump`" + `
   opens its own connection to the jump host (DialSSH dials the chain per target): 1,000 targets
   mean 1,000 logins on the bastion and 2,000 sockets here. The targets' TCP streams should be
   ` + "`direct-tcpip`" + ` channels of one (or a few) shared connections per jump host; ` + "`MaxSessions`" + `
   does not count forwarding channels, but the bastion's one sshd process per connection carries all
   their bytes, so large uploads want a few connections, not one.
3. **File descriptors checked before the first connection.** With hosts (plus jump connections
   and a margin) above the open-file limit, say so and stop, naming ` + "`ulimit -n`" + ` or
   ` + "`--parallel`" + `, instead of failing host 1,021 halfway through a deploy.
4. **Memory bounded by ` + "`--parallel`" + `.** See the line above: per-host state of a few kB, the tree
   and manifests shared by every host, output buffered per step, not per host and line.
5. **Raise ` + "`--parallel`" + ` with the fleet.** The default of ` + strconv.Itoa(cli.DefaultParallel) + ` turns each step into ` + strconv.Itoa(int(math.Ceil(1000/float64(cli.DefaultParallel)))) + ` waves at
   1,000 hosts and the round trips above into seconds. With pacing (1) and bounded memory (4), the
   default could become "all hosts, at most 256 at once" and the flag a ceiling for weak clients.
6. **Rolling batches that also bound resources.** ` + "`rollout: {strategy: rolling, batch: N}`" + ` already
   switches batch by batch, but prepares every host first, with every connection open until the
   end. For fleets larger than the client can hold, a mode that connects, prepares and switches one
   batch at a time (Capistrano's and Ansible's ` + "`serial`" + `) keeps N connections open, at the cost of
   invariant 4 holding per batch rather than for the whole fleet: it must be an explicit choice.
7. **Failure budget.** At 1,000 hosts, some are down on any given day; today one failing host stops
   the whole deploy before the switch (invariant 4, on purpose). A ` + "`--hosts`" + ` selection from
   ` + "`slipway status`" + `'s reachable hosts works now; a ` + "`max_fail`" + ` setting (deploy the rest, report
   the missing hosts as drift) is a product decision to take explicitly.
8. **Bytes for cold deploys.** Tens of GB from one machine take minutes even on 10 Gbit/s. The
   artifact store (` + "`artifacts.store`" + `, above) takes them off the deploying machine: one upload,
   and the hosts download inside their own network. Without a store: ` + "`strategy: git`" + ` with a
   mirror close to the hosts, and compression of the stream (` + "`compress: auto`" + ` gzips for hosts
   over a network; source code typically compresses 3 to 5 times).
9. **Output for 1,000 hosts.** One line per step per host is over 10,000 lines. Above some size, print
   one line per step with counts, the slowest hosts and every failure, and keep the per-host lines
   for ` + "`--json`" + `.
`)
	return b.String()
}
