package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const (
	exampleCurrent  = "/var/www/shop/current"
	exampleReleases = "/var/www/shop/releases"
)

func readExample(t *testing.T, rel string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// withoutLines drops the lines of text that start (after indentation)
// with one of prefixes.
func withoutLines(text string, prefixes ...string) string {
	var b strings.Builder
	for line := range strings.Lines(text) {
		drop := false
		for _, p := range prefixes {
			drop = drop || strings.HasPrefix(strings.TrimSpace(line), p)
		}
		if !drop {
			b.WriteString(line)
		}
	}
	return b.String()
}

// TestWebServerWarnings holds check's reading of web server
// configurations to the examples: as shipped they pass, and without the
// setting that resolves current per request (the variant the end-to-end
// suite shows serving stale releases) they are named with the fix.
func TestWebServerWarnings(t *testing.T) {
	nginx := readExample(t, "examples/nginx/slipway-php.conf")
	apacheFPM := readExample(t, "examples/apache-fpm/shop.conf")
	apacheModPHP := readExample(t, "examples/apache-modphp/shop.conf")
	caddy := readExample(t, "examples/caddy/Caddyfile")
	unresolvedApache := []string{"RewriteEngine", "RewriteMap", "RewriteCond", "RewriteRule"}
	for _, tc := range []struct {
		name, file, text string
		php              apachePHP
		want             string // in the one warning; "" for none
		fpm              bool
	}{
		{"nginx example", "/etc/nginx/sites-enabled/shop", nginx, apachePHP{}, "", false},
		{"nginx $document_root", "/etc/nginx/sites-enabled/shop", strings.ReplaceAll(nginx, "$realpath_root", "$document_root"), apachePHP{}, "nginx: /etc/nginx/sites-enabled/shop runs PHP from /var/www/shop/current but passes PHP the path through the link", true},
		{"nginx with Debian's snippet", "/etc/nginx/conf.d/shop.conf", "server {\n    listen 80;\n    root /var/www/shop/current/public;\n    location ~ \\.php$ {\n        include snippets/fastcgi-php.conf;\n        fastcgi_pass unix:/run/php/php8.2-fpm.sock;\n    }\n}\n", apachePHP{}, "Fix: after the include, fastcgi_param SCRIPT_FILENAME $realpath_root", true},
		{"nginx static site", "/etc/nginx/sites-enabled/shop", "server {\n    root /var/www/shop/current/public;\n}\n", apachePHP{}, "", false},
		{"nginx comment", "/etc/nginx/sites-enabled/shop", "server {\n    root /var/www/shop/current/public;\n    # fastcgi_pass unix:/run/php.sock;\n}\n", apachePHP{}, "", false},
		{"apache php-fpm example", "/etc/apache2/sites-enabled/shop.conf", apacheFPM, apachePHP{}, "", false},
		{"apache php-fpm without the resolver", "/etc/apache2/sites-enabled/shop.conf", withoutLines(apacheFPM, unresolvedApache...), apachePHP{}, "Apache: a virtual host in /etc/apache2/sites-enabled/shop.conf serves /var/www/shop/current to php-fpm through the link", true},
		{"apache with Debian's php-fpm conf", "/etc/apache2/sites-enabled/shop.conf", "<VirtualHost *:80>\n    DocumentRoot /var/www/shop/current/public\n</VirtualHost>\n", apachePHP{fpm: true}, "examples/apache-fpm/shop.conf", true},
		{"apache mod_php example", "/etc/httpd/conf.d/shop.conf", apacheModPHP, apachePHP{modPHP: true}, "", false},
		{"apache mod_php without the resolver", "/etc/httpd/conf.d/shop.conf", withoutLines(apacheModPHP, unresolvedApache...), apachePHP{modPHP: true}, "to mod_php through the link", false},
		{"apache without PHP", "/etc/apache2/sites-enabled/shop.conf", withoutLines(apacheModPHP, unresolvedApache...), apachePHP{}, "", false},
		{"caddy example", "/etc/caddy/Caddyfile", caddy, apachePHP{}, "", false},
		{"caddy without resolve_root_symlink", "/etc/caddy/Caddyfile", withoutLines(caddy, "resolve_root_symlink"), apachePHP{}, "Caddy: a site in /etc/caddy/Caddyfile serves /var/www/shop/current to php-fpm without resolve_root_symlink", true},
		{"caddy: another site", "/etc/caddy/Caddyfile", "{\n\temail ops@example.com\n}\n\nother.example.com {\n\troot * /srv/other\n\tphp_fastcgi unix//run/php.sock\n}\n\n" + caddy, apachePHP{}, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := siteWarnings(webConfig{file: tc.file, text: tc.text}, exampleCurrent, exampleReleases, tc.php)
			switch {
			case tc.want == "" && len(got) > 0:
				t.Errorf("warned: %+v", got)
			case tc.want != "" && (len(got) != 1 || !strings.Contains(got[0].text, tc.want) || got[0].fpm != tc.fpm):
				t.Errorf("got %+v, want one warning (fpm %v) with %q", got, tc.fpm, tc.want)
			}
		})
	}
}

func TestParseWebConfigs(t *testing.T) {
	out := "==> /etc/nginx/sites-enabled/a\n|server {\n|==> not a header inside\n|}\n==> /etc/caddy/Caddyfile\n|site {\n|}\n|\n==> mod_php /etc/apache2/mods-enabled/php8.2.load\n==> php-fpm /etc/apache2/conf-enabled/php8.2-fpm.conf\n"
	files, php := parseWebConfigs(out)
	if len(files) != 2 || files[0].file != "/etc/nginx/sites-enabled/a" || files[1].file != "/etc/caddy/Caddyfile" || !php.modPHP || !php.fpm {
		t.Fatalf("%+v %+v", files, php)
	}
	if files[0].text != "server {\n==> not a header inside\n}\n" || files[1].text != "site {\n}\n\n" {
		t.Errorf("%q %q", files[0].text, files[1].text)
	}
}

func TestWebConfigScript(t *testing.T) {
	script := webConfigScript("/srv/a b/$(x)'/current")
	if out, err := exec.Command("sh", "-n", "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("sh -n: %v %s\n%s", err, out, script)
	}
	// On this machine: whatever it has, the script succeeds and names no
	// file without the path.
	out, err := exec.Command("sh", "-c", webConfigScript("/nonexistent/slipway-test/current")).CombinedOutput()
	if err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if files, _ := parseWebConfigs(string(out)); len(files) > 0 {
		t.Errorf("files that do not name the path: %+v", files)
	}
}
