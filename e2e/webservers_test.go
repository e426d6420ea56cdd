package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/slipway-deploy/slipway/internal/testutil"
)

// The proof of zerodowntime_test.go, for every web server slipway
// documents (nginx, Apache httpd with php-fpm or mod_php, Caddy), each
// configured by its example in examples/ and running on the host, with
// OPcache at its strictest: opcache.validate_timestamps=0, so PHP never
// looks at a file again once it has compiled it, and nothing but the path
// it is told can bring a new release.

// strictOPcache is OPcache as fast production sites run it: files are never
// checked again once compiled. file_update_protection=0 caches files
// however new they are: the test's releases are seconds old, and with the
// default (2 s) PHP would compile many of them afresh on every request,
// which hides what its cache does.
var strictOPcache = []string{"opcache.validate_timestamps=0", "opcache.file_update_protection=0"}

// includesStatus is public/opcache.php of the test app: the OPcache
// settings in force and the state of the cache, and whether src/a.php of
// the release the request runs in is cached.
const includesStatus = `<?php
$status = opcache_get_status(false);
$memory = $status['memory_usage'] ?? [];
$stats = $status['opcache_statistics'] ?? [];
echo json_encode([
    'opcache' => $status !== false && $status['opcache_enabled'],
    'validate_timestamps' => ini_get('opcache.validate_timestamps'),
    'file_update_protection' => ini_get('opcache.file_update_protection'),
    'realpath_cache_ttl' => (int) ini_get('realpath_cache_ttl'),
    'a_cached' => opcache_is_script_cached(__DIR__ . '/../src/a.php'),
    'full' => $status['cache_full'] ?? false,
    'restart_pending' => $status['restart_pending'] ?? false,
    'used' => $memory['used_memory'] ?? 0,
    'free' => $memory['free_memory'] ?? 0,
    'wasted' => $memory['wasted_memory'] ?? 0,
    'scripts' => $stats['num_cached_scripts'] ?? 0,
    'oom_restarts' => $stats['oom_restarts'] ?? 0,
    'hash_restarts' => $stats['hash_restarts'] ?? 0,
    'manual_restarts' => $stats['manual_restarts'] ?? 0,
]);
`

// opcacheStatus is what opcache.php answers.
type opcacheStatus struct {
	OPcache              bool   `json:"opcache"`
	ValidateTimestamps   string `json:"validate_timestamps"`
	FileUpdateProtection string `json:"file_update_protection"`
	RealpathCacheTTL     int    `json:"realpath_cache_ttl"`
	ACached              bool   `json:"a_cached"`
	Full                 bool   `json:"full"`
	RestartPending       bool   `json:"restart_pending"`
	Used                 int64  `json:"used"`
	Free                 int64  `json:"free"`
	Wasted               int64  `json:"wasted"`
	Scripts              int    `json:"scripts"`
	OOMRestarts          int    `json:"oom_restarts"`
	HashRestarts         int    `json:"hash_restarts"`
	ManualRestarts       int    `json:"manual_restarts"`
}

// writeWebApp is writeIncludesApp with public/opcache.php.
func writeWebApp(p *project, version string) {
	p.t.Helper()
	writeIncludesApp(p, version)
	p.write("app/public/opcache.php", includesStatus)
}

// readOPcache fetches opcache.php from web.
func readOPcache(t *testing.T, web *testutil.Web) opcacheStatus {
	t.Helper()
	status, body, err := get(&http.Client{Timeout: 30 * time.Second}, web.URL+"/opcache.php")
	var s opcacheStatus
	if err == nil && status == http.StatusOK {
		err = json.Unmarshal([]byte(body), &s)
	}
	if err != nil || status != http.StatusOK {
		t.Fatalf("GET %s/opcache.php: %d %v %.300q", web.URL, status, err, body)
	}
	return s
}

// checkStrictOPcache fails the test unless PHP behind web caches as
// strictOPcache says, with the realpath cache at its default TTL.
func checkStrictOPcache(t *testing.T, name string, web *testutil.Web) {
	t.Helper()
	s := readOPcache(t, web)
	if !s.OPcache || s.ValidateTimestamps != "0" || s.FileUpdateProtection != "0" || s.RealpathCacheTTL != 120 {
		t.Fatalf("%s: PHP does not cache as the test needs (OPcache on, validate_timestamps=0, file_update_protection=0, realpath_cache_ttl 120): %+v", name, s)
	}
}

