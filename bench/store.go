package main

import (
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/slipway-deploy/slipway/internal/cli"
	"github.com/slipway-deploy/slipway/internal/testutil"
)

// Push against the artifact store (artifacts.store): cold deploys and
// redeploys of the same fleets through one paced uplink of the deploying
// machine, which carries both slipway's SSH connections and its uploads to
// the store. The hosts download from the store directly, not through that
// uplink, as servers in a data centre reach its object store.

// storeLink is the deploying machine's uplink in this comparison.
var storeLink = link{"100 Mbit/s uplink", 100e6}

// The ways of shipping compared, and the workloads.
var (
	storeModes     = []string{"push", "store"}
	storeWorkloads = []string{"cold", "redeploy"}
	storeModeTitle = map[string]string{
		"push":  "push (SSH)",
		"store": "artifact store",
	}
)

// Deploy directories of the two ways, so they never meet.
const (
	pushDeployTo  = "/srv/slipway-push"
	storeDeployTo = "/srv/slipway-store"
)

// storeResult is what the comparison measured.
type storeResult struct {
	hosts      []int
	reps       int
	fileSystem string              // of every host, as newBench takes it
	samples    map[string][]sample // by storeKey
	// toStore is, for each sample of the store, what slipway sent to the
	// store (the rest of its bytes went to the hosts over SSH).
	toStore map[string][]int64
}

func storeKey(hosts int, mode, workload string) string {
	return fmt.Sprintf("%d %s %s", hosts, mode, workload)
}

func newStoreResult(hosts []int, reps int, fileSystem string) *storeResult {
	return &storeResult{hosts: hosts, reps: reps, fileSystem: fileSystem, samples: map[string][]sample{}, toStore: map[string][]int64{}}
}

func (r *storeResult) get(hosts int, mode, workload string) []sample {
	return r.samples[storeKey(hosts, mode, workload)]
}

// storeCompare measures push and store on b's fleet, reps times each: cold
// deploys on emptied hosts, then, once each way has deployed keepReleases
// more builds (a full history, as on a fleet in use, so that every
// redeploy reuses the oldest release's directory: source.recycle), reps
// redeploys of a one-file change; the order of the two ways alternates.
// Each cold deploy uses a prefix of its own in the bucket, so it uploads
// its pack (a prefix used before would hold it already, and the deploy
// would upload nothing); the history and the redeploys share one more.
func (b *bench) storeCompare(s3 *testutil.S3, reps int, res *storeResult) {
	n := len(b.fleet.Hosts)
	u, err := url.Parse(s3.Endpoint)
	must(b.sc, err)
	port, err := strconv.Atoi(u.Port())
	must(b.sc, err)
	// slipway reaches the store through a relay of its own, on the same
	// uplink as its SSH connections; the hosts reach s3.Endpoint.
	toStore, err := startRelay(port)
	must(b.sc, err)
	b.sc.Cleanup(toStore.stop)
	b.relays = append(b.relays, toStore)
	b.extraEnv = s3.Env()
	b.storePid = s3.Pid()
	b.setUplink(newUplink(storeLink.bits))
	defer b.setUplink(nil)

	storeEndpoint := fmt.Sprintf("http://127.0.0.1:%d", toStore.port())
	deployTo := map[string]string{"push": pushDeployTo, "store": storeDeployTo}
	// tools are the two ways, the store's under prefix: compress: auto
	// both ways, as a user has it: zstd for the pushed streams and the
	// packs alike, since these hosts have zstd and GNU tar.
	tools := func(prefix string) map[string]tool {
		return map[string]tool{
			"push": b.slipwayToolConfig(pushDeployTo, "push", "", ""),
			"store": b.slipwayToolConfig(storeDeployTo, "store", "", fmt.Sprintf(
				"artifacts:\n  store: s3://%s/%s\n  endpoint: %s\n  hosts_endpoint: %s\n  region: us-east-1\n",
				s3.Bucket, prefix, storeEndpoint, s3.Endpoint)),
		}
	}
	measure := func(ways map[string]tool, workload string, i int) {
		for _, mode := range inTurn(i, storeModes) {
			logf("%d hosts: %s %s over %s, %d/%d", n, mode, workload, storeLink.name, i+1, reps)
			before := toStore.snapshot()
			s := ways[mode].deploy()
			b.expectLive(mode, deployTo[mode], b.app.build)
			key := storeKey(n, mode, workload)
			res.samples[key] = append(res.samples[key], s)
			res.toStore[key] = append(res.toStore[key], toStore.snapshot().sub(before).up)
			logf("  %s", s)
		}
	}
	for i := range reps {
		b.wipe(pushDeployTo)
		b.wipe(storeDeployTo)
		must(b.sc, os.RemoveAll(filepath.Join(b.home, ".cache")))
		measure(tools(fmt.Sprintf("bench-%d-%d", n, i+1)), "cold", i)
	}
	ways := tools(fmt.Sprintf("bench-%d-history", n))
	for i := range keepReleases {
		b.app.change()
		for _, mode := range storeModes {
			logf("%d hosts: %s deploy %d/%d over %s, to fill the history", n, mode, i+1, keepReleases, storeLink.name)
			ways[mode].deploy()
			b.expectLive(mode, deployTo[mode], b.app.build)
		}
	}
	for i := range reps {
		b.app.change()
		measure(ways, "redeploy", i)
	}
}

