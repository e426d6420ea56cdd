package e2e

import (
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slipway-deploy/slipway/internal/testutil"
)

// The proofs of opcache_reset: slipway resetting OPcache in php-fpm's own
// pool over FastCGI, from the host, after the switch. Where the web server
// tells PHP current/ paths, a reset after every switch moves PHP to the new
// release; where it tells PHP resolved paths, every release adds its
// scripts to OPcache and a reset when it is filling frees them.

// resetLine is slipway's line for an OPcache reset PHP carried out.
var resetLine = regexp.MustCompile(`OPcache reset \(it was [^)]*\); PHP restarted it after ([0-9.]+[mµn]?s)`)

// resetTimes are the waits for PHP's restart that slipway reported.
func resetTimes(res result) []string {
	var out []string
	for _, m := range resetLine.FindAllStringSubmatch(res.stdout+res.stderr, -1) {
		out = append(out, m[1])
	}
	return out
}

// TestOPcacheResetUnderLoad runs deploys and rollbacks while Apache with
// php-fpm, configured as is common (PHP is told current/public/index.php,
// which TestWebServersWithoutResolvedPathsServeStale shows serving stale
// releases) and with validate_timestamps=0, serves under load, and slipway
// resets OPcache in the pool after each switch. Every request must succeed
// in one release, every request after a command the live one, and the
// slow request, which makes PHP wait with the restart until it ends, its
// own.
func TestOPcacheResetUnderLoad(t *testing.T) {
	t.Parallel()
	const keepReleases = 10
	p := newProject(t, 1, testutil.Options{})
	h := p.fleet.Hosts[0]
	p.config(fmt.Sprintf("keep_releases: %d\n", keepReleases))
	writeWebApp(p, "v1")
	p.mustRun("deploy", "production")
	web := testutil.StartStack(t, testutil.StackOptions{Server: testutil.ApacheFPM, Paths: testutil.LinkPaths, Host: h, DeployTo: deployTo, PHP: strictOPcache})
	name := fmt.Sprintf("%s (%s) with opcache_reset", testutil.ApacheFPM, testutil.LinkPaths)
	checkStrictOPcache(t, name, web)
	p.config(fmt.Sprintf("keep_releases: %d\nopcache_reset:\n  socket: %s\n", keepReleases, web.Socket))

	stack := &servedStack{name: name, web: web}
	var waits []string
	elapsed := serveUnderLoad(t, p, h, []*servedStack{stack}, loadRun{
		deploys: 6, rollbackEach: 3, keepReleases: keepReleases, loadWorkers: 6, slow: true, freshChecks: 8,
		afterCommand: func(after string, res result) {
			times := resetTimes(res)
			if len(times) != 1 {
				t.Errorf("after %s, slipway reported %d OPcache resets carried out, want 1:\n%s", after, len(times), res)
			}
			waits = append(waits, times...)
		},
	})
	t.Logf("6 deploys + 2 rollbacks in %s; PHP carried out the resets after %s", elapsed.Round(time.Millisecond), strings.Join(waits, ", "))
	t.Log(stack.report())
	// The first deploy waits for PHP's restart, which waits for the slow
	// request: one switch happens while it runs.
	stack.checkZeroDowntime(t, 3, 1)
	if st := readOPcache(t, web); st.ManualRestarts < 8 || st.OOMRestarts+st.HashRestarts > 0 {
		t.Errorf("OPcache restarted %d times by a reset (want 8), %d out of memory or keys", st.ManualRestarts, st.OOMRestarts+st.HashRestarts)
	}
	if out := h.Run(t, "find "+deployTo+"/releases -name '.slipway-opcache-*'"); out != "" {
		t.Errorf("slipway left its scripts in the releases:\n%s", out)
	}
}

// TestOPcacheResetKillsRequestsPastForceRestartTimeout grounds the warning
// of the README: PHP carries out a reset only once the requests that
// started before it have ended, and kills those still running
// opcache.force_restart_timeout after it. Here that is 2 s, and the slow
// request of the zero-downtime tests (20 s) is cut, where with the default
// of 180 s it survives (TestOPcacheResetUnderLoad).
func TestOPcacheResetKillsRequestsPastForceRestartTimeout(t *testing.T) {
	t.Parallel()
	p := newProject(t, 1, testutil.Options{})
	h := p.fleet.Hosts[0]
	p.config("keep_releases: 5\n")
	writeWebApp(p, "v1")
	p.mustRun("deploy", "production")
	web := testutil.StartStack(t, testutil.StackOptions{Server: testutil.Caddy, Host: h, DeployTo: deployTo,
		PHP: append(slices.Clone(strictOPcache), "opcache.force_restart_timeout=2")})
	p.config("keep_releases: 5\nopcache_reset:\n  socket: " + web.Socket + "\n")
	slow := startSlowRequest(t, web)
	writeWebApp(p, "v2")
	res := p.mustRun("deploy", "production")
	got := <-slow.result
	t.Logf("the slow request: %d %q %v; slipway: PHP carried out the reset after %v", got.status, got.body, got.err, resetTimes(res))
	if got.err == nil && got.body == "v1,v1" {
		t.Errorf("the request that ran across the reset finished (%q): PHP no longer kills requests past opcache.force_restart_timeout, and the README's warning needs another look", got.body)
	}
	if times := resetTimes(res); len(times) != 1 {
		t.Errorf("slipway did not report the reset carried out:\n%s", res)
	}
	if log := readFile(t, web.Dir+"/php-fpm.log"); !strings.Contains(log, "exited on signal") {
		t.Errorf("php-fpm's log does not show the worker PHP killed:\n%s", log)
	}
}

