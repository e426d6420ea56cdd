package main

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

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
	hosts   []int
	reps    int
	samples map[string][]sample // by storeKey
	// toStore is, for each sample of the store, what slipway sent to the
	// store (the rest of its bytes went to the hosts over SSH).
	toStore map[string][]int64
}

func storeKey(hosts int, mode, workload string) string {
	return fmt.Sprintf("%d %s %s", hosts, mode, workload)
}

func newStoreResult(hosts []int, reps int) *storeResult {
	return &storeResult{hosts: hosts, reps: reps, samples: map[string][]sample{}, toStore: map[string][]int64{}}
}

func (r *storeResult) get(hosts int, mode, workload string) []sample {
	return r.samples[storeKey(hosts, mode, workload)]
}

// storeCompare measures push and store on b's fleet, reps times each: a
// cold deploy on emptied hosts, then a one-file change redeployed, the
// order of the two ways alternating. Each repetition uses a prefix of its
// own in the bucket, so its cold deploy uploads its pack (a prefix used
// before would hold it already, and the deploy would upload nothing).
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
	b.setUplink(newUplink(storeLink.bits))
	defer b.setUplink(nil)

	storeEndpoint := fmt.Sprintf("http://127.0.0.1:%d", toStore.port())
	for i := range reps {
		// gzip for the push, as compress: auto does for hosts reached
		// over a network (these are on loopback, behind the relays);
		// packs are gzipped too.
		tools := map[string]tool{
			"push": b.slipwayToolWith(pushDeployTo, "gzip"),
			"store": b.slipwayToolConfig(storeDeployTo, "store", "  compress: gzip\n", fmt.Sprintf(
				"artifacts:\n  store: s3://%s/bench-%d-%d\n  endpoint: %s\n  hosts_endpoint: %s\n  region: us-east-1\n",
				s3.Bucket, n, i+1, storeEndpoint, s3.Endpoint)),
		}
		deployTo := map[string]string{"push": pushDeployTo, "store": storeDeployTo}
		measure := func(workload string) {
			for _, mode := range inTurn(i, storeModes) {
				logf("%d hosts: %s %s over %s, %d/%d", n, mode, workload, storeLink.name, i+1, reps)
				before := toStore.snapshot()
				s := tools[mode].deploy()
				b.expectLive(mode, deployTo[mode], b.app.build)
				key := storeKey(n, mode, workload)
				res.samples[key] = append(res.samples[key], s)
				res.toStore[key] = append(res.toStore[key], toStore.snapshot().sub(before).up)
				logf("  %s", s)
			}
		}
		b.wipe(pushDeployTo)
		b.wipe(storeDeployTo)
		must(b.sc, os.RemoveAll(filepath.Join(b.home, ".cache")))
		measure("cold")
		b.app.change()
		measure("redeploy")
	}
}

// medianSent is the median of what slipway sent in all (SSH and store).
func medianSent(s []sample) float64 {
	return float64(median(field(s, func(s sample) int64 { return s.traffic.up })))
}

// Goals of issue 18 for the store: the client sends about one copy
// whatever the fleet size, and the larger fleet takes at most this many
// times the smaller one's time.
const (
	storeTimeGoal  = 1.5
	storeBytesGoal = 1.25 // "about one copy": sent at the larger fleet ÷ sent at the smaller
)

