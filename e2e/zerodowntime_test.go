package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slipway-deploy/slipway/internal/testutil"
)

// The proof of zero downtime: real nginx and php-fpm (OPcache on, as in
// production) serve <deploy_to>/current/public of a host while slipway
// deploys and rolls back over SSH, and not one request may fail, see a
// mix of two releases, or see a release other than the live one once a
// deploy has returned.

// includesIndex is public/index.php of the test app: three files of the
// release, included one after the other with pauses between them, so that
// switches land in the middle of requests. Each returns the version; the
// page prints what each include saw ("v7,v7,v7"). X-Worker names the
// php-fpm worker, so a test can tell when it has reached all of them.
const includesIndex = `<?php
header('X-Worker: ' . getmypid());
$seen = [include __DIR__ . '/../src/a.php'];
usleep(15000);
$seen[] = include __DIR__ . '/../src/b.php';
usleep(15000);
$seen[] = include __DIR__ . '/../src/c.php';
echo implode(',', $seen);
`

// includesSlow is public/slow.php: a request that outlives several
// deploys. It includes a.php, sends "VERSION," at once (past nginx's
// buffering), sleeps 20 s in small steps, includes b.php and sends its
// version: both must be of the release the request started in.
const includesSlow = `<?php
header('X-Accel-Buffering: no');
while (ob_get_level() > 0) {
    ob_end_flush();
}
$a = include __DIR__ . '/../src/a.php';
echo $a, ',';
flush();
for ($i = 0; $i < 200; $i++) {
    usleep(100000);
}
$b = include __DIR__ . '/../src/b.php';
echo $b;
`

// includesInfo is public/info.php: how PHP runs, so the tests can refuse
// to prove anything against a php-fpm that does not cache as production's.
const includesInfo = `<?php
$status = opcache_get_status(false);
echo json_encode([
    'opcache' => $status !== false && $status['opcache_enabled'],
    'realpath_cache_ttl' => (int) ini_get('realpath_cache_ttl'),
]);
`

// slowRequestTime is how long slow.php sleeps.
const slowRequestTime = 20 * time.Second

// writeIncludesApp replaces the project's app with the include test app of
// the given version.
func writeIncludesApp(p *project, version string) {
	p.t.Helper()
	if err := os.RemoveAll(filepath.Join(p.dir, "app")); err != nil {
		p.t.Fatal(err)
	}
	p.write("app/public/index.php", includesIndex)
	p.write("app/public/slow.php", includesSlow)
	p.write("app/public/info.php", includesInfo)
	for _, name := range []string{"a", "b", "c"} {
		p.write("app/src/"+name+".php", "<?php\nreturn '"+version+"';\n")
	}
}

// checkProductionPHP fails the test unless php-fpm behind web runs with
// OPcache enabled and the realpath cache at its default TTL: the caches
// that make $document_root serve stale releases, and that $realpath_root
// must be proven against.
func checkProductionPHP(t *testing.T, web *testutil.Web) {
	t.Helper()
	status, body, err := get(http.DefaultClient, web.URL+"/info.php")
	if err != nil || status != http.StatusOK {
		t.Fatalf("GET /info.php: %d %v %s", status, err, body)
	}
	if body != `{"opcache":true,"realpath_cache_ttl":120}` {
		t.Fatalf("php-fpm does not run as in production (OPcache enabled, realpath_cache_ttl 120): %s", body)
	}
}

// get fetches url and returns the status and body.
func get(client *http.Client, url string) (int, string, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// includedVersion returns the version a page of index.php shows, and
// whether all its includes saw that same version.
func includedVersion(body string) (version string, consistent bool) {
	seen := strings.Split(body, ",")
	if len(seen) != 3 {
		return "", false
	}
	for _, v := range seen[1:] {
		if v != seen[0] {
			return "", false
		}
	}
	return seen[0], seen[0] != ""
}

// versionSet is the set of versions that have been deployed so far.
type versionSet struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (s *versionSet) add(v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen == nil {
		s.seen = map[string]bool{}
	}
	s.seen[v] = true
}

func (s *versionSet) has(v string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[v]
}

// loadGenerator sends GET / from several goroutines, as fast as the server
// answers, until it is stopped, has sent maxRequests or has run for
// maxDuration, whichever comes first: it stops by itself if the test
// stalls.
type loadGenerator struct {
	served, errors, non200, mixed, unknown atomic.Int64

	stopping chan struct{}
	stopOnce sync.Once
	done     sync.WaitGroup

	mu       sync.Mutex
	problems []string // the first few, for the failure message
}

func startLoad(t *testing.T, url string, known *versionSet, workers int, maxRequests int64, maxDuration time.Duration) *loadGenerator {
	l := &loadGenerator{stopping: make(chan struct{})}
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: workers},
	}
	deadline := time.Now().Add(maxDuration)
	var sent atomic.Int64
	for range workers {
		l.done.Go(func() {
			for {
				select {
				case <-l.stopping:
					return
				default:
				}
				if sent.Add(1) > maxRequests || time.Now().After(deadline) {
					return
				}
				l.check(known, client, url)
			}
		})
	}
	t.Cleanup(l.stop)
	return l
}

