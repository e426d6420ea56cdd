package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway-deploy/slipway/internal/testutil"
)

// webConfigs writes, into a directory of its own each, the site
// configurations of nginx, Apache with php-fpm and Caddy for deployTo, from
// the examples in the variant paths, and returns the directories for
// sites-enabled and the Caddyfile.
func webConfigs(t *testing.T, paths testutil.Paths) (nginxDir, apacheDir, caddyfile string) {
	t.Helper()
	root, err := testutil.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	example := func(rel string) string { return readFile(t, filepath.Join(root, rel)) }
	docRoot := testutil.RealpathRoot
	if paths == testutil.LinkPaths {
		docRoot = testutil.DocumentRoot
	}
	nginx, err := testutil.NginxConfig(example(testutil.NginxExample), "80", deployTo+"/current/public", "unix:"+testutil.ExampleFPMSocket, docRoot)
	if err != nil {
		t.Fatal(err)
	}
	apache, err := testutil.ApacheConfig(example(testutil.ApacheFPMExample), 80, deployTo, testutil.ExampleFPMSocket, paths)
	if err != nil {
		t.Fatal(err)
	}
	caddy, err := testutil.CaddyConfig(example(testutil.CaddyExample), "shop.example.com", deployTo, testutil.ExampleFPMSocket, paths)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	nginxDir, apacheDir, caddyfile = filepath.Join(dir, "nginx"), filepath.Join(dir, "apache"), filepath.Join(dir, "Caddyfile")
	for _, f := range []struct{ path, text string }{
		{filepath.Join(nginxDir, "shop"), nginx}, {filepath.Join(apacheDir, "shop.conf"), apache}, {caddyfile, caddy},
	} {
		if err := os.MkdirAll(filepath.Dir(f.path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f.path, []byte(f.text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return nginxDir, apacheDir, caddyfile
}

// TestCheckReadsWebServerConfiguration: slipway check reads each host's
// nginx, Apache and Caddy configuration and warns, with the fix, about
// every site that tells PHP the path through `current` (the configurations
// TestWebServersWithoutResolvedPathsServeStale shows serving stale
// releases), and about none configured as the examples. With
// opcache_reset, a socket the deploy user cannot reach is a problem.
func TestCheckReadsWebServerConfiguration(t *testing.T) {
	t.Parallel()
	for _, target := range []string{"/etc/nginx/sites-enabled", "/etc/apache2/sites-enabled", "/etc/caddy/Caddyfile"} {
		_, err := os.Stat(target)
		testutil.Require(t, target+", where the test puts a host's site: apt-get install nginx apache2 caddy (scripts/install-test-deps.sh)", err == nil)
	}
	p := newProject(t, 2, testutil.Options{})
	p.config("")
	for i, paths := range []testutil.Paths{testutil.LinkPaths, testutil.ResolvedPaths} {
		h := p.fleet.Hosts[i]
		nginxDir, apacheDir, caddyfile := webConfigs(t, paths)
		h.BindMount(t, nginxDir, "/etc/nginx/sites-enabled")
		h.BindMount(t, apacheDir, "/etc/apache2/sites-enabled")
		h.BindMount(t, caddyfile, "/etc/caddy/Caddyfile")
	}

	res := p.mustRun("check", "production")
	out := res.stdout + res.stderr
	t.Logf("slipway check:\n%s", out)
	for _, want := range []string{
		"host1  warning: nginx: /etc/nginx/sites-enabled/shop runs PHP from /srv/app/current but passes PHP the path through the link",
		"Fix: after the include, fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;",
		"host1  warning: Apache: a virtual host in /etc/apache2/sites-enabled/shop.conf serves /srv/app/current to php-fpm through the link",
		"the four Rewrite lines (RewriteMap ... prg: resolver, RewriteCond, RewriteRule) of examples/apache-fpm/shop.conf",
		"host1  warning: Caddy: a site in /etc/caddy/Caddyfile serves /srv/app/current to php-fpm without resolve_root_symlink",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("check does not say %q", want)
		}
	}
	for _, server := range []string{"nginx", "Apache", "Caddy"} {
		if strings.Contains(out, "host2  warning: "+server) {
			t.Errorf("check warns about %s on host2, configured as the example", server)
		}
	}

	// A reset after every switch covers php-fpm behind any server; a
	// socket the deploy user cannot reach would fail every deploy after
	// its switch.
	p.config("opcache_reset:\n  socket: /srv/no-such-php-fpm.sock\n")
	res = p.expectCode(1, "check", "production")
	out = res.stdout + res.stderr
	t.Logf("slipway check with opcache_reset:\n%s", out)
	if strings.Contains(out, "warning: nginx") || strings.Contains(out, "warning: Caddy") || strings.Contains(out, "to php-fpm through the link") {
		t.Errorf("check warns about php-fpm's sites although opcache_reset resets the pool after every switch")
	}
	for _, h := range []string{"host1", "host2"} {
		want := h + ": opcache_reset.socket /srv/no-such-php-fpm.sock: cannot connect from the host as " + p.fleet.User
		if !strings.Contains(out, want) || !strings.Contains(out, "listen.acl_users = www-data,"+p.fleet.User) {
			t.Errorf("check does not say %q with the fix", want)
		}
	}
}
