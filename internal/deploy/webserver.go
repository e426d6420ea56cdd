package deploy

import (
	"context"
	"fmt"
	"path"
	"strings"

	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/shell"
)

// slipway check reads the host's web server configuration where it lives
// on Debian, Ubuntu and RHEL, and warns when a server that runs PHP from
// the deploy directory tells PHP the path through `current`: PHP caches
// by path, so after a switch it goes on serving the old release (up to
// realpath_cache_ttl, 120 s, and for ever with
// opcache.validate_timestamps=0), and a request can mix two releases. Each
// warning names the file and the fix the end-to-end suite proves
// (e2e/webservers_test.go).

// webConfigFiles are where nginx, Apache httpd and Caddy keep the sites
// they serve.
var webConfigFiles = []string{
	"/etc/nginx/nginx.conf", "/etc/nginx/conf.d/*.conf", "/etc/nginx/sites-enabled/*",
	"/etc/apache2/apache2.conf", "/etc/apache2/sites-enabled/*", "/etc/apache2/conf-enabled/*",
	"/etc/httpd/conf/httpd.conf", "/etc/httpd/conf.d/*.conf",
	"/etc/caddy/Caddyfile", "/etc/caddy/conf.d/*", "/etc/caddy/sites-enabled/*",
}

// webConfigLimit bounds what is read of one file.
const webConfigLimit = 256 << 10

// webConfigScript prints every web server configuration file that names
// current (the deploy directory's link) as "==> FILE" and its lines, each
// after a "|" (so no line of a file reads as a header),
// then "==> mod_php FILE" for each PHP module Apache loads (Debian's
// mods-enabled, RHEL's conf.modules.d) and "==> php-fpm FILE" for each
// configuration that hands every .php file of Apache to php-fpm (Debian's
// conf-enabled/php8.2-fpm.conf, RHEL's conf.d/php.conf).
func webConfigScript(current string) string {
	return shell.Script(`for f in `+strings.Join(webConfigFiles, " ")+`; do
  [ -f "$f" ] && [ -r "$f" ] || continue
  grep -qF -- {{current}} "$f" 2>/dev/null || continue
  printf '==> %s\n' "$f"
  head -c {{limit}} -- "$f" | sed 's/^/|/'
done
for f in /etc/apache2/mods-enabled/php*.load /etc/httpd/conf.modules.d/*php*.conf; do
  [ -f "$f" ] && grep -q '^[[:space:]]*LoadModule' "$f" 2>/dev/null && printf '==> mod_php %s\n' "$f"
done
for f in /etc/apache2/conf-enabled/php*-fpm.conf /etc/httpd/conf.d/php.conf; do
  [ -f "$f" ] && grep -q 'proxy:' "$f" 2>/dev/null && printf '==> php-fpm %s\n' "$f"
done
true
`, shell.Args{"current": current, "limit": fmt.Sprint(webConfigLimit)})
}

// webConfig is one file webConfigScript printed.
type webConfig struct {
	file, text string
}

// apachePHP says how Apache runs PHP for every virtual host, besides
// what a virtual host sets itself.
type apachePHP struct{ modPHP, fpm bool }

// parseWebConfigs splits webConfigScript's output into its files, and
// says how Apache runs PHP.
func parseWebConfigs(out string) (files []webConfig, php apachePHP) {
	var cur *webConfig
	var text strings.Builder
	flush := func() {
		if cur != nil {
			cur.text = text.String()
			files = append(files, *cur)
		}
		cur = nil
		text.Reset()
	}
	for line := range strings.Lines(out) {
		if content, ok := strings.CutPrefix(line, "|"); ok {
			if cur != nil {
				text.WriteString(content)
			}
			continue
		}
		if name, ok := strings.CutPrefix(strings.TrimRight(line, "\n"), "==> "); ok {
			flush()
			switch {
			case strings.HasPrefix(name, "mod_php "):
				php.modPHP = true
				continue
			case strings.HasPrefix(name, "php-fpm "):
				php.fpm = true
				continue
			}
			cur = &webConfig{file: name}
		}
	}
	flush()
	return files, php
}