func (l *loadGenerator) check(known *versionSet, client *http.Client, url string) {
	status, body, err := get(client, url)
	switch version, consistent := includedVersion(body); {
	case err != nil:
		l.errors.Add(1)
		l.problem("connection error: %v", err)
	case status != http.StatusOK:
		l.non200.Add(1)
		l.problem("status %d: %.200q", status, body)
	case !consistent:
		l.mixed.Add(1)
		l.problem("mixed releases in one request: %q", body)
	case !known.has(version):
		l.unknown.Add(1)
		l.problem("a version never deployed: %q", body)
	default:
		l.served.Add(1)
	}
}

func (l *loadGenerator) problem(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.problems) < 10 {
		l.problems = append(l.problems, time.Now().Format("15:04:05.000 ")+fmt.Sprintf(format, args...))
	}
}

// completed counts the requests answered so far, good or bad.
func (l *loadGenerator) completed() int64 {
	return l.served.Load() + l.errors.Load() + l.non200.Load() + l.mixed.Load() + l.unknown.Load()
}

// stop stops the load and waits for the requests in flight.
func (l *loadGenerator) stop() {
	l.stopOnce.Do(func() { close(l.stopping) })
	l.done.Wait()
}

// slowRequest is a GET /slow.php in flight.
type slowRequest struct {
	// sent is when the request was sent, running when its first include
	// had answered: PHP included a.php between the two, and includes b.php
	// no earlier than sent+slowRequestTime.
	sent, running time.Time
	result        chan slowResult
}

// slowResult is what GET /slow.php returned.
type slowResult struct {
	status int
	body   string
	err    error
}

// startSlowRequest sends GET /slow.php and returns once PHP has included
// the first file (its version has arrived), so that the request is known
// to be running in the release live now. The result comes on the channel
// when the request ends.
func startSlowRequest(t *testing.T, web *testutil.Web) *slowRequest {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), slowRequestTime+40*time.Second)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, web.URL+"/slow.php", nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	slow := &slowRequest{sent: time.Now(), result: make(chan slowResult, 1)}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET /slow.php: %v", err)
	}
	body := bufio.NewReader(resp.Body)
	first, err := body.ReadString(',')
	if err != nil {
		resp.Body.Close()
		cancel()
		t.Fatalf("GET /slow.php: %s, first include: %q %v", resp.Status, first, err)
	}
	slow.running = time.Now()
	go func() {
		defer cancel()
		defer resp.Body.Close()
		rest, err := io.ReadAll(body)
		slow.result <- slowResult{status: resp.StatusCode, body: first + string(rest), err: err}
	}()
	return slow
}

