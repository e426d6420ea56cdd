package deploy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/shell"
)

// opcache_reset: after a switch, slipway has php-fpm's own pool reset its
// OPcache, as cachetool does, without an HTTP endpoint: it writes a small
// script into the live release, sends the pool one FastCGI request for it
// over the pool's socket (opened from the host through the SSH connection:
// a unix socket through direct-streamlocal, a TCP one through
// direct-tcpip, so the host needs nothing installed), waits for PHP to carry
// out the restart, and deletes the script.
//
// opcache_reset() only schedules a restart: PHP carries it out once every
// request that started before it has ended (each holds the shared memory),
// and until then it compiles every script on every request, uncached. A
// request still running opcache.force_restart_timeout (180 s) after the
// reset is killed by PHP. That is why slipway waits for the restart, and
// says so when it does not come.

// opcacheResetSteps is the OPcache reset a configuration asks for after a
// switch: none, or one step.
func opcacheResetSteps(r *run) []Step {
	if r.opts.Config.OPcacheReset == nil {
		return nil
	}
	return []Step{perHost(opcacheResetStep{r: r, reset: r.opts.Config.OPcacheReset})}
}

// opcacheResetStep resets OPcache in php-fpm's pool on each host, in the
// release live there now.
type opcacheResetStep struct {
	releaseHosts
	r     *run
	reset *config.OPcacheReset
}

func (opcacheResetStep) Name() string { return "opcache reset" }

// opcachePollInterval is how often slipway asks whether PHP has restarted
// OPcache yet.
const opcachePollInterval = 100 * time.Millisecond

// opcacheRequestTimeout bounds one FastCGI request: the script answers at
// once; a pool with every worker busy makes it queue.
const opcacheRequestTimeout = 30 * time.Second

func (s opcacheResetStep) Run(ctx context.Context, t *Target) error {
	release := t.State.Current
	if release == "" {
		return nil
	}
	dir := s.r.layout.ReleaseDir(release)
	var token [16]byte
	_, _ = rand.Read(token[:]) // crypto/rand.Read never fails
	script := path.Join(dir, ".slipway-opcache-"+hex.EncodeToString(token[:])+".php")
	if _, err := t.Exec.Exec(ctx, host.Command{Script: writeOPcacheScript(script), Stdin: strings.NewReader(opcacheScript)}); err != nil {
		return fmt.Errorf("writing %s: %w", script, err)
	}
	defer func() {
		// Also after a failure or an interrupt: the script must not stay.
		rmCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if _, err := t.Exec.Exec(rmCtx, host.Command{Script: removeOPcacheScript(script)}); err != nil {
			s.r.warn(t, "could not delete %s: %v", script, err)
		}
	}()

	query := "do=reset"
	if s.reset.Above > 0 {
		query += "&above=" + strconv.Itoa(s.reset.Above)
	}
	start := time.Now()
	st, err := s.request(ctx, t, script, query)
	if err != nil {
		return err
	}
	switch {
	case !st.Enabled:
		s.r.warn(t, "OPcache is not enabled in the php-fpm pool at %s: nothing to reset", s.reset.Socket)
		return nil
	case !st.Reset:
		s.r.emit(Event{Kind: Info, Host: t.Name(), Step: s.Name(), Line: fmt.Sprintf("OPcache %s: not above %d%%, not reset", st.usage(), s.reset.Above)})
		return nil
	}
	for st.Pending && time.Since(start) < s.reset.Wait {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(opcachePollInterval):
		}
		if st, err = s.request(ctx, t, script, "do=status"); err != nil {
			return err
		}
	}
	waited := time.Since(start).Round(time.Millisecond)
	if st.Pending {
		s.r.warn(t, "OPcache reset in the php-fpm pool at %s, but PHP has not carried it out after %s: it waits for the requests that started before the reset to end. Until then the pool compiles every script on every request (and, where the web server passes current/ paths, runs the old release); a request still running %ds after the reset is killed by PHP (opcache.force_restart_timeout)",
			s.reset.Socket, waited, st.ForceRestartTimeout)
		return nil
	}
	s.r.emit(Event{Kind: Info, Host: t.Name(), Step: s.Name(), Line: fmt.Sprintf("OPcache reset (it was %s); PHP restarted it after %s", st.usage(), waited)})
	return nil
}

