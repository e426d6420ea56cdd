// Command bench measures slipway against Capistrano 3 on real OpenSSH
// servers on loopback, the fleet of the end-to-end tests, and writes
// docs/benchmarks.md and docs/scaling.md. Run it as root with `make bench`;
// `make bench-quick` (BENCH_QUICK=1) makes a smoke run (quickPlan: one
// repetition, the smallest fleets, slipway alone if Capistrano is not
// installed) that prints its report instead of writing the docs, and
// TestQuickRun makes the same run in `go test ./...`.
// BENCH_SLIPWAY=/path/to/slipway measures that binary instead of a build of
// this checkout. Issue 15's part (wan.go) runs first: BENCH_RTT=50ms sets
// its round-trip time (measured beside none), BENCH_FS=xfs|ext4|shared its
// hosts' file systems, and BENCH_ONLY=wan runs it alone (make bench-wan).
package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/slipway-deploy/slipway/internal/testutil"
)

// plan is what one benchmark run measures.
type plan struct {
	quick bool
	// reps repeats every figure of the goals: the comparison with
	// Capistrano and slipway on goalHosts.
	reps         int
	compareHosts int // the fleet slipway and Capistrano share
	goalHosts    int // the fleet the goals hold slipway to, against compareHosts
	// scaleReps repeats the figures that only docs/scaling.md shows:
	// slipway on extraHosts, and bigApp on compareHosts.
	scaleReps   int
	extraHosts  []int
	app, bigApp appSpec
	docsDir     string // where the docs go; "" prints them
	// storeHosts are the fleets on which push and the artifact store are
	// compared (reps times each), through a paced uplink.
	storeHosts []int
	// The WAN benchmark of issue 15: slipway and Capistrano on wanHosts,
	// every host on a file system of its own (fileSystem: "xfs", "ext4",
	// or "" for one shared directory tree), at each of rtts; then slipway
	// alone on wanScaleHosts (0: none) at the last of rtts.
	wanHosts      int
	wanScaleHosts int
	rtts          []time.Duration
	fileSystem    string
	// only is "store" to measure the artifact store alone (make
	// bench-store), which rewrites only its section of scaling.md, or
	// "wan" for the WAN benchmark alone (make bench-wan), which rewrites
	// only its section of benchmarks.md.
	only string
	// quietWait is how long the whole run may wait, before its commands,
	// for other programs to quiet down.
	quietWait time.Duration
}

// fullPlan is what `make bench` measures and writes to docs/.
func fullPlan() plan {
	return plan{
		reps:         3,
		compareHosts: 10,
		goalHosts:    50,
		scaleReps:    1,
		extraHosts:   []int{100},
		app:          appSpec{Files: 3000, Bytes: 33e6, Seed: 1},
		// The same bytes in more files: what a file costs, apart from
		// its bytes (which the fleet sizes already vary).
		bigApp:     appSpec{Files: 10000, Bytes: 33e6, Seed: 2},
		docsDir:    "docs",
		quietWait:  5 * time.Minute,
		storeHosts: []int{10, 50},
		// Issue 15's goals: 10 hosts at no added delay and at 50 ms, 50
		// hosts at 50 ms, each host on an XFS of its own.
		wanHosts:      10,
		wanScaleHosts: 50,
		rtts:          []time.Duration{0, 50 * time.Millisecond},
		fileSystem:    "xfs",
	}
}

// quickPlan is the smoke run (`make bench-quick`, and TestQuickRun in
// `go test ./...`): every part of the full run, on the smallest fleets and
// app that still have a fleet skew, a second fleet size to fit a line
// through and a delta to send. Capistrano is measured if it is installed.
// It does not wait for a quiet machine: its figures are not the
// benchmark's, only proof that the benchmark still runs.
func quickPlan() plan {
	return plan{
		quick:        true,
		reps:         1,
		compareHosts: 2,
		goalHosts:    3,
		scaleReps:    1,
		app:          appSpec{Files: 200, Bytes: 1e6, Seed: 1},
		bigApp:       appSpec{Files: 600, Bytes: 1e6, Seed: 2},
		storeHosts:   []int{2, 3},
		// A small delay: the delayed relays and the XFS hosts are
		// exercised, without the run taking much longer.
		wanHosts:      2,
		wanScaleHosts: 3,
		rtts:          []time.Duration{0, 10 * time.Millisecond},
		fileSystem:    "xfs",
	}
}