// TestZeroDowntimeUnderLoad runs 20 deploys and 5 rollbacks over SSH while
// nginx and php-fpm, configured as examples/nginx/slipway-php.conf says,
// serve a steady stream of requests from the host's deploy directory.
// Every request must succeed and see one whole release; every request sent
// after a deploy or rollback returns must see the release it made live;
// and a request that started before two deploys must finish, in the
// release it started in. php-fpm is never reloaded.
func TestZeroDowntimeUnderLoad(t *testing.T) {
	t.Parallel()
	const (
		deploys      = 20
		rollbackEach = 4 // a rollback after every 4th deploy: 5 rollbacks
		keepReleases = 10
		loadWorkers  = 8 // of php-fpm's 16; the slow request and the freshness checks take two more
		// minPerCommand requests must complete while each deploy or
		// rollback runs, so the test cannot pass with the load idle.
		minPerCommand = 3
	)
	p := newProject(t, 1, testutil.Options{})
	h := p.fleet.Hosts[0]
	p.config(fmt.Sprintf("keep_releases: %d\n", keepReleases))

	var known versionSet
	versionOf := map[string]string{} // release id → version
	known.add("v1")
	writeIncludesApp(p, "v1")
	p.mustRun("deploy", "production")
	versionOf[live(t, h)] = "v1"

	web := testutil.StartWeb(t, testutil.WebOptions{Root: h.Path(deployTo) + "/current/public", DocRoot: testutil.RealpathRoot})
	checkProductionPHP(t, web)
	fresh := &http.Client{Timeout: 10 * time.Second}
	expectLive := func(after string) {
		t.Helper()
		want := versionOf[live(t, h)]
		status, body, err := get(fresh, web.URL+"/")
		if v, consistent := includedVersion(body); err != nil || status != http.StatusOK || !consistent || v != want {
			t.Fatalf("after %s (live: %s), a new request got %d %q %v, want %s,%s,%s", after, live(t, h), status, body, err, want, want, want)
		}
	}
	expectLive("the first deploy")

	load := startLoad(t, web.URL+"/", &known, loadWorkers, 200_000, 80*time.Second)
	slow := startSlowRequest(t, web)
	var (
		slowGot            slowResult
		slowDone           bool
		releasesDuringSlow int
		// Each deploy or rollback switched current between its start and
		// its end.
		commands  []struct{ start, end time.Time }
		minDuring = int64(1 << 62)
		start     = time.Now()
	)
	// waitSlow collects the slow request's result if it is there, or
	// (wait) once it is.
	waitSlow := func(wait bool) {
		switch {
		case slowDone:
		case wait:
			slowGot, slowDone = <-slow.result, true
		default:
			select {
			case slowGot = <-slow.result:
				slowDone = true
			default:
			}
		}
	}
	command := func(args ...string) {
		t.Helper()
		before, started := load.completed(), time.Now()
		p.mustRun(args...)
		commands = append(commands, struct{ start, end time.Time }{started, time.Now()})
		minDuring = min(minDuring, load.completed()-before)
	}
	for i := 2; i <= deploys+1; i++ {
		// The slow request's release must outlive it: cleanup keeps
		// keepReleases releases, so at most keepReleases-2 new ones may
		// come while it runs.
		waitSlow(releasesDuringSlow >= keepReleases-2)
		if !slowDone {
			releasesDuringSlow++
		}
		version := fmt.Sprintf("v%d", i)
		known.add(version)
		writeIncludesApp(p, version)
		command("deploy", "production")
		id := live(t, h)
		if _, reused := versionOf[id]; reused {
			t.Fatalf("deploy of %s made release %s live again, want a new release", version, id)
		}
		versionOf[id] = version
		expectLive("deploy of " + version)
		if (i-1)%rollbackEach == 0 {
			from := live(t, h)
			command("rollback", "production")
			if live(t, h) == from {
				t.Fatalf("rollback left %s live", from)
			}
			expectLive("rollback from " + versionOf[from])
		}
	}
	commandsTime, during := time.Since(start), load.completed()
	waitSlow(true)
	load.stop()
	// Switches certainly between the slow request's two includes.
	switchesDuringSlow := 0
	for _, c := range commands {
		if c.start.After(slow.running) && c.end.Before(slow.sent.Add(slowRequestTime)) {
			switchesDuringSlow++
		}
	}
	t.Logf("zero downtime: %d deploys + %d rollbacks in %s under load: %d requests served (%d completed during the deploys, at least %d during each command), %d connection errors, %d non-200, %d mixed, %d unknown versions; slow request: %s, across %d switches",
		deploys, deploys/rollbackEach, commandsTime.Round(time.Millisecond), load.served.Load(), during, minDuring,
		load.errors.Load(), load.non200.Load(), load.mixed.Load(), load.unknown.Load(),
		slowGot.body, switchesDuringSlow)

	if bad := load.errors.Load() + load.non200.Load() + load.mixed.Load() + load.unknown.Load(); bad > 0 {
		t.Fatalf("%d requests failed or saw a wrong release during the deploys; first ones:\n%s", bad, strings.Join(load.problems, "\n"))
	}
	if minDuring < minPerCommand || during < 500 {
		t.Fatalf("the load did not overlap the deploys: %d requests during them, %d during the quietest command; want at least 500 and %d", during, minDuring, minPerCommand)
	}
	if slowGot.err != nil || slowGot.status != http.StatusOK || slowGot.body != "v1,v1" {
		t.Fatalf("the request that started before the deploys: %d %q %v, want v1,v1 (its own release for both includes)", slowGot.status, slowGot.body, slowGot.err)
	}
	if switchesDuringSlow < 2 {
		t.Fatalf("only %d switches happened while the slow request ran; want at least 2", switchesDuringSlow)
	}
	if err := web.Running(); err != nil {
		t.Fatalf("nginx or php-fpm did not serve the whole test: %v", err)
	}
}

