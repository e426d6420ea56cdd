package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/slipway-deploy/slipway/internal/cli"
)

// results is everything one benchmark run measured.
type results struct {
	plan           plan
	started        time.Time
	took           time.Duration
	machine        []string // "name: value" lines
	slipwayBin     string
	slipwayVersion string
	capVersion     string
	withCapistrano bool // false in a quick run without cap: slipway alone
	app, bigApp    appInfo
	compare        fleetResult   // slipway and Capistrano on compareHosts
	scale          []fleetResult // slipway on compareHosts, then on each of scaleHosts
	bigScale       fleetResult   // slipway, bigger app, compareHosts
	compression    compressionResult
	store          *storeResult // push against the artifact store
	wan            *wanResult   // issue 15: per-host file systems and latency
}

// Goals of issue 6.
const (
	coldGoal        = 1.0 / 5
	redeployGoal    = 1.0 / 10
	rollbackGoal    = 1.0 / 10
	hostsGoal       = 3.0
	rssGoal         = 150e6 // bytes
	changeBytesGoal = 64e3
)

func median[T int64 | time.Duration | int](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func field[T any](samples []sample, f func(sample) T) []T {
	out := make([]T, len(samples))
	for i, s := range samples {
		out[i] = f(s)
	}
	return out
}

func medianWall(s []sample) time.Duration {
	return median(field(s, func(s sample) time.Duration { return s.wall }))
}

// rssCell prints the highest peak RSS of samples, "≤ X" when that is an
// upper bound (see sample.rssBound), or — where none was measured.
func rssCell(samples []sample) string {
	n := maxRSS(samples)
	switch {
	case n == 0:
		return "—"
	case slices.ContainsFunc(samples, func(s sample) bool { return s.maxRSS == n && s.rssBound }):
		return "≤ " + size(float64(n))
	}
	return size(float64(n))
}

func maxRSS(s []sample) int64 { return slices.Max(field(s, func(s sample) int64 { return s.maxRSS })) }

// perHost is the median of f over the samples, divided by hosts.
func perHost(s []sample, hosts int, f func(sample) int64) float64 {
	return float64(median(field(s, f))) / float64(hosts)
}

func secs(d time.Duration) string {
	switch {
	case d < time.Second:
		return fmt.Sprintf("%.0f ms", d.Seconds()*1000)
	case d < 10*time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d < 5*time.Minute:
		return fmt.Sprintf("%.1f s", d.Seconds())
	default:
		return fmt.Sprintf("%.1f min", d.Minutes())
	}
}

// count prints n with thousands separators: 10,000.
func count(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// size prints a byte count in SI units: kB and MB are 10^3 and 10^6 bytes.
func size(n float64) string {
	switch {
	case n < 1e3:
		return fmt.Sprintf("%.0f B", n)
	case n < 1e6:
		return fmt.Sprintf("%.1f kB", n/1e3)
	case n < 1e9:
		return fmt.Sprintf("%.1f MB", n/1e6)
	default:
		return fmt.Sprintf("%.2f GB", n/1e9)
	}
}

func met(ok bool) string {
	if ok {
		return "**yes**"
	}
	return "**no**"
}

// ratio prints a/b as "1/x" when a is the smaller, as "x×" otherwise.
func ratio(a, b time.Duration) string {
	r := float64(a) / float64(b)
	if r >= 1 {
		return fmt.Sprintf("%.2f× (slower)", r)
	}
	return fmt.Sprintf("1/%.1f", 1/r)
}

func (r *results) write() error {
	switch r.plan.only {
	case "store":
		return r.writeStore()
	case "wan":
		return r.writeWAN()
	}
	bench, scaling := r.benchmarksMD(), r.scalingMD()
	if r.plan.docsDir == "" {
		fmt.Printf("%s\n\n%s", bench, scaling)
		logf("BENCH_QUICK: the report above was not written to docs/ (set BENCH_DOCS=dir to keep it)")
		return nil
	}
	if err := os.MkdirAll(r.plan.docsDir, 0o755); err != nil {
		return err
	}
	for name, content := range map[string]string{"benchmarks.md": bench, "scaling.md": scaling} {
		path := filepath.Join(r.plan.docsDir, name)
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			return err
		}
		logf("wrote %s", path)
	}
	fmt.Print(r.summaryTable())
	return nil
}

// writeStore writes the store's two parts alone (BENCH_ONLY=store) into
// scaling.md, in place of the ones there; a quick run prints them.
func (r *results) writeStore() error {
	measured, plan := r.storeMD(), r.storePlanMD()
	if r.plan.docsDir == "" {
		fmt.Print(measured, "\n", plan)
		return nil
	}
	path := filepath.Join(r.plan.docsDir, "scaling.md")
	doc, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := os.WriteFile(path, []byte(spliceStore(string(doc), measured, plan)), 0o644); err != nil {
		return err
	}
	logf("wrote the artifact store's parts of %s", path)
	return nil
}

func (r *results) header(title string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# %s\n\n", title)
	fmt.Fprintf(&b, "Written by `make bench` (bench/) on %s; the run took %s. Do not edit by hand:\nre-run `make bench` (as root) and commit the result.",
		r.started.Format("2006-01-02 15:04 MST"), r.took.Round(time.Second))
	if r.plan.quick {
		b.WriteString("\n\n> **BENCH_QUICK smoke run**: one repetition, a few hosts, a small app, no waiting for a quiet machine.\n" +
			"> These are not the benchmark's figures.")
	}
	if !r.withCapistrano {
		b.WriteString("\n\n> **Capistrano was not measured**: cap is not installed (bench/install-deps.sh installs it). Its columns are empty.")
	}
	if other, machine := r.otherShare(); other > 0.1 {
		fmt.Fprintf(&b, "\n\n> **The machine was not quiet**: during the measured commands, %.0f%% of its busy CPU time went to\n"+
			"> neither the tool, nor the hosts, nor the benchmark (other programs, kernel threads), %s in all.\n"+
			"> Times are perturbed; ratios less so (the tools alternate). Re-run on an idle machine.", other*100, secs(machine))
	}
	b.WriteString("\n\n")
	return b.String()
}

// relayShare is the share of the machine's busy time, over every measured
// command, that the benchmark's own process (the relays) used.
func (r *results) relayShare() string {
	share, _ := r.machineShare(func(s sample) time.Duration { return s.relayCPU })
	if share < 0 {
		return "none"
	}
	return fmt.Sprintf("%.1f%%", 100*share)
}

// machineShare sums part over every measured command and returns its
// share of the machine's busy time (-1 when nothing was measured) and the sum.
func (r *results) machineShare(part func(sample) time.Duration) (float64, time.Duration) {
	var sum, machine time.Duration
	for _, fr := range r.allFleets() {
		for _, samples := range fr.samples {
			for _, s := range samples {
				sum += part(s)
				machine += s.machineCPU
			}
		}
	}
	if machine == 0 {
		return -1, sum
	}
	return float64(sum) / float64(machine), sum
}

// allFleets is every fleet measured, each once.
func (r *results) allFleets() []fleetResult {
	frs := []fleetResult{r.compare, r.bigScale}
	if len(r.scale) > 1 {
		frs = append(frs, r.scale[1:]...)
	}
	if r.wan != nil {
		frs = append(frs, r.wan.fleets()...)
	}
	return frs
}

// otherShare is the share of the machine's busy time, over every measured
// command, spent outside the tools, the hosts and the benchmark; and that
// time.
func (r *results) otherShare() (float64, time.Duration) {
	share, other := r.machineShare(func(s sample) time.Duration { return s.otherCPU })
	if share < 0 {
		return 0, 0
	}
	return share, other
}

// summaryTable is the goals table of issue 6.
func (r *results) summaryTable() string {
	var b strings.Builder
	n := r.compare.hosts
	fmt.Fprintf(&b, "| workload (%d hosts, %s files, %s) | slipway | Capistrano 3 | slipway / Capistrano | goal | met? | the hosts' disk work alone (floor) |\n|---|---|---|---|---|---|---|\n",
		n, count(r.app.files), size(float64(r.app.bytes)))
	goals := map[string]float64{"cold": coldGoal, "redeploy": redeployGoal, "rollback": rollbackGoal}
	for _, w := range workloads {
		s, c := medianWall(r.compare.get("slipway", w)), medianWall(r.compare.get("capistrano", w))
		capCell, vs, goalMet, floorGoal := "—", "—", "—", ""
		if r.withCapistrano {
			capCell, vs, goalMet = secs(c), ratio(s, c), met(float64(s) <= goals[w]*float64(c))
			floorGoal = fmt.Sprintf(" (goal: %s)", secs(time.Duration(goals[w]*float64(c))))
		}
		floor := "—"
		if f := r.compare.get("floor", w); len(f) > 0 {
			floor = secs(medianWall(f)) + floorGoal
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | ≤ 1/%.0f | %s | %s |\n", workloadTitle[w], secs(s), capCell, vs,
			1/goals[w], goalMet, floor)
		if w == "redeploy" {
			sent := perHost(r.compare.get("slipway", w), n, func(s sample) int64 { return s.traffic.up })
			capSent := "—"
			if r.withCapistrano {
				capSent = size(perHost(r.compare.get("capistrano", w), n, func(s sample) int64 { return s.traffic.up }))
			}
			fmt.Fprintf(&b, "| bytes sent per host on that redeploy | %s | %s | | ≈ the change (%s file, one line); taken as ≤ %s per host | %s | |\n",
				size(sent), capSent, size(float64(r.app.changedSize)), size(changeBytesGoal), met(sent <= changeBytesGoal))
		}
	}
	// The goal compares 50 hosts with 10; a quick run has smaller fleets.
	if big := r.scaleAt(r.plan.goalHosts); big != nil {
		small := r.scale[0]
		for _, w := range workloads {
			t, t0 := medianWall(big.get("slipway", w)), medianWall(small.get("slipway", w))
			fmt.Fprintf(&b, "| %s, %d vs %d hosts (slipway) | %s | | %s at %d hosts → %.2f× | ≤ 3× | %s | |\n",
				workloadTitle[w], big.hosts, small.hosts, secs(t), secs(t0), small.hosts, float64(t)/float64(t0), met(float64(t) <= hostsGoal*float64(t0)))
		}
		var all []sample
		for _, w := range workloads {
			all = append(all, big.get("slipway", w)...)
		}
		rss := maxRSS(all)
		fmt.Fprintf(&b, "| peak RSS of slipway at %d hosts (highest of all its runs) | %s | | | ≤ 150 MB | %s | |\n", big.hosts, size(float64(rss)), met(float64(rss) <= rssGoal))
	}
	return b.String()
}

// scaleAt returns the slipway samples on a fleet of n hosts, if measured.
func (r *results) scaleAt(n int) *fleetResult {
	for i := range r.scale {
		if r.scale[i].hosts == n {
			return &r.scale[i]
		}
	}
	return nil
}

func (r *results) detailTable(fr fleetResult, tools []string) string {
	var b strings.Builder
	b.WriteString("| tool | workload | median | min – max | CPU: tool | CPU: hosts | CPU: kernel | CPU: other programs | peak RSS | sent per host | received per host | connections per host | sessions per host | exchanges per host | fleet skew |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, w := range workloads {
		for _, t := range tools {
			s := fr.get(t, w)
			if len(s) == 0 {
				continue
			}
			walls := field(s, func(s sample) time.Duration { return s.wall })
			skew := "—"
			if skews := field(s, func(s sample) time.Duration { return s.skew }); skews[0] >= 0 {
				skew = median(skews).Round(time.Microsecond).String()
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s – %s | %s | %s | %s | %s | %s | %s | %s | %.1f | %.1f | %.0f | %s |\n",
				t, workloadTitle[w], secs(median(walls)), secs(slices.Min(walls)), secs(slices.Max(walls)),
				secs(median(field(s, func(s sample) time.Duration { return s.toolCPU }))),
				secs(median(field(s, func(s sample) time.Duration { return s.hostsCPU }))),
				secs(median(field(s, func(s sample) time.Duration { return s.kernelCPU }))),
				secs(median(field(s, func(s sample) time.Duration { return s.otherCPU }))),
				rssCell(s),
				size(perHost(s, fr.hosts, func(s sample) int64 { return s.traffic.up })),
				size(perHost(s, fr.hosts, func(s sample) int64 { return s.traffic.down })),
				perHost(s, fr.hosts, func(s sample) int64 { return s.traffic.conns }),
				perHost(s, fr.hosts, func(s sample) int64 { return int64(s.sessions) }),
				perHost(s, fr.hosts, func(s sample) int64 { return s.traffic.exchanges }),
				skew)
		}
	}
	return b.String()
}

func (r *results) benchmarksMD() string {
	var b strings.Builder
	b.WriteString(r.header("slipway benchmarks"))
	b.WriteString(`slipway and Capistrano 3 deploy the same app to the same hosts (real OpenSSH servers on
loopback, started by the end-to-end tests' harness), in the same run. Times are wall-clock times of
the whole command. Sizes are in SI units (1 kB = 1,000 bytes, 1 MB = 10^6 bytes).

`)
	b.WriteString(r.wanMD())
	fmt.Fprintf(&b, `
## Against the goals of issue 6: loopback, one shared file system

%d hosts with no added delay, every host's files in one directory tree of this machine's file
system (%s), so that the hosts' disk work contends for one journal. Every figure is the median of
%d runs.

`, r.compare.hosts, output("stat", "-f", "-c", "%T", os.TempDir()), r.plan.reps)
	b.WriteString(r.summaryTable())
	fmt.Fprintf(&b, `
"≈ the size of the change" is read as: what slipway sends to a host does not grow with the app,
only with the change, plus the SSH handshake and the deploy's own requests; the line drawn is %s
per host, against %s for the whole app.

The last column is the **floor** (bench/floor.go): only the work on the hosts that any tool writing
a complete release on every host must do, with nothing around it, on all hosts at once, each over one
OpenSSH connection: unpack the app from one tar stream (cold), copy the live release with `+"`cp -a`"+`
and unpack the changed file (redeploy), rename current (rollback); no lock, history, checks or sync,
no local export. Beside it, the time the goal allows slipway. Where the floor is above that time, no
tool that writes a release per host can meet the goal on this machine: every host's files are
created by the same 2 cores in the same file system, so the fleet pays for them one after another.
(The floor's sessions end with the command, before the hosts' sshd reap them, so its hosts' CPU
shows under *kernel* in the table below.)

## Every measurement, %d hosts

`, size(changeBytesGoal), size(float64(r.app.bytes)), r.compare.hosts)
	b.WriteString(r.detailTable(r.compare, []string{"slipway", "capistrano", "floor"}))
	b.WriteString(`
- **CPU**: user + system time, medians. *tool*: the tool's process and the children it waited
  for (slipway's git; Capistrano's ruby); *hosts*: every process the hosts ran for the command
  (sshd and its sessions, shells, git, tar, cp …), from the cutime and cstime of each host's sshd
  listener, which reaps them all; *other programs*: every other process on the machine, sampled
  five times a second (noise: before each command the benchmark waits, up to 30 s and 5 minutes
  in all, until they use under a tenth of a core); *kernel*: the rest of the machine's busy time (/proc/stat)
  after those and the benchmark's own relays: interrupts (the loopback TCP traffic), writeback
  and journaling threads.
- **sent / received per host**: bytes on the wire from the client to the host's sshd and back
  (encrypted SSH traffic, TCP payload), counted by a relay in the benchmark process in front of
  every host, divided by the number of hosts.
- **connections per host**: TCP connections through the relay.
- **sessions per host**: SSH sessions (channels running a command, a shell or the sftp
  subsystem) the host's sshd started, counted from its log (LogLevel VERBOSE, "Starting session:"
  lines). Each remote command of Capistrano is one session; slipway sends most of its work as SFTP
  requests inside one sftp session, which sshd does not log one by one.
- **exchanges per host**: turns of the conversation seen by the relay: each time the client sends
  after the host has sent something. For a client that waits for every answer this is the number
  of round trips; pipelined requests, SSH window adjustments and keepalives add turns, so it is an
  upper bound. On a network with latency L, a host costs at least about exchanges × L unless the
  client overlaps them.
- **fleet skew**: slipway's own figure, from its summary ("fleet skew: X from the first switch to
  the last"), median of the runs. Capistrano switches host by host and prints none.
- **peak RSS**: the maximum resident set size of the tool's process, from wait4's rusage
  (ru_maxrss) when it exits: exact, not sampled. For slipway it includes the git it runs to export
  the revision (rusage counts waited-for children), so it is an upper bound for slipway itself.
  For Capistrano it is the ruby process. Linux counts in a child's peak the memory of the process
  that started it (the benchmark, which the child is a copy of until it runs the tool); the
  benchmark frees what it can and resets its own peak before each command, and a figure no higher
  than its peak when the tool started is shown as "≤": the tool used at most that.

`)
	b.WriteString(r.compressionMD())
	b.WriteString(`## What runs, exactly

`)
	fmt.Fprintf(&b, `- **The app**: generated from a fixed seed (bench/app.go): a Laravel-shaped tree of %s files,
  %s: PHP code, Blade views, translations and a vendor/ directory, with 2%% of the files binary
  assets (images, fonts, source maps, PDFs: random bytes) holding 35%% of the bytes. It is committed
  to a git repository on this machine: a working clone (root's) and a bare repository owned by
  the deploy user, which the hosts can read.
- **A one-file change**: one line of %s (%s), committed and pushed before each redeploy.
- **A full history**: after the cold deploy, each tool deploys `+"`keep_releases`"+` more builds
  (not measured) before the measured redeploys, and one more after each measured rollback (the
  release rolled back from counts for neither tool's `+"`keep_releases`"+`), so that every measured
  redeploy is one a team makes every day: Capistrano's cleanup deletes the oldest release in each, slipway reuses its directory for
  the new release (`+"`source.recycle`"+`, on by default). The floor deploys them too, and deletes
  nothing.
- **slipway**: %s, built by `+"`go build ./cmd/slipway`"+` (testutil.Slipway) from the checkout as
  it is, and run as `+"`slipway -c slipway.yml deploy production`"+` and `+"`slipway -c slipway.yml rollback production`"+`,
  default `+"`--parallel`"+` (`+strconv.Itoa(cli.DefaultParallel)+`), config: `+"`strategy: upload`"+` with `+"`source.repo`"+` set to the working clone
  and `+"`branch: main`"+`, so every deploy ships a clean `+"`git archive`"+` export of the same commit Capistrano
  deploys (the export is part of the measured time; slipway keeps its mirror of the repository in
  ~/.cache/slipway, which a cold deploy starts without), `+"`shared: {dirs: [storage]}`"+`, `+"`keep_releases: 5`"+`,
  `+"`deploy_to: %s`"+`. Everything else is slipway's default (delta uploads included, when the
  build has them).
- **Capistrano**: %s (Debian's capistrano package, net-ssh, SSHKit, airbrussh), run as
  `+"`cap production deploy`"+` and `+"`cap production deploy:rollback`"+`, git strategy from the bare
  repository (`+"`repo_url`"+` a file:// URL; each host keeps its mirror in deploy_to/repo and runs
  `+"`git archive | tar`"+` into the release), `+"`linked_dirs: storage`"+`, `+"`keep_releases: 5`"+`,
  `+"`deploy_to: %s`"+`, every host with role app (Capistrano runs every task on all hosts at once). Its
  defaults otherwise, including `+"`deploy:cleanup_rollback`"+`, which archives the release rolled back from
  into a .tar.gz on every host.
- **Both** reach the hosts through the same ssh config aliases (host1 …) and check host keys
  against the same known_hosts (`+"`verify_host_key: :always`"+` for net-ssh); neither has host key
  checking disabled. slipway authenticates with the fleet's ed25519 key, Capistrano with an RSA
  key in PEM format added to every host's authorized_keys (Debian's net-ssh signs with nothing
  else on this OpenSSL).
- **Order**: cold deploys on emptied hosts (both deploy directories removed, and slipway's local
  mirror), %d times; then %d rounds of change → deploy → rollback, each starting from the cold deploy's
  release (live again after the previous round's rollback). The tool that goes first
  alternates from one repetition to the next. Before each command the benchmark flushes the page
  cache's dirty pages (sync) and waits for other programs to quiet down (see CPU above). After
  every command it checks that every host serves the expected build.

## Caveats

- Client and hosts share this machine's %s CPU cores and one disk: the figures measure the CPU and
  I/O work of a deploy more than a network. Loopback has no latency; over a real network, the
  exchanges column multiplies by the round-trip time.
- Fleet size: the hosts' own work (decrypting and writing their copy, git, cp) runs on the same
  cores as slipway, so the time of a big fleet grows with the sum of what every host does, which
  a client can only shrink by giving the hosts less to do; the "50 vs 10 hosts" rows measure this
  machine as much as slipway. docs/scaling.md separates slipway's own CPU, memory and round trips
  per host, which are what a real fleet of separate servers leaves to the deploying machine.
- The relays that count the bytes are part of the measurement's cost: they copy every byte once
  more over loopback, and used %s of the machine's busy CPU time during the measured commands.
- Capistrano's hosts fetch the repository from this machine's file system (file://), which costs
  them no SSH traffic; in production they would fetch from a git server. slipway's bytes include
  the whole app on a cold deploy, as they would in production.
- The checkout was being changed by others while this ran: the slipway measured is whatever
  `+"`go build ./cmd/slipway`"+` produced at the start (commit shown below, working tree possibly
  modified). Re-run `+"`make bench`"+` after slipway changes.

`, count(r.app.files), size(float64(r.app.bytes)), changedFile, size(float64(r.app.changedSize)),
		r.slipwayVersion, slipwayDeployTo, r.capVersion, capDeployTo, r.plan.reps, r.plan.reps, cores(), r.relayShare())
	b.WriteString("## Machine\n\n")
	for _, line := range r.machine {
		fmt.Fprintf(&b, "- %s\n", line)
	}
	b.WriteString("\n## Reproduce\n\n```sh\nmake bench            # as root; writes docs/benchmarks.md and docs/scaling.md\n" +
		"make bench-wan        # as root; issue 15's section alone (per-host XFS, 0 and 50 ms); rewrites it in docs/benchmarks.md\n" +
		"make bench-quick      # as root; a smoke run of the same code on the smallest fleets; prints the report\n```\n\n" +
		"`make bench-quick` is `BENCH_QUICK=1 make bench`; `go test ./bench/` runs the same smoke run (TestQuickRun), Capistrano included if installed.\n\n" +
		"Settings (environment): `BENCH_REPS` (repetitions of the goals' figures, default 3), `BENCH_SCALE_REPS`\n" +
		"(of the 100-host and more-files figures, default 1), `BENCH_RTT` (the round-trip time of issue 15's section, measured\n" +
		"beside none; default 50ms), `BENCH_FS` (the hosts' file systems in that section: xfs, the default, ext4, or shared),\n" +
		"`BENCH_ONLY` (wan: issue 15's section alone, rewritten in place, as `make bench-wan`; store: the artifact store's,\n" +
		"as `make bench-store`), `BENCH_SLIPWAY` (measure that binary instead of a build of\n" +
		"the checkout), `BENCH_LOGS=dir` (keep every command's output), `BENCH_DOCS=dir` (where a quick run writes its report).\n")
	return b.String()
}

func cores() string { return fmt.Sprint(runtime.NumCPU()) }

// line is y = a + b·x.
type line struct{ a, b float64 }

// fit is the least-squares line y = a + b·x.
func fit(xs, ys []float64) (a, b float64) {
	n := float64(len(xs))
	var sx, sy, sxx, sxy float64
	for i := range xs {
		sx, sy, sxx, sxy = sx+xs[i], sy+ys[i], sxx+xs[i]*xs[i], sxy+xs[i]*ys[i]
	}
	d := n*sxx - sx*sx
	if d == 0 {
		return sy / n, 0
	}
	b = (n*sxy - sx*sy) / d
	return (sy - b*sx) / n, b
}

// describeMachine lists what the figures depend on.
func describeMachine() []string {
	var lines []string
	add := func(name, value string) {
		if value = strings.TrimSpace(value); value != "" {
			lines = append(lines, name+": "+value)
		}
	}
	cpuinfo, _ := os.ReadFile("/proc/cpuinfo")
	for line := range strings.Lines(string(cpuinfo)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			add("CPU", fmt.Sprintf("%s, %d cores", strings.TrimSpace(v), runtime.NumCPU()))
			break
		}
	}
	meminfo, _ := os.ReadFile("/proc/meminfo")
	for line := range strings.Lines(string(meminfo)) {
		if strings.HasPrefix(line, "MemTotal:") {
			var kb float64
			fmt.Sscanf(strings.TrimPrefix(line, "MemTotal:"), "%f", &kb)
			add("memory", size(kb*1024))
		}
	}
	osRelease, _ := os.ReadFile("/etc/os-release")
	for line := range strings.Lines(string(osRelease)) {
		if v, ok := strings.CutPrefix(line, "PRETTY_NAME="); ok {
			add("OS", strings.Trim(strings.TrimSpace(v), `"`))
		}
	}
	add("kernel", output("uname", "-r"))
	add("Go", runtime.Version())
	add("OpenSSH", firstLine(output("/usr/sbin/sshd", "-V")))
	add("git", output("git", "--version"))
	add("ruby", output("ruby", "--version"))
	add("file system of /tmp", output("stat", "-f", "-c", "%T", os.TempDir()))
	return lines
}

func output(name string, args ...string) string {
	out, _ := exec.Command(name, args...).CombinedOutput()
	return strings.TrimSpace(string(out))
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// slipwayVersion says which slipway was measured: a build of this
// checkout (its HEAD, and the working tree as it was), or the binary
// BENCH_SLIPWAY named.
func slipwayVersion(bin string, given bool) string {
	v := output(bin, "version")
	if given {
		return v + ", the binary " + bin + " (BENCH_SLIPWAY)"
	}
	if rev := output("git", "rev-parse", "--short", "HEAD"); rev != "" {
		v += ", built from the checkout at " + rev + " with its working tree as it was"
	}
	return v
}

func capistranoVersion() string { return firstLine(output("cap", "--version")) }