// servedStack is one web server of a load test: its load, its slow
// request, and what the requests sent after each deploy or rollback saw.
type servedStack struct {
	name string
	web  *testutil.Web
	load *loadGenerator
	slow *slowRequest

	slowWant string // what the slow request must answer: the release live when it started, twice
	slowGot  slowResult
	slowDone bool
	// After each command, freshChecks new requests: how many saw the
	// release made live (fresh), an older one (stale) or failed.
	fresh, stale, failed int
	samples              []string // the first few stale or failed ones
	minDuring            int64    // requests completed during the quietest command
	switchesDuringSlow   int
}

// loadRun says what serveUnderLoad does.
type loadRun struct {
	first        int  // the version live when it starts (v1 when 0)
	deploys      int  // of the versions after it
	rollbackEach int  // a rollback after every rollbackEach-th deploy; 0 for none
	keepReleases int  // the project's keep_releases
	loadWorkers  int  // per stack
	slow         bool // each stack has a slow request in flight from before the first command
	freshChecks  int  // new requests per stack after each command
	// app writes each version of the app; writeWebApp if nil.
	app func(p *project, version string)
	// afterCommand, if set, runs after each command (described as "the
	// deploy of v3") with what slipway printed, before the freshness
	// checks.
	afterCommand func(command string, res result)
}

// serveUnderLoad deploys and rolls back p while every stack serves h's
// deploy directory under load, with a slow request in flight on each if
// run.slow. Version run.first must be live, and every stack serving it.
// It returns how long the commands took.
func serveUnderLoad(t *testing.T, p *project, h *testutil.Host, stacks []*servedStack, run loadRun) time.Duration {
	t.Helper()
	first := max(run.first, 1)
	firstVersion := fmt.Sprintf("v%d", first)
	var known versionSet
	versionOf := map[string]string{live(t, h): firstVersion}
	known.add(firstVersion)
	for _, s := range stacks {
		s.load = startLoad(t, s.web.URL+"/", &known, run.loadWorkers, 500_000, 150*time.Second)
		s.minDuring = 1 << 62
		if run.slow {
			s.slow = startSlowRequest(t, s.web)
			s.slowWant = firstVersion + "," + firstVersion
		} else {
			s.slowDone = true
		}
	}
	fresh := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	waitSlow := func(wait bool) (done bool) {
		done = true
		for _, s := range stacks {
			switch {
			case s.slowDone:
			case wait:
				s.slowGot, s.slowDone = <-s.slow.result, true
			default:
				select {
				case s.slowGot = <-s.slow.result:
					s.slowDone = true
				default:
					done = false
				}
			}
		}
		return done
	}
	// When each command switched `current`: the rename sets the deploy
	// directory's modification time, and nothing later in a deploy or
	// rollback changes that directory (a reset of OPcache may make the
	// command itself last until after the slow request).
	var switches []time.Time
	releasesDuringSlow := 0
	var last result
	command := func(args ...string) {
		t.Helper()
		before := make([]int64, len(stacks))
		for i, s := range stacks {
			before[i] = s.load.completed()
		}
		last = p.mustRun(args...)
		info, err := os.Stat(h.Path(deployTo))
		if err != nil {
			t.Fatal(err)
		}
		switches = append(switches, info.ModTime())
		for i, s := range stacks {
			s.minDuring = min(s.minDuring, s.load.completed()-before[i])
		}
	}
	// checkFresh sends each stack new requests, which must see the live
	// release.
	checkFresh := func(after string) {
		t.Helper()
		if run.afterCommand != nil {
			run.afterCommand(after, last)
		}
		want := versionOf[live(t, h)]
		for _, s := range stacks {
			for range run.freshChecks {
				status, body, err := get(fresh, s.web.URL+"/")
				v, consistent := includedVersion(body)
				switch {
				case err == nil && status == http.StatusOK && consistent && v == want:
					s.fresh++
					continue
				case err == nil && status == http.StatusOK && consistent && known.has(v):
					s.stale++
				default:
					s.failed++
				}
				if len(s.samples) < 5 {
					s.samples = append(s.samples, fmt.Sprintf("after %s (live: %s): %d %.100q %v", after, want, status, body, err))
				}
			}
		}
	}
	start := time.Now()
	for i := first + 1; i <= first+run.deploys; i++ {
		// The slow requests' release must outlive them: cleanup keeps
		// keepReleases releases, so at most keepReleases-2 new ones may
		// come while they run.
		if !waitSlow(releasesDuringSlow >= run.keepReleases-2) {
			releasesDuringSlow++
		}
		version := fmt.Sprintf("v%d", i)
		known.add(version)
		if run.app != nil {
			run.app(p, version)
		} else {
			writeWebApp(p, version)
		}
		command("deploy", "production")
		id := live(t, h)
		if _, reused := versionOf[id]; reused {
			t.Fatalf("deploy of %s made release %s live again, want a new release", version, id)
		}
		versionOf[id] = version
		checkFresh("the deploy of " + version)
		if run.rollbackEach > 0 && (i-first)%run.rollbackEach == 0 {
			from := live(t, h)
			command("rollback", "production")
			if live(t, h) == from {
				t.Fatalf("rollback left %s live", from)
			}
			checkFresh("the rollback from " + version)
		}
	}
	elapsed := time.Since(start)
	waitSlow(true)
	for _, s := range stacks {
		s.load.stop()
		if s.slow == nil {
			continue
		}
		// Switches certainly between the slow request's two includes.
		for _, at := range switches {
			if at.After(s.slow.running) && at.Before(s.slow.sent.Add(slowRequestTime)) {
				s.switchesDuringSlow++
			}
		}
	}
	return elapsed
}