// medianSent is the median of what slipway sent in all (SSH and store).
func medianSent(s []sample) float64 {
	return float64(median(field(s, func(s sample) int64 { return s.traffic.up })))
}

func medianCPU(s []sample, f func(sample) time.Duration) time.Duration { return median(field(s, f)) }

func hostsCPUOf(s sample) time.Duration { return s.hostsCPU }

// Goals of issue 18 for the store: the client sends about one copy
// whatever the fleet size, and the larger fleet takes at most this many
// times the smaller one's time.
const (
	storeTimeGoal  = 1.5
	storeBytesGoal = 1.25 // "about one copy": sent at the larger fleet ÷ sent at the smaller
)

// storeMD is the report's section on the artifact store, for scaling.md:
// the measurements, before the plan for 1,000 hosts (storePlanMD).
func (r *results) storeMD() string {
	s := r.store
	if s == nil || len(s.samples) == 0 {
		return ""
	}
	var b strings.Builder
	run := "`make bench`"
	if r.plan.only == "store" {
		run = "`make bench-store`"
	}
	fmt.Fprintf(&b, `%s
## Through an artifact store (artifacts.store)

Measured by %s on %s (the run took %s), on the machine described at the end of this page
(%s cores shared by slipway, every host and the store).

slipway pushing every host its upload over SSH, against slipway uploading each pack once to an
S3 store that the hosts download from (`+"`artifacts: {store: s3://…, endpoint: …, hosts_endpoint: …}`"+`),
on the same fleets (every host on %s), with the same app (%s files, %s). A cold deploy starts on
emptied hosts; a redeploy sends a one-file change to hosts whose history is full (keep_releases
%d), as on a fleet in use, so its new release reuses the directory of the oldest
(`+"`source.recycle`"+`, the default) instead of copying the live one. The deploying
machine's uplink is a %s that the benchmark's relays pace: it carries slipway's SSH connections
**and** its uploads to the store. The store is SeaweedFS %s (`+"`weed mini`"+`, the end-to-end tests'
S3 server) on loopback; the hosts download from it directly, not through that uplink, as
servers reach the object store of their data centre. Both ways with `+"`compress: auto`"+`, the
default, which takes zstd for the pushed streams and the packs alike (the hosts have zstd and GNU
tar); slipway runs with its default `+"`--parallel`"+` (`+strconv.Itoa(cli.DefaultParallel)+`). Medians of
%d runs; "client sent" is every byte slipway sent (SSH and store), "to the store" the part that
went to the store.
%s
| hosts | workload | push: time | push: client sent | store: time | store: client sent | of which to the store | CPU: hosts, push | CPU: hosts, store | CPU: the S3 server |
|---|---|---|---|---|---|---|---|---|---|
`, storeBegin, run, r.started.Format("2006-01-02 15:04 MST"), r.took.Round(time.Second), cores(),
		fileSystemName(s.fileSystem), count(r.app.files), size(float64(r.app.bytes)), keepReleases, storeLink.name, testutil.SeaweedFSVersion, s.reps, r.storeQuiet())
	for _, w := range storeWorkloads {
		for _, n := range s.hosts {
			push, store := s.get(n, "push", w), s.get(n, "store", w)
			if len(push) == 0 || len(store) == 0 {
				continue
			}
			fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", n, workloadTitle[w],
				secs(medianWall(push)), size(medianSent(push)), secs(medianWall(store)), size(medianSent(store)),
				size(float64(median(s.toStore[storeKey(n, "store", w)]))),
				secs(medianCPU(push, hostsCPUOf)), secs(medianCPU(store, hostsCPUOf)),
				secs(medianCPU(store, func(s sample) time.Duration { return s.storeCPU })))
		}
	}
	if len(s.hosts) >= 2 {
		small, big := s.hosts[0], s.hosts[len(s.hosts)-1]
		fmt.Fprintf(&b, `
### %d hosts against %d

"Least time here" is the hosts' CPU time divided by this machine's %s cores: how long the hosts'
own work (downloading or receiving, unpacking, verifying) takes at the least when every host runs
on the same cores, whoever sends them the release.

| workload | way | time: %d ÷ %d hosts | least time here: %d ÷ %d hosts | client sent: %d ÷ %d hosts | to the store: %d ÷ %d hosts | goal (store) | met? |
|---|---|---|---|---|---|---|---|
`, big, small, cores(), big, small, big, small, big, small, big, small)
		for _, w := range storeWorkloads {
			for _, mode := range storeModes {
				st0, st1 := s.get(small, mode, w), s.get(big, mode, w)
				t0, t1 := medianWall(st0), medianWall(st1)
				l0, l1 := r.leastTime(st0), r.leastTime(st1)
				b0, b1 := medianSent(st0), medianSent(st1)
				toStore := "—"
				goal, ok := "", ""
				if mode == "store" {
					s0 := float64(median(s.toStore[storeKey(small, mode, w)]))
					s1 := float64(median(s.toStore[storeKey(big, mode, w)]))
					toStore = fmt.Sprintf("%.2f× (%s → %s)", s1/s0, size(s0), size(s1))
					goal = fmt.Sprintf("time ≤ %.1f×; client sent ≈ 1× (≤ %.2f×)", storeTimeGoal, storeBytesGoal)
					ok = fmt.Sprintf("time %s; bytes %s", met(float64(t1) <= storeTimeGoal*float64(t0)), met(b1 <= storeBytesGoal*b0))
				}
				fmt.Fprintf(&b, "| %s | %s | %.2f× (%s → %s) | %.2f× (%s → %s) | %.2f× (%s → %s) | %s | %s | %s |\n",
					workloadTitle[w], storeModeTitle[mode],
					float64(t1)/float64(t0), secs(t0), secs(t1),
					float64(l1)/float64(l0), secs(l0), secs(l1),
					b1/b0, size(b0), size(b1), toStore, goal, ok)
			}
		}
		b.WriteString(r.storeReading(small, big))
	}
	b.WriteString("\nReproduce: `make bench` (the whole benchmark, this section included), or only this section:\n" +
		"`make bench-store` (as root; `BENCH_REPS=N` repetitions), which rewrites it and the plan under\n" +
		"\"1,000 hosts and more\" in place in docs/scaling.md.\n")
	b.WriteString(storeEnd + "\n")
	return b.String()
}

