package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slipway-deploy/slipway/internal/testutil"
)

// wikiIndex is a wiki-shaped app (as DokuWiki is): its pages live in data/,
// which must persist across releases, its settings in conf/local.php, which
// the app itself writes; data/ ships with the start page the app needs.
// GET / shows the start page and the settings; GET /?write=ID appends ID
// to data/writes.log, as saving a page would.
const wikiIndex = `<?php
$root = __DIR__ . '/..';
if (isset($_GET['write'])) {
    file_put_contents("$root/data/writes.log", $_GET['write'] . "\n", FILE_APPEND | LOCK_EX);
    echo 'saved';
    return;
}
$start = @file_get_contents("$root/data/pages/start.txt");
if ($start === false) {
    http_response_code(500);
    echo "Setup Error: the datadir ('pages') is not found";
    return;
}
$conf = include "$root/conf/local.php";
echo 'wiki VERSION: ', trim($start), ' title=', $conf['title'];
`

func writeWiki(p *project, version string) {
	p.t.Helper()
	if err := os.RemoveAll(filepath.Join(p.dir, "app")); err != nil {
		p.t.Fatal(err)
	}
	p.write("app/public/index.php", strings.Replace(wikiIndex, "VERSION", version, 1))
	p.write("app/data/pages/start.txt", "Welcome from "+version+"\n")
	p.write("app/data/pages/syntax.txt", "How to write pages\n")
	p.write("app/conf/local.php.dist", "<?php return ['title' => 'My wiki'];\n")
}

// TestSharedDataSeededAndKeptUnderLoad: a wiki whose data/ must persist is
// deployed to a fresh host: setup, then the first deploy, which must serve
// the wiki with its data seeded from the release (setup made data/ empty).
// Then it is redeployed three times under load while it writes into data/,
// with setup run again in between on the live host, where the web server
// (root here) owns files in data/: no write is lost, no request fails, the
// seeded pages stay as the host has them, and the release's copy of data/
// is not sent again.
func TestSharedDataSeededAndKeptUnderLoad(t *testing.T) {
	p := newProject(t, 1, testutil.Options{})
	h := p.fleet.Hosts[0]
	p.config("shared:\n  dirs: [data]\n  files: [conf/local.php]\n" +
		"writable:\n  dirs: [data]\n  files: [conf/local.php]\n  mode: group\n")
	writeWiki(p, "v1")
	p.mustRun("setup", "production")
	if entries, err := os.ReadDir(h.Path(deployTo + "/shared/data")); err != nil || len(entries) != 0 {
		t.Fatalf("setup made shared/data with %v (%v), want it empty", entries, err)
	}
	p.putShared("conf/local.php", `<?php return ["title" => "Our wiki"];`)
	p.mustRun("deploy", "production")

	web := testutil.StartWeb(t, testutil.WebOptions{Root: h.Path(deployTo) + "/current/public", DocRoot: testutil.RealpathRoot})
	get := func(path string) (int, string, error) {
		resp, err := http.Get(web.URL + path)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), err
	}
	if code, body, err := get("/"); err != nil || code != 200 || body != "wiki v1: Welcome from v1 title=Our wiki" {
		t.Fatalf("the first deploy serves %d %q (%v), want the wiki with its seeded start page", code, body, err)
	}

	// Writers save pages while the wiki is redeployed.
	var (
		stop            atomic.Bool
		wg              sync.WaitGroup
		mu              sync.Mutex
		saved, failures []string
	)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; !stop.Load(); i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				code, body, err := get("/?write=" + id)
				mu.Lock()
				if err != nil || code != 200 || body != "saved" {
					failures = append(failures, fmt.Sprintf("%s: %d %q %v", id, code, body, err))
				} else {
					saved = append(saved, id)
				}
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	for i, version := range []string{"v2", "v3", "v4"} {
		time.Sleep(200 * time.Millisecond)
		writeWiki(p, version)
		plan := p.mustRun("plan", "production")
		// A delta lists what it sends; a full upload (SLIPWAY_E2E_UPLOAD=full)
		// counts it: public/, its index.php, conf/ and local.php.dist, and
		// none of data/'s four entries.
		sendsChangeOnly := strings.Contains(plan.stdout, "+ public/index.php") && !strings.Contains(plan.stdout, "+ data")
		if os.Getenv("SLIPWAY_E2E_UPLOAD") == "full" {
			sendsChangeOnly = strings.Contains(plan.stdout, "full: 4 entries")
		}
		if !sendsChangeOnly {
			t.Errorf("deploy %s would send the release's copy of data/ again, or not the change:\n%s", version, plan.stdout)
		}
		p.mustRun("deploy", "production")
		if i == 1 {
			// setup again, on the live host: the web server owns files in
			// data/ now; setup must not fail on them.
			res := p.mustRun("setup", "production")
			if !strings.Contains(res.stderr, "belong to another user") {
				t.Errorf("setup on the live host does not say which files it left alone:\n%s", res.stderr)
			}
		}
	}
	time.Sleep(200 * time.Millisecond)
	stop.Store(true)
	wg.Wait()

	if len(failures) > 0 {
		t.Errorf("%d of %d requests failed, e.g. %v", len(failures), len(failures)+len(saved), failures[:min(5, len(failures))])
	}
	logged := strings.Fields(readFile(t, h.Path(deployTo+"/shared/data/writes.log")))
	for _, id := range saved {
		if !slices.Contains(logged, id) {
			t.Errorf("write %s was acknowledged but is not in shared/data/writes.log", id)
		}
	}
	if len(saved) < 20 {
		t.Errorf("only %d writes under load; the test proves little", len(saved))
	}
	// The host's pages stay the host's: later releases' copies never
	// replace them.
	if code, body, err := get("/"); err != nil || code != 200 || body != "wiki v4: Welcome from v1 title=Our wiki" {
		t.Errorf("after the redeploys the wiki serves %d %q (%v), want v4 with the seeded start page", code, body, err)
	}
	t.Logf("%d writes under 3 redeploys and a setup, none lost", len(saved))
}