// webServerWarnings reads the web server configuration on t and explains
// each site that runs PHP from the deploy directory without the setting
// that resolves `current` per request. opcache_reset without above (a
// reset after every switch) covers php-fpm behind any server; it cannot
// reach mod_php.
func (r *run) webServerWarnings(ctx context.Context, t *Target) []string {
	current := r.layout.CurrentLink()
	res, err := t.Exec.Query(ctx, host.Command{Script: webConfigScript(current)})
	if err != nil {
		return []string{fmt.Sprintf("could not read the web server configuration: %v", err)}
	}
	files, php := parseWebConfigs(string(res.Stdout))
	resetAlways := r.opts.Config.OPcacheReset != nil && r.opts.Config.OPcacheReset.Above == 0
	var out []string
	for _, f := range files {
		for _, w := range siteWarnings(f, current, r.layout.ReleasesDir(), php) {
			if resetAlways && w.fpm {
				continue
			}
			out = append(out, w.text)
		}
	}
	return out
}

// siteWarning is one unsafe site; fpm when its PHP is php-fpm's (which
// opcache_reset can reach).
type siteWarning struct {
	text string
	fpm  bool
}

// siteWarnings explains the sites of one configuration file that serve
// current to PHP through the link.
func siteWarnings(f webConfig, current, releases string, php apachePHP) []siteWarning {
	text := stripComments(f.text)
	var out []siteWarning
	switch {
	case strings.HasPrefix(f.file, "/etc/nginx/"):
		for _, block := range blocks(text, "server") {
			if !strings.Contains(block, current) || !hasWord(block, "fastcgi_pass") {
				continue
			}
			if !nginxResolvesRoot(block) {
				out = append(out, siteWarning{fpm: true, text: fmt.Sprintf(
					"nginx: %s runs PHP from %s but passes PHP the path through the link ($document_root, or snippets/fastcgi-php.conf alone): after a deploy, PHP keeps serving the old release (for up to 120 s, for ever with opcache.validate_timestamps=0). "+
						"Fix: after the include, fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name; and fastcgi_param DOCUMENT_ROOT $realpath_root; (examples/nginx/slipway-php.conf)", f.file, current)})
			}
		}
	case strings.HasPrefix(f.file, "/etc/apache2/") || strings.HasPrefix(f.file, "/etc/httpd/"):
		for _, block := range blocks(text, "<VirtualHost") {
			if !strings.Contains(block, current) {
				continue
			}
			fpm := strings.Contains(block, "proxy:") || strings.Contains(block, "fcgi://") || php.fpm && !php.modPHP
			if !fpm && !php.modPHP || apacheResolvesCurrent(block, current, releases) {
				continue
			}
			example, runs := "examples/apache-modphp/shop.conf", "mod_php"
			if fpm {
				example, runs = "examples/apache-fpm/shop.conf", "php-fpm"
			}
			out = append(out, siteWarning{fpm: fpm, text: fmt.Sprintf(
				"Apache: a virtual host in %s serves %s to %s through the link: after a deploy, PHP keeps serving the old release (for up to 120 s, for ever with opcache.validate_timestamps=0), and a reload of Apache does not change that. "+
					"Fix: resolve the link per request with the four Rewrite lines (RewriteMap ... prg: resolver, RewriteCond, RewriteRule) of %s", f.file, current, runs, example)})
		}
	case strings.HasPrefix(f.file, "/etc/caddy/"):
		for _, block := range caddySites(text) {
			if strings.Contains(block, current) && hasWord(block, "php_fastcgi") && !hasWord(block, "resolve_root_symlink") {
				out = append(out, siteWarning{fpm: true, text: fmt.Sprintf(
					"Caddy: a site in %s serves %s to php-fpm without resolve_root_symlink: after a deploy, PHP keeps serving the old release (for up to 120 s, for ever with opcache.validate_timestamps=0). "+
						"Fix: add resolve_root_symlink to its php_fastcgi block (examples/caddy/Caddyfile)", f.file, current)})
			}
		}
	}
	return out
}

// nginxResolvesRoot reports whether a server block passes PHP the root
// nginx resolved for the request.
func nginxResolvesRoot(block string) bool {
	for line := range strings.Lines(block) {
		fields := strings.Fields(strings.ReplaceAll(line, ";", " ; "))
		if len(fields) >= 3 && fields[0] == "fastcgi_param" && fields[1] == "SCRIPT_FILENAME" && strings.HasPrefix(fields[2], "$realpath_root") {
			return true
		}
	}
	return false
}