// leastTime is the median of the hosts' CPU time over samples, divided by
// the cores they shared.
func (r *results) leastTime(samples []sample) time.Duration {
	return medianCPU(samples, hostsCPUOf) / time.Duration(r.coreCount())
}

// storeQuiet says how busy the machine was with other programs during the
// store's commands, when that was more than a tenth of its busy time.
func (r *results) storeQuiet() string {
	var other, machine time.Duration
	for _, samples := range r.store.samples {
		for _, s := range samples {
			other += s.otherCPU
			machine += s.machineCPU
		}
	}
	if machine == 0 {
		return ""
	}
	if float64(other) < 0.1*float64(machine) {
		return fmt.Sprintf("\nOther programs on the machine used %.0f%% of its busy CPU time during the measured commands (%s in all).\n",
			100*float64(other)/float64(machine), secs(other))
	}
	return fmt.Sprintf("\n> **The machine was not quiet**: during the measured commands, %.0f%% of its busy CPU time went to\n"+
		"> other programs (not slipway, the hosts, the S3 server or the benchmark), %s in all. Times are\n"+
		"> perturbed; ratios within the run less so (push and store alternate). Re-run on an idle machine.\n",
		100*float64(other)/float64(machine), secs(other))
}

// storeReading says what the two fleets' figures mean.
func (r *results) storeReading(small, big int) string {
	s := r.store
	cold := func(n int, mode string) []sample { return s.get(n, mode, "cold") }
	// share is the median of part over the n-host store cold deploys, as a
	// share of the machine's capacity meanwhile.
	share := func(n int, part func(sample) time.Duration) float64 {
		st := cold(n, "store")
		return medianCPU(st, part).Seconds() / (medianWall(st).Seconds() * float64(r.coreCount()))
	}
	uplinkTime := func(bytes float64) string {
		return secs(time.Duration(bytes * 8 / storeLink.bits * float64(time.Second)))
	}
	storeSent, pushSent := medianSent(cold(big, "store")), medianSent(cold(big, "push"))
	redeploySSH := (medianSent(s.get(big, "store", "redeploy")) - float64(median(s.toStore[storeKey(big, "store", "redeploy")]))) / float64(big)
	return fmt.Sprintf(`
**Bytes.** With the store the deploying machine sends one copy of each pack (a cold deploy's
%s, a redeploy's %s), whatever the number of hosts, and the deploy's SSH requests, a few kB per
host; a push sends a copy per host (%s at %d hosts, cold). On a cold deploy the copy is nearly
all of it, and what the client sends stays about the same from %d to %d hosts. On a redeploy
the copy is a few kB either way and what remains are those SSH requests (about %s per host at %d
hosts, as many as a push sends): the client's bytes grow with the fleet there, by kilobytes.

**Time.** On the uplink, the %d-host cold deploy's bytes take %s pushed and %s through the store.
Through the store the deploy no longer waits for that link but for the hosts: every host of this
benchmark downloads, unpacks and verifies its copy on the same %s cores (during the %d-host store
deploy the hosts' CPU was %.0f%% of the machine's capacity, and the machine was %.0f%% busy), so
the larger fleet's time grows with the sum of the hosts' work, as the "least time here" column
shows. %s Real servers do that work in parallel, each on its own CPU and disk; there, what the
fleet size still adds is slipway's own work per host and the round trips of its steps (see the
plan for 1,000 hosts below). The redeploy is a few kB either way: its time is the hosts' own steps
(bringing the oldest release's directory up to date, verifying, switching) and their round trips.
`, size(float64(median(s.toStore[storeKey(big, "store", "cold")]))),
		size(float64(median(s.toStore[storeKey(big, "store", "redeploy")]))),
		size(pushSent), big, small, big, size(redeploySSH), big,
		big, uplinkTime(pushSent), uplinkTime(storeSent),
		cores(), big, 100*share(big, hostsCPUOf), 100*share(big, func(s sample) time.Duration { return s.machineCPU }),
		r.storeTimeVerdict(small, big))
}