// storeMD is the report's section on the artifact store, for scaling.md.
func (r *results) storeMD() string {
	s := r.store
	if s == nil || len(s.samples) == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, `%s
## Through an artifact store (artifacts.store)

slipway pushing every host its upload over SSH, against slipway uploading each pack once to an
S3 store that the hosts download from (`+"`artifacts: {store: s3://…, endpoint: …, hosts_endpoint: …}`"+`),
on the same fleets, with the same app (%s files, %s) and the same one-file change. The deploying
machine's uplink is a %s that the benchmark's relays pace: it carries slipway's SSH connections
**and** its uploads to the store. The store is SeaweedFS %s (`+"`weed mini`"+`, the end-to-end tests'
S3 server) on loopback; the hosts download from it directly, not through that uplink, as
servers reach the object store of their data centre. Both ways gzip (`+"`compress: gzip`"+`, what
`+"`auto`"+` does for hosts over a network). Medians of %d runs; "client sent" is every byte slipway
sent (SSH and store), "to the store" the part that went to the store.

| hosts | workload | push: time | push: client sent | store: time | store: client sent | of which to the store | CPU: hosts, push | CPU: hosts, store |
|---|---|---|---|---|---|---|---|---|
`, storeBegin, count(r.app.files), size(float64(r.app.bytes)), storeLink.name, testutil.SeaweedFSVersion, s.reps)
	for _, w := range storeWorkloads {
		for _, n := range s.hosts {
			push, store := s.get(n, "push", w), s.get(n, "store", w)
			if len(push) == 0 || len(store) == 0 {
				continue
			}
			fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", n, workloadTitle[w],
				secs(medianWall(push)), size(medianSent(push)), secs(medianWall(store)), size(medianSent(store)),
				size(float64(median(s.toStore[storeKey(n, "store", w)]))),
				secs(median(field(push, func(s sample) time.Duration { return s.hostsCPU }))),
				secs(median(field(store, func(s sample) time.Duration { return s.hostsCPU }))))
		}
	}
	if len(s.hosts) >= 2 {
		small, big := s.hosts[0], s.hosts[len(s.hosts)-1]
		fmt.Fprintf(&b, "\n### %d hosts against %d\n\n| workload | way | time: %d ÷ %d hosts | client sent: %d ÷ %d hosts | goal (store) | met? |\n|---|---|---|---|---|---|\n",
			big, small, big, small, big, small)
		for _, w := range storeWorkloads {
			for _, mode := range storeModes {
				t0, t1 := medianWall(s.get(small, mode, w)), medianWall(s.get(big, mode, w))
				b0, b1 := medianSent(s.get(small, mode, w)), medianSent(s.get(big, mode, w))
				goal, ok := "", ""
				if mode == "store" {
					goal = fmt.Sprintf("time ≤ %.1f×, bytes ≈ 1× (≤ %.2f×)", storeTimeGoal, storeBytesGoal)
					ok = fmt.Sprintf("time %s, bytes %s", met(float64(t1) <= storeTimeGoal*float64(t0)), met(b1 <= storeBytesGoal*b0))
				}
				fmt.Fprintf(&b, "| %s | %s | %.2f× (%s → %s) | %.2f× (%s → %s) | %s | %s |\n", workloadTitle[w], storeModeTitle[mode],
					float64(t1)/float64(t0), secs(t0), secs(t1), b1/b0, size(b0), size(b1), goal, ok)
			}
		}
		b.WriteString(r.storeReading(small, big))
	}
	b.WriteString(r.storeThousand())
	b.WriteString("\nReproduce: `make bench` (the whole benchmark, this section included), or only this section:\n" +
		"`make bench-store` (as root; `BENCH_REPS=N` repetitions), which rewrites it in place in docs/scaling.md.\n")
	b.WriteString(storeEnd + "\n")
	return b.String()
}

// storeReading says what the two fleets' figures mean.
func (r *results) storeReading(small, big int) string {
	s := r.store
	cold := func(n int, mode string) []sample { return s.get(n, mode, "cold") }
	hostsShare := func(n int) float64 {
		st := cold(n, "store")
		return median(field(st, func(s sample) time.Duration { return s.hostsCPU })).Seconds() /
			(medianWall(st).Seconds() * float64(r.coreCount()))
	}
	return fmt.Sprintf(`
**Bytes.** With the store the deploying machine sends one copy of each pack (a cold deploy's
%s, a redeploy's few kB) and a few kB of SSH requests per host, whatever the number of hosts; a push
sends a copy per host (%s at %d hosts, cold). **Time.** Through the paced uplink, a push's cold
deploy grows with the hosts' copies on that link; the store's does not wait for the link, but for
the hosts: every host of this benchmark downloads, unpacks and verifies its copy on the same %s
cores (its hosts' CPU was %.0f%% of the machine's capacity during the %d-host store deploy), so
the %d-host time is mostly those hosts' own work queued on this machine, which real servers do
in parallel, each on its own CPU and disk. The redeploy is a few kB either way: its time is the
hosts' own steps (copying the live release, verifying, switching).
`, size(float64(median(s.toStore[storeKey(big, "store", "cold")]))), size(medianSent(cold(big, "push"))), big,
		cores(), 100*hostsShare(big), big, big)
}