// Plan lists the reset with the hooks: a dry run changes nothing, and
// does not ask the pool.
func (s opcacheResetStep) Plan(_ context.Context, t *Target) error {
	hp := s.r.plan.host(t)
	hp.Hooks = append(hp.Hooks, "opcache reset: php-fpm pool at "+s.reset.Socket)
	return nil
}

// opcacheState is what the script answers.
type opcacheState struct {
	Loaded              bool    `json:"loaded"`
	Enabled             bool    `json:"enabled"`
	Full                bool    `json:"full"`
	Pending             bool    `json:"pending"`
	Reset               bool    `json:"reset"`
	Memory              float64 `json:"memory"`
	Keys                float64 `json:"keys"`
	Strings             float64 `json:"strings"`
	ForceRestartTimeout int     `json:"force_restart_timeout"`
	Error               string  `json:"error"`
}

// usage says how full OPcache is: each of its three limits in percent.
func (st opcacheState) usage() string {
	full := ""
	if st.Full {
		full = "full: "
	}
	return fmt.Sprintf("%smemory %.0f%%, keys %.0f%%, interned strings %.0f%%", full, st.Memory, st.Keys, st.Strings)
}

// request runs the script in the pool with query and reads its answer.
func (s opcacheResetStep) request(ctx context.Context, t *Target, script, query string) (*opcacheState, error) {
	ctx, cancel := context.WithTimeout(ctx, opcacheRequestTimeout)
	defer cancel()
	conn, err := dialFastCGI(ctx, t.Exec, s.reset.Socket)
	if err != nil {
		return nil, fmt.Errorf("cannot connect to php-fpm's pool at %s from the host: %w\nfix: check that the pool listens there (php-fpm's listen) and that the deploy user may connect (for a socket: listen.acl_users = www-data plus the deploy user in the pool, or listen.group = a group of the deploy user)", s.reset.Socket, err)
	}
	resp, err := fastcgiGet(ctx, conn, opcacheParams(script, path.Dir(script), query))
	if errors.Is(err, context.DeadlineExceeded) {
		return nil, fmt.Errorf("php-fpm's pool at %s did not answer within %s: are all its workers busy?", s.reset.Socket, opcacheRequestTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("FastCGI request to php-fpm's pool at %s: %w", s.reset.Socket, err)
	}
	return parseOPcacheAnswer(resp, script, s.reset.Socket, s.r.layout.DeployTo)
}

// dialFastCGI connects to a pool's address from the host: a unix socket
// path, or HOST:PORT.
func dialFastCGI(ctx context.Context, ex host.Executor, address string) (net.Conn, error) {
	if strings.HasPrefix(address, "/") {
		return ex.DialUnix(ctx, address)
	}
	return ex.DialTCP(ctx, address)
}

// opcacheParams are the CGI parameters of a GET of script, as a web server
// would send them for it with root as its document root.
func opcacheParams(script, root, query string) map[string]string {
	name := "/" + path.Base(script)
	return map[string]string{
		"GATEWAY_INTERFACE": "CGI/1.1",
		"SERVER_SOFTWARE":   "slipway",
		"SERVER_PROTOCOL":   "HTTP/1.1",
		"SERVER_NAME":       "localhost",
		"REMOTE_ADDR":       "127.0.0.1",
		"REQUEST_METHOD":    "GET",
		"REQUEST_URI":       name + "?" + query,
		"QUERY_STRING":      query,
		"SCRIPT_NAME":       name,
		"SCRIPT_FILENAME":   script,
		"DOCUMENT_ROOT":     root,
		"CONTENT_LENGTH":    "0",
	}
}

// parseOPcacheAnswer reads the script's answer, and explains why there is
// none: the pool could not find the script, OPcache is not loaded, the
// OPcache API is restricted.
func parseOPcacheAnswer(resp *fastcgiResponse, script, socket, deployTo string) (*opcacheState, error) {
	said := strings.TrimSpace(string(resp.Stderr))
	if resp.Status != 200 {
		what := fmt.Sprintf("php-fpm's pool at %s answered %d for %s", socket, resp.Status, script)
		if said != "" {
			what += " (" + said + ")"
		}
		switch {
		case strings.Contains(said, "Primary script unknown") || resp.Status == 404:
			return nil, fmt.Errorf("%s: the pool cannot read the live release\nfix: point socket at the pool that runs this application on this host (not chrooted, with open_basedir allowing the releases)", what)
		case strings.Contains(string(resp.Body), "Access denied"):
			return nil, fmt.Errorf("%s\nfix: the pool must run .php files (security.limit_extensions)", what)
		}
		return nil, errors.New(what)
	}
	var st opcacheState
	if err := json.Unmarshal(resp.Body, &st); err != nil {
		return nil, fmt.Errorf("php-fpm's pool at %s did not run slipway's script as PHP: %.200q %s", socket, resp.Body, said)
	}
	switch {
	case !st.Loaded:
		return &opcacheState{}, nil // nothing to reset: the extension is not loaded
	case strings.Contains(st.Error, "restrict_api"):
		return nil, fmt.Errorf("php-fpm's pool at %s: %s\nfix: set opcache.restrict_api empty, or to a prefix of %s", socket, st.Error, deployTo)
	case st.Error != "" && st.Enabled:
		return nil, fmt.Errorf("php-fpm's pool at %s could not reset OPcache: %s", socket, st.Error)
	}
	return &st, nil
}

// writeOPcacheScript writes its standard input to file, readable by the
// pool (which reads the releases).
func writeOPcacheScript(file string) string {
	return shell.Script("umask 022 && cat > {{file}}\n", shell.Args{"file": file})
}

// removeOPcacheScript deletes the script.
func removeOPcacheScript(file string) string {
	return shell.Script("rm -f -- {{file}}\n", shell.Args{"file": file})
}

// opcacheScript is what the pool runs: OPcache's state, and with do=reset
// a reset (when above=N is given, only when OPcache is fuller than N% of
// its memory, keys or interned strings). A restart already scheduled
// counts as done. The answer is JSON.
const opcacheScript = `<?php
// Written by slipway to reset OPcache in this php-fpm pool; deleted right after.
header('Content-Type: application/json');
header('Cache-Control: no-store');
if (!function_exists('opcache_get_status')) {
    echo json_encode(['loaded' => false]);
    return;
}
$status = @opcache_get_status(false);
if (!is_array($status)) {
    echo json_encode(['loaded' => true, 'enabled' => false, 'error' => error_get_last()['message'] ?? '']);
    return;
}
$memory = $status['memory_usage'];
$stats = $status['opcache_statistics'];
$strings = $status['interned_strings_usage'] ?? ['used_memory' => 0, 'buffer_size' => 0];
$total = $memory['used_memory'] + $memory['free_memory'] + $memory['wasted_memory'];
$out = [
    'loaded' => true,
    'enabled' => (bool) $status['opcache_enabled'],
    'full' => (bool) $status['cache_full'],
    'pending' => (bool) $status['restart_pending'],
    'memory' => $total > 0 ? 100 * ($memory['used_memory'] + $memory['wasted_memory']) / $total : 0,
    'keys' => $stats['max_cached_keys'] > 0 ? 100 * $stats['num_cached_keys'] / $stats['max_cached_keys'] : 0,
    'strings' => $strings['buffer_size'] > 0 ? 100 * $strings['used_memory'] / $strings['buffer_size'] : 0,
    'force_restart_timeout' => (int) ini_get('opcache.force_restart_timeout'),
];
if (($_GET['do'] ?? '') === 'reset') {
    $above = (int) ($_GET['above'] ?? 0);
    $out['reset'] = false;
    if ($above === 0 || $out['full'] || max($out['memory'], $out['keys'], $out['strings']) > $above) {
        if ($out['pending']) {
            $out['reset'] = true;
        } else {
            $out['reset'] = @opcache_reset();
            if (!$out['reset']) {
                $out['error'] = error_get_last()['message'] ?? 'opcache_reset() returned false';
            }
            $after = @opcache_get_status(false);
            $out['pending'] = is_array($after) && $after['restart_pending'];
        }
    }
}
echo json_encode($out);
`