// storeTimeVerdict says what the larger fleet's store deploy waited for on
// this machine, and whether the hosts' own work alone already takes more
// than the time goal allows.
func (r *results) storeTimeVerdict(small, big int) string {
	coldSmall, coldBig := r.store.get(small, "store", "cold"), r.store.get(big, "store", "cold")
	least := r.leastTime(coldBig)
	allowed := time.Duration(storeTimeGoal * float64(medianWall(coldSmall)))
	busy := medianCPU(coldBig, func(s sample) time.Duration { return s.machineCPU }).Seconds() /
		(medianWall(coldBig).Seconds() * float64(r.coreCount()))
	within := "within"
	if least > allowed {
		within = "more than"
	}
	perHost := func(st []sample, n int) string { return secs(medianCPU(st, hostsCPUOf) / time.Duration(n)) }
	return fmt.Sprintf("The %d hosts' own work needs at least %s of this machine's %s cores, %s the %s "+
		"(%.1f× the %d-host cold deploy) the goal allows, and the machine was %.0f%% busy during that deploy: "+
		"its time is the work done on these cores, not a wait of slipway's. The same work cost the hosts %s of CPU "+
		"per host at %d hosts and %s at %d (it varies on this machine from run to run), and the time ratio moves with it.",
		big, secs(least), cores(), within, secs(allowed), storeTimeGoal, small, 100*busy,
		perHost(coldSmall, small), small, perHost(coldBig, big), big)
}