func planFromEnv() (plan, error) {
	p := fullPlan()
	if quick, _ := strconv.ParseBool(os.Getenv("BENCH_QUICK")); quick {
		p = quickPlan()
		p.docsDir = os.Getenv("BENCH_DOCS")
	}
	switch only := os.Getenv("BENCH_ONLY"); only {
	case "":
	case "store", "wan":
		p.only = only
	default:
		return p, fmt.Errorf("BENCH_ONLY=%q: want store or wan (or nothing, for the whole benchmark)", only)
	}
	if s := os.Getenv("BENCH_RTT"); s != "" {
		rtt, err := time.ParseDuration(s)
		if err != nil || rtt < 0 {
			return p, fmt.Errorf("BENCH_RTT=%q: want a round-trip time such as 50ms", s)
		}
		p.rtts = []time.Duration{0}
		if rtt > 0 {
			p.rtts = append(p.rtts, rtt)
		}
	}
	switch fs := os.Getenv("BENCH_FS"); fs {
	case "":
	case "xfs", "ext4":
		p.fileSystem = fs
	case "shared":
		p.fileSystem = ""
	default:
		return p, fmt.Errorf("BENCH_FS=%q: want xfs, ext4 or shared (every host's files in one directory tree of this machine)", fs)
	}
	for _, setting := range []struct {
		name string
		to   *int
	}{{"BENCH_REPS", &p.reps}, {"BENCH_SCALE_REPS", &p.scaleReps}} {
		if s := os.Getenv(setting.name); s != "" {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				return p, fmt.Errorf("%s=%q: want a positive number", setting.name, s)
			}
			*setting.to = n
		}
	}
	return p, nil
}

// exiting is held by whoever is ending the process: the signal handler
// keeps it until its cleanup is done, so main cannot exit halfway through.
var exiting sync.Mutex

func main() {
	code := run()
	exiting.Lock()
	os.Exit(code)
}

func run() (code int) {
	p, err := planFromEnv()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 2
	}
	// Ctrl-C or a kill: stop the child being measured, then every fleet,
	// relay and directory, and only then exit.
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		sig := <-signals
		exiting.Lock()
		fmt.Fprintf(os.Stderr, "\nbench: %v: stopping and cleaning up\n", sig)
		killCurrentChild()
		closeAllScopes()
		os.Exit(130)
	}()
	defer closeAllScopes()
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(os.Stderr, "bench: panic: %v\n%s", r, debug.Stack())
			code = 1
		}
	}()

	if n, _ := strconv.Atoi(os.Getenv("BENCH_PROBE")); n > 0 {
		err = probe(p, n)
	} else {
		var res *results
		res, err = measureAll(p)
		// A run that failed on the way has results not to trust: the
		// docs keep the figures of the last run that did not fail.
		if res != nil && err == nil {
			err = res.write()
		} else if res != nil {
			logf("the docs were left as they were: the run failed")
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench: FAILED:", err)
		return 1
	}
	return 0
}