// TestDocumentRootVariantServesStaleReleases grounds the advice of
// examples/nginx/slipway-php.conf and the warning of `slipway check`: the
// same deploys, served by two nginx and php-fpm pairs that differ only in
// what nginx passes as SCRIPT_FILENAME and DOCUMENT_ROOT. With
// $realpath_root every request after a deploy returns sees the new
// release; with $document_root PHP goes on serving the old one.
//
// Why the stale responses are certain, not a race: with $document_root PHP
// is told to run .../current/public/index.php, the same path in every
// release. Each php-fpm worker resolves the paths it includes through its
// realpath cache, whose entries live realpath_cache_ttl (120 s, checked by
// checkProductionPHP) from when they were made, and OPcache finds the
// compiled scripts under those paths. The test first sends requests until
// every worker has answered one (warmAllWorkers), so every worker has
// resolved `current` to the first release; the deploys and requests that
// follow take a few seconds, far less than 120 s, so every worker keeps
// serving the first release. A worker that had never served a request
// would resolve `current` afresh and serve the new release (without the
// warm-up, only the few workers that had answered before the deploy serve
// stale pages), which is why the warm-up must reach every worker, and
// fails the test if it does not.
func TestDocumentRootVariantServesStaleReleases(t *testing.T) {
	t.Parallel()
	const deploys = 3
	p := newProject(t, 1, testutil.Options{})
	h := p.fleet.Hosts[0]
	p.config("keep_releases: 10\n")
	writeIncludesApp(p, "v1")
	p.mustRun("deploy", "production")

	variants := []testutil.DocRoot{testutil.RealpathRoot, testutil.DocumentRoot}
	webs := make([]*testutil.Web, len(variants))
	for i, variant := range variants {
		webs[i] = testutil.StartWeb(t, testutil.WebOptions{Root: h.Path(deployTo) + "/current/public", DocRoot: variant})
		checkProductionPHP(t, webs[i])
		warmAllWorkers(t, webs[i])
	}

	type tally struct{ requests, fresh, stale, mixed int }
	tallies := make([]tally, len(variants))
	for i := 2; i <= deploys+1; i++ {
		version := fmt.Sprintf("v%d", i)
		writeIncludesApp(p, version)
		p.mustRun("deploy", "production")
		// Every request starts after the deploy returned; two per worker.
		for w, web := range webs {
			for _, page := range concurrentPages(t, web, 2*web.Workers) {
				tallies[w].requests++
				switch seen, consistent := includedVersion(page.body); {
				case !consistent:
					tallies[w].mixed++
				case seen == version:
					tallies[w].fresh++
				default:
					tallies[w].stale++
				}
			}
		}
	}
	for i, variant := range variants {
		c := tallies[i]
		t.Logf("%s: %d requests after %d deploys: %d fresh, %d stale, %d mixed", variant, c.requests, deploys, c.fresh, c.stale, c.mixed)
	}
	if c := tallies[0]; c.stale+c.mixed > 0 {
		t.Errorf("%s served %d stale and %d mixed responses after deploys returned; want none", variants[0], c.stale, c.mixed)
	}
	if c := tallies[1]; c.stale+c.mixed == 0 {
		t.Errorf("%s served no stale or mixed response after %d deploys: PHP no longer caches what `current` resolves to, and the advice of %s needs another look", variants[1], deploys, testutil.NginxExample)
	}
}

// page is one answer of index.php.
type page struct {
	worker, body string
}

// concurrentPages sends n requests for index.php, as many at once as web
// has workers, and fails the test if one fails.
func concurrentPages(t *testing.T, web *testutil.Web, n int) []page {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: web.Workers}}
	defer client.CloseIdleConnections()
	pages := make([]page, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for range web.Workers {
		wg.Go(func() {
			for i := range next {
				resp, err := client.Get(web.URL + "/")
				if err != nil {
					errs[i] = err
					continue
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil && resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("%s: %.200q", resp.Status, body)
				}
				pages[i], errs[i] = page{worker: resp.Header.Get("X-Worker"), body: string(body)}, err
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("GET %s/: %v", web.URL, err)
		}
	}
	return pages
}

// warmAllWorkers sends requests until every php-fpm worker of web has
// answered one, so that each has resolved the live release into its
// realpath cache and OPcache.
func warmAllWorkers(t *testing.T, web *testutil.Web) {
	t.Helper()
	workers := map[string]bool{}
	for round := 0; round < 20 && len(workers) < web.Workers; round++ {
		for _, page := range concurrentPages(t, web, web.Workers) {
			workers[page.worker] = true
		}
	}
	if len(workers) < web.Workers {
		t.Fatalf("after 20 rounds of %d requests, only %d of %d php-fpm workers have answered", web.Workers, len(workers), web.Workers)
	}
}