// storeThousand is the plan for 1,000 hosts with the store, from the
// figures above.
func (r *results) storeThousand() string {
	s := r.store
	big := s.hosts[len(s.hosts)-1]
	packCold := float64(median(s.toStore[storeKey(big, "store", "cold")]))
	packRedeploy := float64(median(s.toStore[storeKey(big, "store", "redeploy")]))
	sshPerHost := func(w string) float64 {
		st := s.get(big, "store", w)
		return (medianSent(st) - float64(median(s.toStore[storeKey(big, "store", w)]))) / float64(big)
	}
	pushPerHost := medianSent(s.get(big, "push", "cold")) / float64(big)
	at := func(bytes, bits float64) string { return secs(time.Duration(bytes * 8 / bits * float64(time.Second))) }
	return fmt.Sprintf(`
### 1,000 hosts with the store

- **The deploying machine's bytes**: a cold deploy uploads its pack once (%s here) and sends about
  %s of SSH requests per host: **%s for 1,000 hosts**, %s on a 100 Mbit/s uplink, against %s
  (%s) for pushing %s to each. A redeploy uploads a pack of %s and about %s per host.
- **The store's bytes**: 1,000 downloads of the pack (%s for a cold deploy), served by the store
  in the hosts' network: S3 serves them in parallel, and one object read by many clients is what
  it is built for. Hosts download with `+"`--parallel`"+` at a time, like every step.
- **What stays per host**: the same steps as a push (create, link, hooks, sync, switch, record),
  plus one request to download (the pack's URL is presigned per host, on this machine, without a
  request to the store). The round trips and the connections of the plan above for 1,000 hosts are
  unchanged; only the upload leaves the deploying machine's uplink.
- **Safety is unchanged**: every host checks the pack's SHA-256, then the same script as a push
  extracts it, stores the manifest and verifies the release against it before the switch; the lock,
  its fence and the barrier before the switch are the same steps. A host that cannot download is
  pushed its upload (with a warning), so a store outage slows a deploy down to a push, never
  breaks it.
- **For 1,000 hosts**: `+"`artifacts.store`"+` (with `+"`hosts_endpoint`"+` for a VPC endpoint, so downloads stay
  in the network), `+"`--parallel`"+` raised with the fleet (every host downloads at once from S3; the
  deploying machine only sends requests), and curl or wget on every host (`+"`slipway plan`"+` names
  hosts that would be pushed instead). A lifecycle rule on the prefix (delete after 30 days)
  keeps the bucket small: a pack is needed only while a deploy runs.
`, size(packCold), size(sshPerHost("cold")), size(packCold+1000*sshPerHost("cold")), at(packCold+1000*sshPerHost("cold"), storeLink.bits),
		size(1000*pushPerHost), at(1000*pushPerHost, storeLink.bits), size(pushPerHost), size(packRedeploy), size(sshPerHost("redeploy")),
		size(1000*packCold))
}

// Markers of the store's section in scaling.md, so that `make bench-store`
// can rewrite it alone.
const (
	storeBegin = "<!-- artifact store: written by make bench or make bench-store -->"
	storeEnd   = "<!-- artifact store: end -->"
)

// spliceStore replaces the store's section of the document doc (or adds it
// before the 1,000-host plan, where it has none).
func spliceStore(doc, section string) string {
	if i, j := strings.Index(doc, storeBegin), strings.Index(doc, storeEnd); i >= 0 && j > i {
		return doc[:i] + strings.TrimSuffix(section, "\n") + doc[j+len(storeEnd):]
	}
	if i := strings.Index(doc, "\n## 1,000 hosts and more"); i >= 0 {
		return doc[:i+1] + section + doc[i:]
	}
	return doc + "\n" + section
}