// apacheResolvesCurrent reports whether a virtual host maps requests into
// the release current points at, as the examples do: a RewriteCond on a
// RewriteMap lookup of current (the map may be defined for the whole
// server), and a RewriteRule into releases/.
func apacheResolvesCurrent(block, current, releases string) bool {
	hasCond, hasRule := false, false
	for line := range strings.Lines(block) {
		fields := strings.Fields(line)
		if len(fields) < 3 {
			continue
		}
		switch fields[0] {
		case "RewriteCond":
			hasCond = hasCond || strings.Contains(fields[1], ":"+current+"}")
		case "RewriteRule":
			hasRule = hasRule || strings.HasPrefix(fields[2], releases+"/")
		}
	}
	return hasCond && hasRule
}

// stripComments removes # comments (outside quotes) from a configuration.
func stripComments(text string) string {
	var b strings.Builder
	for line := range strings.Lines(text) {
		quote := byte(0)
		cut := len(line)
		for i := 0; i < len(line); i++ {
			c := line[i]
			switch {
			case quote != 0 && c == '\\':
				i++
			case quote != 0 && c == quote:
				quote = 0
			case quote == 0 && (c == '"' || c == '\''):
				quote = c
			case quote == 0 && c == '#' && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t'):
				cut = i
			}
			if cut < len(line) {
				break
			}
		}
		b.WriteString(strings.TrimRight(line[:cut], " \t\n"))
		b.WriteString("\n")
	}
	return b.String()
}

// blocks returns the blocks of text that open with a line starting with
// opener: an nginx "server {" (closed by the matching brace) or an Apache
// "<VirtualHost ...>" (closed by </VirtualHost>).
func blocks(text, opener string) []string {
	var out []string
	lines := strings.SplitAfter(text, "\n")
	for i := 0; i < len(lines); i++ {
		trimmed := strings.TrimSpace(lines[i])
		if !strings.HasPrefix(trimmed, opener) {
			continue
		}
		if opener == "<VirtualHost" {
			j := i
			for j < len(lines) && !strings.HasPrefix(strings.TrimSpace(lines[j]), "</VirtualHost") {
				j++
			}
			out = append(out, strings.Join(lines[i:min(j+1, len(lines))], ""))
			i = j
			continue
		}
		if rest := strings.TrimPrefix(trimmed, opener); rest != "" && rest[0] != ' ' && rest[0] != '{' && rest[0] != '\t' {
			continue // server_name, server_tokens
		}
		depth, j := 0, i
		for ; j < len(lines); j++ {
			depth += strings.Count(lines[j], "{") - strings.Count(lines[j], "}")
			if depth <= 0 && j > i || depth <= 0 && strings.Contains(lines[j], "}") {
				break
			}
		}
		out = append(out, strings.Join(lines[i:min(j+1, len(lines))], ""))
		i = j
	}
	return out
}

// caddySites returns the top-level blocks of a Caddyfile: its sites (and
// the global options and snippets, which name no root).
func caddySites(text string) []string {
	var out []string
	var cur strings.Builder
	depth := 0
	for line := range strings.Lines(text) {
		if depth == 0 && strings.TrimSpace(line) == "" {
			continue
		}
		cur.WriteString(line)
		depth += strings.Count(line, "{") - strings.Count(line, "}")
		if depth <= 0 {
			out = append(out, cur.String())
			cur.Reset()
			depth = 0
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// hasWord reports whether a line of text starts with directive.
func hasWord(text, directive string) bool {
	for line := range strings.Lines(text) {
		if f := strings.Fields(line); len(f) > 0 && f[0] == directive {
			return true
		}
	}
	return false
}

// opcacheProblems: opcache_reset's socket must be reachable from the host
// as the deploy user, or the deploy fails after its switch.
func (r *run) opcacheProblems(ctx context.Context, t *Target, user string) []Problem {
	reset := r.opts.Config.OPcacheReset
	if reset == nil {
		return nil
	}
	conn, err := dialFastCGI(ctx, t.Exec, reset.Socket)
	if err == nil {
		conn.Close()
		return nil
	}
	fix := "point opcache_reset.socket at the pool's listen address on this host"
	if path.IsAbs(reset.Socket) {
		fix += fmt.Sprintf(", and let %s connect to it: listen.acl_users = www-data,%s in the pool (or listen.group = a group of %s)", user, user, user)
	}
	return []Problem{{
		What: fmt.Sprintf("opcache_reset.socket %s: cannot connect from the host as %s (%v); every deploy would fail after its switch", reset.Socket, user, err),
		Fix:  fix,
	}}
}