// measureAll runs the plan: slipway against Capistrano on compareHosts,
// the ways of compressing, slipway alone on bigger fleets and a bigger
// app. It returns the results, and an error when the run stopped (no
// results) or something failed on the way (results, but not to trust).
func measureAll(p plan) (res *results, err error) {
	defer catchFatal(&err)
	defer closeAllScopes() // also a fleet's whose start failed
	started := time.Now()
	root := newScope("bench")
	res, app := prepare(root, p)
	quiet := &quietWait{left: p.quietWait}
	switch p.only {
	case "store":
		res.store = measureStore(root, p, res, app, quiet)
	case "wan":
		res.wan = measureWAN(p, res, app, quiet)
	}
	if p.only != "" {
		root.close()
		res.took = time.Since(started)
		return res, root.Err()
	}

	// Issue 15's goals first: per-host file systems, with and without
	// latency.
	res.wan = measureWAN(p, res, app, quiet)

	// Slipway and Capistrano side by side, on the same hosts.
	func() {
		b := newBench(p.compareHosts, app, res.slipwayBin, quiet, "")
		defer b.close()
		tools := []tool{b.slipwayTool(slipwayDeployTo)}
		if res.withCapistrano {
			tools = append(tools, b.capistranoTool(capDeployTo))
		}
		res.compare = b.run(p.reps, append(tools, b.floorTool())...)
		res.scale = append(res.scale, res.compare.slipwayOnly())
		res.compression = b.compression(p.reps)
	}()
	// Slipway alone, on bigger fleets.
	for _, n := range append([]int{p.goalHosts}, p.extraHosts...) {
		reps := p.scaleReps
		if n == p.goalHosts {
			reps = p.reps
		}
		func() {
			b := newBench(n, app, res.slipwayBin, quiet, "")
			defer b.close()
			res.scale = append(res.scale, b.run(reps, b.slipwayTool(slipwayDeployTo)))
		}()
	}
	// Push against the artifact store, through a paced uplink.
	res.store = measureStore(root, p, res, app, quiet)
	// Slipway alone, a bigger app on the smallest fleet.
	func() {
		logf("generating the bigger app: %d files, %s", p.bigApp.Files, size(float64(p.bigApp.Bytes)))
		big := newAppRepo(root, "bigapp", p.bigApp)
		res.bigApp = big.info()
		b := newBench(p.compareHosts, big, res.slipwayBin, quiet, "")
		defer b.close()
		res.bigScale = b.run(p.scaleReps, b.slipwayTool(slipwayDeployTo))
	}()
	root.close()
	res.took = time.Since(started)
	return res, root.Err()
}

// measureStore compares push and the artifact store on each of
// p.storeHosts, with one S3 server for all.
func measureStore(root *scope, p plan, res *results, app *appRepo, quiet *quietWait) *storeResult {
	s3 := testutil.StartS3(root)
	out := newStoreResult(p.storeHosts, p.reps, p.fileSystem)
	for _, n := range p.storeHosts {
		func() {
			b := newBench(n, app, res.slipwayBin, quiet, p.fileSystem)
			defer b.close()
			b.storeCompare(s3, p.reps, out)
		}()
	}
	return out
}

// prepare checks the tools, builds slipway (unless BENCH_SLIPWAY names a
// binary) and generates the app, in root.
func prepare(root *scope, p plan) (*results, *appRepo) {
	res := &results{plan: p, started: time.Now().UTC(), machine: describeMachine()}
	res.withCapistrano = requireTools(root, p)
	res.slipwayBin = os.Getenv("BENCH_SLIPWAY")
	if res.slipwayBin == "" {
		res.slipwayBin = testutil.Slipway(root)
	}
	res.slipwayVersion = slipwayVersion(res.slipwayBin, os.Getenv("BENCH_SLIPWAY") != "")
	res.capVersion = "none (cap is not installed; bench/install-deps.sh installs it)"
	if res.withCapistrano {
		res.capVersion = capistranoVersion()
	}
	logf("measuring %s against %s", res.slipwayVersion, res.capVersion)

	logf("generating the app: %d files, %s", p.app.Files, size(float64(p.app.Bytes)))
	app := newAppRepo(root, "app", p.app)
	res.app = app.info()
	return res, app
}

// requireTools stops the run unless what it needs is installed, and says
// whether Capistrano is: the full run needs it, the quick run measures
// slipway alone without it.
func requireTools(s *scope, p plan) (capistrano bool) {
	if os.Geteuid() != 0 {
		s.Skipf("run as root: the fleet creates a user, mount namespaces and sshd servers (sudo make bench)")
	}
	for _, tool := range []struct{ name, hint string }{
		{"git", "apt-get install git"}, {"ssh-keygen", "apt-get install openssh-client"}, {"go", "install Go 1.26"},
	} {
		if _, err := exec.LookPath(tool.name); err != nil {
			s.Skipf("%s is not on PATH: %s", tool.name, tool.hint)
		}
	}
	if _, err := exec.LookPath("cap"); err == nil {
		return true
	}
	if !p.quick && p.only != "store" {
		s.Skipf("cap is not on PATH: apt-get install capistrano")
	}
	logf("Capistrano is not installed (cap is not on PATH): measuring slipway alone")
	return false
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: %s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