// storePlanMD is the plan for 1,000 hosts with the store, from the
// figures of storeMD, for scaling.md's "1,000 hosts and more".
func (r *results) storePlanMD() string {
	s := r.store
	if s == nil || len(s.samples) == 0 {
		return ""
	}
	big := s.hosts[len(s.hosts)-1]
	packCold := float64(median(s.toStore[storeKey(big, "store", "cold")]))
	packRedeploy := float64(median(s.toStore[storeKey(big, "store", "redeploy")]))
	sshPerHost := func(w string) float64 {
		st := s.get(big, "store", w)
		return (medianSent(st) - float64(median(s.toStore[storeKey(big, "store", w)]))) / float64(big)
	}
	pushPerHost := medianSent(s.get(big, "push", "cold")) / float64(big)
	at := func(bytes, bits float64) string { return secs(time.Duration(bytes * 8 / bits * float64(time.Second))) }
	coldStore := s.get(big, "store", "cold")
	served := float64(big) * packCold
	serverCPU := medianCPU(coldStore, func(s sample) time.Duration { return s.storeCPU })
	cpuPerGB := "not measured"
	if serverCPU > 0 && served > 0 {
		cpuPerGB = secs(time.Duration(float64(serverCPU) / served * 1e9))
	}
	return fmt.Sprintf(`%s
### With the artifact store

Figures from the measurements of the artifact store above (%d hosts, cold deploy and redeploy).

- **One upload.** A cold deploy uploads its pack once (%s here) and sends about %s of SSH
  requests per host: **%s for 1,000 hosts**, %s on a 100 Mbit/s uplink, against %s (%s) for
  pushing %s to each. A redeploy uploads a pack of %s and about %s per host. The deploying
  machine's uplink stops being what a fleet's cold deploy waits for.
- **Hosts fetch in parallel, inside their network.** Every host downloads its pack from the store
  with a presigned URL (`+"`hosts_endpoint`"+` for a VPC endpoint or an in-network S3, so the downloads
  never cross the deploying machine's link), checks its SHA-256 and extracts it; `+"`--parallel`"+` hosts
  at a time, like every step.
- **What limits remain.**
  - *The store's throughput*: 1,000 downloads of the pack are %s for a cold deploy. Amazon S3
    serves one object to many clients in parallel (its documented request rate is at least 5,500
    GET requests per second per prefix); a self-hosted store is bounded by its network and disks
    (%s at 10 Gbit/s). The SeaweedFS server of this benchmark used %s of CPU per GB it served.
  - *Presigning per host*: each host's URL is signed on the deploying machine when that host's
    upload step starts (a local HMAC, no request to the store) and is valid for 15 minutes, so a
    host that waits its turn behind `+"`--parallel`"+` still gets a fresh one; what remains per host is
    its one download request to the store.
  - *Parallelism and SSH connections*: the store removes the bytes, not the steps: every host still
    has its SSH connection, held for the whole run, and the round trips of each step, at
    `+"`--parallel`"+` hosts at once. The connection pacing, bastion, file descriptor and memory items below
    hold unchanged, and `+"`--parallel`"+` should grow with the fleet (1,000 hosts at the default `+strconv.Itoa(cli.DefaultParallel)+` are `+strconv.Itoa(int(math.Ceil(1000/float64(cli.DefaultParallel))))+`
    waves of every step, downloads included).
  - *Rollout batches*: `+"`rollout: {strategy: rolling, batch: N}`"+` switches batch by batch after every
    host has downloaded and verified; a batch mode that connects and prepares one batch at a time
    (item 6 below) would also download batch by batch, since a pack stays in the store for the
    whole deploy.
- **Safety is unchanged**: every host checks the pack's SHA-256, then the same script as a push
  extracts it, stores the manifest and verifies the release against it before the switch; the lock,
  its fence and the barrier before the switch are the same steps. A host that cannot download is
  pushed its upload (with a warning), so a store outage slows a deploy down to a push, never
  breaks it.
- **For 1,000 hosts**: `+"`artifacts.store`"+` with `+"`hosts_endpoint`"+` in the hosts' network, `+"`--parallel`"+`
  raised with the fleet, curl or wget on every host (`+"`slipway plan`"+` names hosts that would be pushed
  instead), and a lifecycle rule on the prefix (delete after 30 days) to keep the bucket small: a
  pack is needed only while a deploy runs.
%s
`, storePlanBegin, big,
		size(packCold), size(sshPerHost("cold")), size(packCold+1000*sshPerHost("cold")), at(packCold+1000*sshPerHost("cold"), storeLink.bits),
		size(1000*pushPerHost), at(1000*pushPerHost, storeLink.bits), size(pushPerHost), size(packRedeploy), size(sshPerHost("redeploy")),
		size(1000*packCold), at(1000*packCold, 10e9), cpuPerGB, storePlanEnd)
}