// report is one line of what a stack saw.
func (s *servedStack) report() string {
	l := s.load
	line := fmt.Sprintf("%s: %d requests served, %d connection errors, %d non-200, %d mixed, %d unknown versions; after the commands: %d fresh, %d stale, %d failed (at least %d requests during each command)",
		s.name, l.served.Load(), l.errors.Load(), l.non200.Load(), l.mixed.Load(), l.unknown.Load(), s.fresh, s.stale, s.failed, s.minDuring)
	if s.slow != nil {
		line += fmt.Sprintf("; slow request: %d %q %v, across %d switches", s.slowGot.status, s.slowGot.body, s.slowGot.err, s.switchesDuringSlow)
	}
	return line
}

// checkZeroDowntime fails the test unless s served every request whole,
// in one release, the live one after each command, and its slow request
// in its own release across minSwitches switches at least.
func (s *servedStack) checkZeroDowntime(t *testing.T, minPerCommand int64, minSwitches int) {
	t.Helper()
	l := s.load
	if bad := l.errors.Load() + l.non200.Load() + l.mixed.Load() + l.unknown.Load(); bad > 0 {
		t.Errorf("%s: %d requests failed or saw a wrong release under load; first ones:\n%s", s.name, bad, strings.Join(l.problems, "\n"))
	}
	if s.stale+s.failed > 0 {
		t.Errorf("%s: %d requests sent after a command saw an older release, %d failed; first ones:\n%s", s.name, s.stale, s.failed, strings.Join(s.samples, "\n"))
	}
	if s.minDuring < minPerCommand {
		t.Errorf("%s: the load did not overlap the commands: %d requests during the quietest one, want at least %d", s.name, s.minDuring, minPerCommand)
	}
	if s.slow != nil {
		if s.slowGot.err != nil || s.slowGot.status != http.StatusOK || s.slowGot.body != s.slowWant {
			t.Errorf("%s: the request that started before the deploys: %d %q %v, want %s (its own release for both includes)", s.name, s.slowGot.status, s.slowGot.body, s.slowGot.err, s.slowWant)
		}
		if s.switchesDuringSlow < minSwitches {
			t.Errorf("%s: only %d switches happened while the slow request ran; want at least %d", s.name, s.switchesDuringSlow, minSwitches)
		}
	}
	if err := s.web.Running(); err != nil {
		t.Errorf("%s did not serve the whole test: %v", s.name, err)
	}
}

