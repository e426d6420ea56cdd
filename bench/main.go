// Command bench measures slipway against Capistrano 3 on real OpenSSH
// servers on loopback, the fleet of the end-to-end tests, and writes
// docs/benchmarks.md and docs/scaling.md. Run it as root with `make bench`;
// BENCH_QUICK=1 makes a smoke run (one repetition, a few hosts) that prints
// its report instead of writing the docs. BENCH_SLIPWAY=/path/to/slipway
// measures that binary instead of a build of this checkout.
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
}

func planFromEnv() (plan, error) {
	p := plan{
		reps:         3,
		compareHosts: 10,
		goalHosts:    50,
		scaleReps:    1,
		extraHosts:   []int{100},
		app:          appSpec{Files: 3000, Bytes: 33e6, Seed: 1},
		// The same bytes in more files: what a file costs, apart from
		// its bytes (which the fleet sizes already vary).
		bigApp:  appSpec{Files: 10000, Bytes: 33e6, Seed: 2},
		docsDir: "docs",
	}
	if quick, _ := strconv.ParseBool(os.Getenv("BENCH_QUICK")); quick {
		p.quick = true
		p.reps, p.compareHosts, p.goalHosts, p.extraHosts = 1, 3, 6, []int{9}
		p.bigApp.Files = 6000
		p.docsDir = os.Getenv("BENCH_DOCS")
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
			if f, ok := r.(fatal); ok {
				fmt.Fprintln(os.Stderr, "bench: FAILED:", f.msg)
			} else {
				fmt.Fprintf(os.Stderr, "bench: panic: %v\n%s", r, debug.Stack())
			}
			code = 1
		}
	}()

	started := time.Now()
	root := newScope("bench")
	requireTools(root)
	res := &results{plan: p, started: started.UTC(), machine: describeMachine()}
	res.slipwayBin = os.Getenv("BENCH_SLIPWAY")
	if res.slipwayBin == "" {
		res.slipwayBin = testutil.Slipway(root)
	}
	res.slipwayVersion = slipwayVersion(res.slipwayBin, os.Getenv("BENCH_SLIPWAY") != "")
	res.capVersion = capistranoVersion()
	logf("measuring %s against %s", res.slipwayVersion, res.capVersion)

	logf("generating the app: %d files, %s", p.app.Files, size(float64(p.app.Bytes)))
	app := newAppRepo(root, "app", p.app)
	res.app = app.info()

	// Waiting for a busy machine to quiet down costs 5 minutes at most.
	quiet := &quietWait{left: 5 * time.Minute}

	if n, _ := strconv.Atoi(os.Getenv("BENCH_PROBE")); n > 0 {
		probe(n, app, res.slipwayBin, quiet)
		return 0
	}

	// Slipway and Capistrano side by side, on the same hosts.
	func() {
		b := newBench(p.compareHosts, app, res.slipwayBin, quiet)
		defer b.close()
		res.compare = b.run(p.reps, b.slipwayTool(slipwayDeployTo), b.capistranoTool(capDeployTo), b.floorTool())
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
			b := newBench(n, app, res.slipwayBin, quiet)
			defer b.close()
			res.scale = append(res.scale, b.run(reps, b.slipwayTool(slipwayDeployTo)))
		}()
	}
	// Slipway alone, a bigger app on the smallest fleet.
	func() {
		logf("generating the bigger app: %d files, %s", p.bigApp.Files, size(float64(p.bigApp.Bytes)))
		big := newAppRepo(root, "bigapp", p.bigApp)
		res.bigApp = big.info()
		b := newBench(p.compareHosts, big, res.slipwayBin, quiet)
		defer b.close()
		res.bigScale = b.run(p.scaleReps, b.slipwayTool(slipwayDeployTo))
	}()
	root.close()
	res.took = time.Since(started)

	if err := res.write(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	if root.Failed() {
		return 1
	}
	return 0
}

func requireTools(s *scope) {
	if os.Geteuid() != 0 {
		s.Fatalf("run as root: the fleet creates a user, mount namespaces and sshd servers (sudo make bench)")
	}
	for _, tool := range []string{"git", "cap", "ssh-keygen", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			hint := map[string]string{"cap": "apt-get install capistrano", "git": "apt-get install git",
				"ssh-keygen": "apt-get install openssh-client", "go": "install Go 1.26"}[tool]
			s.Fatalf("%s is not on PATH: %s", tool, hint)
		}
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: %s %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}