// Markers of the store's two parts of scaling.md, so that `make
// bench-store` can rewrite them alone.
const (
	storeBegin     = "<!-- artifact store: written by make bench or make bench-store -->"
	storeEnd       = "<!-- artifact store: end -->"
	storePlanBegin = "<!-- artifact store, 1,000 hosts: written by make bench or make bench-store -->"
	storePlanEnd   = "<!-- artifact store, 1,000 hosts: end -->"
)

// spliceStore puts the store's measurements and its plan for 1,000 hosts
// into the document doc: in place of the ones there, or else the
// measurements before "## 1,000 hosts and more" and the plan before that
// part's "### What slipway needs for such fleets".
func spliceStore(doc, measured, plan string) string {
	doc = splice(doc, storeBegin, storeEnd, measured, "\n## 1,000 hosts and more")
	return splice(doc, storePlanBegin, storePlanEnd, plan, "\n### What slipway needs for such fleets")
}

// splice replaces the part of doc from begin to end with section, or
// inserts section before the line anchor starts (at the end if none).
func splice(doc, begin, end, section, anchor string) string {
	if i, j := strings.Index(doc, begin), strings.Index(doc, end); i >= 0 && j > i {
		return doc[:i] + strings.TrimSuffix(section, "\n") + doc[j+len(end):]
	}
	if i := strings.Index(doc, anchor); i >= 0 {
		return doc[:i+1] + section + doc[i:]
	}
	return doc + "\n" + section
}
