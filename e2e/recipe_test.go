package e2e

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/slipway-deploy/slipway/internal/testutil"
)

// fakeArtisan stands in for Laravel's artisan: it records each call (host,
// release directory, arguments) in /srv/artisan.log on the host.
const fakeArtisan = `<?php
$line = getenv('SLIPWAY_HOST') . ' ' . basename(getcwd()) . ' ' . implode(' ', array_slice($argv, 1)) . "\n";
file_put_contents('/srv/artisan.log', $line, FILE_APPEND | LOCK_EX);
`

// writeLaravelApp writes a Laravel-shaped app: artisan, bootstrap/cache,
// storage/ with its skeleton, public/index.php.
func writeLaravelApp(p *project, version string) {
	p.t.Helper()
	if err := os.RemoveAll(filepath.Join(p.dir, "app")); err != nil {
		p.t.Fatal(err)
	}
	p.write("app/artisan", fakeArtisan)
	p.write("app/public/index.php", "<?php echo 'laravel "+version+"';\n")
	p.write("app/bootstrap/cache/.gitignore", "*\n")
	p.write("app/storage/framework/views/.gitignore", "*\n")
	p.write("app/storage/logs/.gitignore", "*\n")
	p.write("app/tests/Feature/ExampleTest.php", "<?php\n")
	p.write("app/phpunit.xml", "<phpunit/>\n")
	p.write("app/.env", "APP_KEY=from-the-build-machine\n")
}

func TestLaravelRecipe(t *testing.T) {
	testutil.Require(t, "php (php-cli) for the fake artisan", fileExists("/usr/bin/php"))
	p := newProject(t, 3, testutil.Options{})
	writeLaravelApp(p, "v1")
	p.write("slipway.yml", strings.Replace(
		"app: shop\nrecipe: laravel\ndeploy_to: /srv/app\nsource:\n  path: app\nstages:\n  production:\n    hosts: [HOSTS]\n",
		"HOSTS", hostNames(p), 1))
	p.mustRun("setup", "production")
	p.putShared(".env", "APP_KEY=production")
	p.mustRun("deploy", "production")
	first := p.fleetLive()
	writeLaravelApp(p, "v2")
	p.mustRun("deploy", "production")
	second := p.fleetLive()

	log := readFile(t, p.fleet.Hosts[0].Path("/srv/artisan.log"))
	for _, h := range p.fleet.Hosts[1:] {
		log += readFile(t, h.Path("/srv/artisan.log"))
	}
	calls := strings.Split(strings.TrimSpace(log), "\n")
	for _, id := range []string{first, second} {
		for _, h := range p.fleet.Hosts {
			for _, cmd := range []string{"config:cache", "route:cache", "view:cache", "queue:restart"} {
				if !slices.Contains(calls, h.Name+" "+id+" "+cmd) {
					t.Errorf("%s: artisan %s not run in release %s", h.Name, cmd, id)
				}
			}
			migrate := slices.Contains(calls, h.Name+" "+id+" migrate --force")
			if migrate != (h.Name == "host1") {
				t.Errorf("%s: migrate --force ran=%v in release %s, want only on the primary host", h.Name, migrate, id)
			}
		}
	}
	// Order on one host: migrate before the caches, queue:restart last
	// (after the switch).
	var host1 []string
	for _, c := range calls {
		if strings.HasPrefix(c, "host1 "+second+" ") {
			host1 = append(host1, strings.TrimPrefix(c, "host1 "+second+" "))
		}
	}
	want := []string{"migrate --force", "config:cache", "route:cache", "view:cache", "queue:restart"}
	if !slices.Equal(host1, want) {
		t.Errorf("host1 artisan calls for %s = %v, want %v", second, host1, want)
	}
	for _, h := range p.fleet.Hosts {
		cur := h.Path(deployTo + "/current")
		if got := readFile(t, cur+"/.env"); got != "APP_KEY=production" {
			t.Errorf("%s: .env = %q, want the shared one (the shipped .env is excluded)", h.Name, got)
		}
		if link, _ := os.Readlink(cur + "/storage"); link != "../../shared/storage" {
			t.Errorf("%s: storage -> %q", h.Name, link)
		}
		for _, never := range []string{"tests", "phpunit.xml"} {
			if _, err := os.Stat(cur + "/" + never); !os.IsNotExist(err) {
				t.Errorf("%s: %s shipped despite the recipe", h.Name, never)
			}
		}
		info, err := os.Stat(cur + "/bootstrap/cache")
		if err != nil || info.Mode().Perm()&0o020 == 0 || info.Mode()&os.ModeSetgid == 0 || info.Mode().Perm()&0o002 != 0 {
			t.Errorf("%s: bootstrap/cache mode %v (%v), want group-writable, setgid, not world-writable", h.Name, info.Mode(), err)
		}
		if info, err := os.Stat(h.Path(deployTo + "/shared/storage")); err != nil || info.Mode().Perm()&0o020 == 0 {
			t.Errorf("%s: shared storage not made group-writable by setup: %v", h.Name, err)
		}
	}
}

func TestCheckWarnsAboutPHPFPMRestarts(t *testing.T) {
	p := newProject(t, 1, testutil.Options{})
	p.config("hooks:\n  after_switch:\n    - sudo systemctl restart php8.2-fpm\n    - sudo systemctl reload php8.2-fpm\n")
	res := p.mustRun("check", "production")
	if !strings.Contains(res.stderr, "restarts php-fpm: every request in flight is killed") || !strings.Contains(res.stderr, "$realpath_root") {
		t.Errorf("no restart warning:\n%s", res.stderr)
	}
	if fileExists("/etc/php/8.2/fpm/php-fpm.conf") && !strings.Contains(res.stderr, "process_control_timeout is 0") {
		t.Errorf("no reload warning though the host's php-fpm.conf leaves process_control_timeout at 0:\n%s", res.stderr)
	}
	if !strings.Contains(res.stdout, "warning") {
		t.Errorf("check table does not mention the warnings:\n%s", res.stdout)
	}
	p.config("hooks:\n  after_switch:\n    - sudo systemctl reload nginx\n")
	if res := p.mustRun("check", "production"); strings.Contains(res.stderr, "php-fpm") {
		t.Errorf("warning for a hook that does not touch php-fpm:\n%s", res.stderr)
	}
}

func hostNames(p *project) string {
	var names []string
	for _, h := range p.fleet.Hosts {
		names = append(names, h.Name)
	}
	return strings.Join(names, ", ")
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
