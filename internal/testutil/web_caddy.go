package testutil

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// CaddyExample is the Caddyfile slipway documents for PHP applications,
// relative to the module root. StartStack serves it, so the shipped example
// is the tested one.
const CaddyExample = "examples/caddy/Caddyfile"

// caddySite is the example's site address.
const caddySite = "shop.example.com {"

// requireCaddy returns the path of Caddy, or skips (fails in CI) the test.
func requireCaddy(t testing.TB) string {
	t.Helper()
	const caddy = "/usr/bin/caddy"
	Require(t, caddy+": apt-get install caddy (scripts/install-test-deps.sh)", isExecutable(caddy))
	return caddy
}

// CaddyConfig turns the example into the Caddyfile a test serves: its site
// is address, ExampleDeployTo becomes deployTo and ExampleFPMSocket
// becomes socket; php_fastcgi gets flush_interval -1, so that PHP's output
// goes out as PHP flushes it (the slow test request streams, as with
// nginx's X-Accel-Buffering). With LinkPaths its resolve_root_symlink line
// is left out. Every other line stays as it is. It is an error if the
// example does not have exactly one of each.
func CaddyConfig(example, address, deployTo, socket string, paths Paths) (string, error) {
	out, err := replaceExact(example, caddySite, address+" {", 1, "the site")
	if err == nil {
		out, err = replaceExact(out, ExampleFPMSocket, socket, 1, "php-fpm's socket")
	}
	if err != nil {
		return "", err
	}
	if !strings.Contains(out, ExampleDeployTo) {
		return "", fmt.Errorf("the example does not serve %s", ExampleDeployTo)
	}
	out = strings.ReplaceAll(out, ExampleDeployTo, deployTo)
	var kept []string
	resolve, fastcgi := 0, 0
	for line := range strings.Lines(out) {
		switch directiveName(line) {
		case "resolve_root_symlink":
			resolve++
			if paths == LinkPaths {
				continue
			}
		case "php_fastcgi":
			fastcgi++
			if !strings.HasSuffix(strings.TrimSpace(line), "{") {
				return "", fmt.Errorf("php_fastcgi has no block: %q", line)
			}
			indent := line[:len(line)-len(strings.TrimLeft(line, " \t"))]
			kept = append(kept, line, indent+"\tflush_interval -1\n")
			continue
		}
		kept = append(kept, line)
	}
	if resolve != 1 || fastcgi != 1 {
		return "", fmt.Errorf("want exactly one php_fastcgi and one resolve_root_symlink line, found %d and %d", fastcgi, resolve)
	}
	return strings.Join(kept, ""), nil
}

// caddyCommand writes the Caddyfile of a Caddy stack (global options of
// the test, then the example) and returns the command that runs Caddy in
// the foreground.
func (w *Web) caddyCommand(opts StackOptions, program string, port int, example func(string) (string, error)) ([]string, string, error) {
	site, err := example(CaddyExample)
	if err != nil {
		return nil, "", err
	}
	site, err = CaddyConfig(site, fmt.Sprintf("http://127.0.0.1:%d", port), opts.DeployTo, w.Socket, opts.Paths)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", CaddyExample, err)
	}
	// No admin endpoint (tests run in parallel; it would take port 2019),
	// no certificates, storage in Dir.
	config := fmt.Sprintf(`# Caddy of a slipway end-to-end test
{
	admin off
	auto_https off
	storage file_system %s/data
}

%s`, w.Dir, site)
	path := filepath.Join(w.Dir, "Caddyfile")
	if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
		return nil, "", err
	}
	// Caddy keeps its autosaved configuration under HOME / XDG_CONFIG_HOME.
	return []string{"/usr/bin/env", "HOME=" + w.Dir, "XDG_CONFIG_HOME=" + w.Dir + "/config", "XDG_DATA_HOME=" + w.Dir + "/data",
		program, "run", "--config", path, "--adapter", "caddyfile"}, filepath.Join(w.Dir, "caddy.log"), nil
}