// startStacks starts every server in the variant paths on h, with PHP at
// strictOPcache, and checks that PHP caches as the test needs.
func startStacks(t *testing.T, h *testutil.Host, paths testutil.Paths) []*servedStack {
	t.Helper()
	var stacks []*servedStack
	for _, server := range testutil.Servers {
		web := testutil.StartStack(t, testutil.StackOptions{Server: server, Paths: paths, Host: h, DeployTo: deployTo, PHP: strictOPcache})
		name := fmt.Sprintf("%s (%s)", server, paths)
		checkStrictOPcache(t, name, web)
		stacks = append(stacks, &servedStack{name: name, web: web})
	}
	return stacks
}

// TestWebServersZeroDowntimeUnderLoad runs 10 deploys and 2 rollbacks over
// SSH while nginx, Apache with php-fpm, Apache with mod_php and Caddy, each
// configured by its example and with OPcache never revalidating files,
// serve the host's deploy directory under load. On every server, every
// request must succeed and see one whole release, every request sent after
// a command returns must see the release it made live, and a request that
// started before two deploys must finish in the release it started in.
// Nothing is ever reloaded.
func TestWebServersZeroDowntimeUnderLoad(t *testing.T) {
	t.Parallel()
	const keepReleases = 10
	p := newProject(t, 1, testutil.Options{})
	h := p.fleet.Hosts[0]
	p.config(fmt.Sprintf("keep_releases: %d\n", keepReleases))
	writeWebApp(p, "v1")
	p.mustRun("deploy", "production")
	stacks := startStacks(t, h, testutil.ResolvedPaths)
	elapsed := serveUnderLoad(t, p, h, stacks, loadRun{
		deploys: 10, rollbackEach: 4, keepReleases: keepReleases,
		loadWorkers: 4, slow: true, freshChecks: 4,
	})
	t.Logf("10 deploys + 2 rollbacks in %s", elapsed.Round(time.Millisecond))
	for _, s := range stacks {
		t.Log(s.report())
		s.checkZeroDowntime(t, 3, 2)
		if st := readOPcache(t, s.web); !st.ACached || st.OOMRestarts+st.HashRestarts+st.ManualRestarts > 0 {
			t.Errorf("%s: the live release is not served from OPcache, or OPcache restarted: %+v", s.name, st)
		}
	}
}

// TestWebServersWithoutResolvedPathsServeStale grounds the examples: the
// same servers, configured as is common (nginx with $document_root, Apache
// without the RewriteMap, Caddy without resolve_root_symlink), go on
// serving the first release after deploys, under the checks that
// TestWebServersZeroDowntimeUnderLoad passes. With validate_timestamps=0
// this is certain, not a race: once PHP has compiled
// current/public/index.php, OPcache hands out that script for the path
// whatever `current` points at.
func TestWebServersWithoutResolvedPathsServeStale(t *testing.T) {
	t.Parallel()
	p := newProject(t, 1, testutil.Options{})
	h := p.fleet.Hosts[0]
	p.config("keep_releases: 5\n")
	writeWebApp(p, "v1")
	p.mustRun("deploy", "production")
	stacks := startStacks(t, h, testutil.LinkPaths)
	serveUnderLoad(t, p, h, stacks, loadRun{deploys: 3, keepReleases: 5, loadWorkers: 2, freshChecks: 4})
	for _, s := range stacks {
		t.Log(s.report())
		if s.stale == 0 {
			t.Errorf("%s served no stale release after 3 deploys: PHP no longer caches what `current` resolved to, and the advice of the examples needs another look", s.name)
		}
		if s.failed > 0 || s.load.errors.Load()+s.load.non200.Load() > 0 {
			t.Errorf("%s failed requests: %d after the commands, %d under load; first ones:\n%s\n%s", s.name, s.failed,
				s.load.errors.Load()+s.load.non200.Load(), strings.Join(s.samples, "\n"), strings.Join(s.load.problems, "\n"))
		}
	}
}