// growthScripts is how many scripts (besides a, b and c) every request of
// the growth app includes, each compiled to about 40 KB of OPcache.
const growthScripts = 40

// writeGrowthApp is writeWebApp with an index.php that includes
// growthScripts more scripts, the same in every release: OPcache keys
// scripts by path, so each release adds them anew.
func writeGrowthApp(p *project, version string) {
	p.t.Helper()
	writeWebApp(p, version)
	for i := range growthScripts {
		var b strings.Builder
		fmt.Fprintf(&b, "<?php\nfunction lib_%d($x) {\n", i)
		for j := range 200 {
			fmt.Fprintf(&b, "    if ($x > %d) { $x = strlen(str_repeat('%d', 3)) + $x * %d; }\n", j*7, j, j)
		}
		b.WriteString("    return $x;\n}\n")
		p.write(fmt.Sprintf("app/src/lib/x%d.php", i), b.String())
	}
	p.write("app/public/index.php", strings.Replace(includesIndex, "<?php\n",
		fmt.Sprintf("<?php\nfor ($i = 0; $i < %d; $i++) {\n    include __DIR__ . \"/../src/lib/x$i.php\";\n}\n", growthScripts), 1))
}

// medianLatency sends n requests to web one after the other and returns
// the median time they took.
func medianLatency(t *testing.T, web *testutil.Web, n int) time.Duration {
	t.Helper()
	client := &http.Client{Timeout: 30 * time.Second}
	times := make([]time.Duration, n)
	for i := range n {
		start := time.Now()
		if status, body, err := get(client, web.URL+"/"); err != nil || status != http.StatusOK {
			t.Fatalf("GET %s/: %d %v %.200q", web.URL, status, err, body)
		}
		times[i] = time.Since(start)
	}
	slices.Sort(times)
	return times[n/2].Round(100 * time.Microsecond)
}

// TestOPcacheFullUnderLoad measures what PHP does when resolved paths
// (nginx's $realpath_root) fill OPcache release by release, and proves the
// answer under load across 50 deploys. OPcache has 16 MB here instead of
// 128, so that it fills in about ten deploys of the growth app.
//
// Without opcache_reset, PHP does not restart OPcache when it is full:
// the old releases' scripts are not wasted memory (nothing invalidated
// them), so opcache.max_wasted_percentage is never reached. It stops
// caching instead, and every request of every later release compiles all
// its scripts. With opcache_reset above 50%, slipway resets the pool's
// OPcache after the cleanup of a deploy that left it fuller than that:
// it never fills, and no request fails or sees a wrong release.
func TestOPcacheFullUnderLoad(t *testing.T) {
	t.Parallel()
	const (
		totalDeploys = 50
		keepReleases = 5
		maxToFill    = 20
	)
	p := newProject(t, 1, testutil.Options{})
	h := p.fleet.Hosts[0]
	p.config(fmt.Sprintf("keep_releases: %d\n", keepReleases))
	writeGrowthApp(p, "v1")
	p.mustRun("deploy", "production")
	web := testutil.StartStack(t, testutil.StackOptions{Server: testutil.Nginx, Host: h, DeployTo: deployTo,
		PHP: append(slices.Clone(strictOPcache), "opcache.memory_consumption=16", "opcache.interned_strings_buffer=4")})
	checkStrictOPcache(t, "nginx+php-fpm", web)

	// Without opcache_reset: deploy until OPcache is full, then once more.
	var cached, uncached []time.Duration
	version, fullAt := 1, 0
	for version < maxToFill && (fullAt == 0 || version == fullAt) {
		version++
		writeGrowthApp(p, fmt.Sprintf("v%d", version))
		p.mustRun("deploy", "production")
		latency := medianLatency(t, web, 9)
		st := readOPcache(t, web)
		t.Logf("v%d: OPcache %.1f of 16 MB used, %d scripts, full %v, live release cached %v; median request %s",
			version, float64(st.Used)/(1<<20), st.Scripts, st.Full, st.ACached, latency)
		if st.OOMRestarts+st.HashRestarts+st.ManualRestarts > 0 {
			t.Fatalf("v%d: OPcache restarted by itself: %+v", version, st)
		}
		switch {
		case st.Full && fullAt == 0:
			fullAt = version
		case st.Full:
			uncached = append(uncached, latency)
			if st.ACached {
				t.Errorf("v%d: deployed after OPcache filled, yet its scripts are cached: %+v", version, st)
			}
		default:
			cached = append(cached, latency)
		}
	}
	if fullAt == 0 || len(uncached) == 0 || len(cached) == 0 {
		t.Fatalf("OPcache was not full after %d deploys of the growth app (full at v%d)", maxToFill, fullAt)
	}
	slices.Sort(cached)
	t.Logf("OPcache full after %d deploys; then PHP compiles every script of each new release on every request: median request %s (cached: %s)",
		fullAt-1, uncached[0], cached[len(cached)/2])

	// With opcache_reset above 50%: the remaining deploys under load.
	p.config(fmt.Sprintf("keep_releases: %d\nopcache_reset:\n  socket: %s\n  above: 50%%\n", keepReleases, web.Socket))
	stack := &servedStack{name: "nginx+php-fpm (resolved paths) with opcache_reset above 50%", web: web}
	resets := 0
	var waits []string
	elapsed := serveUnderLoad(t, p, h, []*servedStack{stack}, loadRun{
		first: version, deploys: totalDeploys - (version - 1), keepReleases: keepReleases, app: writeGrowthApp,
		loadWorkers: 3, slow: true, freshChecks: 2,
		afterCommand: func(after string, res result) {
			times := resetTimes(res)
			resets += len(times)
			waits = append(waits, times...)
			if _, _, err := get(&http.Client{Timeout: 30 * time.Second}, web.URL+"/"); err != nil {
				t.Fatal(err)
			}
			if st := readOPcache(t, web); st.Full || !st.ACached {
				t.Errorf("after %s: OPcache full %v, the live release cached %v (%.1f MB used)", after, st.Full, st.ACached, float64(st.Used)/(1<<20))
			}
		},
	})
	latency := medianLatency(t, web, 9)
	t.Logf("%d deploys in %s with %d resets (PHP carried them out after %s); median request now %s",
		totalDeploys-(version-1), elapsed.Round(time.Millisecond), resets, strings.Join(waits, ", "), latency)
	t.Log(stack.report())
	stack.checkZeroDowntime(t, 1, 1)
	if resets < 2 {
		t.Errorf("slipway reset OPcache %d times over %d deploys, want it to whenever it passed 50%%", resets, totalDeploys-(version-1))
	}
}

// TestFPMReloadWaitsForTheLongestRequest grounds the README's advice
// against reloading php-fpm to empty OPcache: even with
// process_control_timeout, which keeps a reload from killing running
// requests, php-fpm starts no new worker until every running request has
// ended, so a request sent after the reload waits for the longest one.
func TestFPMReloadWaitsForTheLongestRequest(t *testing.T) {
	t.Parallel()
	p := newProject(t, 1, testutil.Options{})
	h := p.fleet.Hosts[0]
	p.config("")
	writeWebApp(p, "v1")
	p.mustRun("deploy", "production")
	web := testutil.StartStack(t, testutil.StackOptions{Server: testutil.Nginx, Host: h, DeployTo: deployTo, ProcessControlTimeout: time.Minute})
	slow := startSlowRequest(t, web)
	fpmLog := web.Dir + "/php-fpm.log"
	web.ReloadFPM(t)
	waitFor(t, 10*time.Second, "php-fpm to start reloading", func() bool {
		return strings.Contains(readFile(t, fpmLog), "Reloading in progress")
	})
	// The idle workers have had their signal to stop.
	time.Sleep(time.Second)
	start := time.Now()
	status, body, err := get(&http.Client{Timeout: time.Minute}, web.URL+"/")
	waited := time.Since(start)
	got := <-slow.result
	// The reload ends once the slow request has: php-fpm starts again.
	waitFor(t, 15*time.Second, "php-fpm to come back after its reload", func() bool {
		return strings.Count(readFile(t, fpmLog), "ready to handle connections") == 2
	})
	slowLeft := slow.sent.Add(slowRequestTime).Sub(start)
	t.Logf("after a reload of php-fpm: a request waited %s (%d %q %v); the slow request, %s from its end then: %d %q %v",
		waited.Round(time.Millisecond), status, body, err, slowLeft.Round(time.Millisecond), got.status, got.body, got.err)
	if got.err != nil || got.body != "v1,v1" {
		t.Errorf("the slow request did not survive the reload with process_control_timeout: %d %q %v", got.status, got.body, got.err)
	}
	if err != nil || status != http.StatusOK {
		t.Errorf("the request after the reload failed: %d %q %v", status, body, err)
	}
	if waited < slowLeft-2*time.Second {
		t.Errorf("the request after the reload waited %s, the slow request ran %s more: php-fpm no longer waits for every request before it serves again, and the README's advice needs another look", waited, slowLeft)
	}
}
