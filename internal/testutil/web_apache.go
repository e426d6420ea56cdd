package testutil

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
)

// The virtual hosts slipway documents for Apache httpd, relative to the
// module root. StartStack serves them, so the shipped examples are the
// tested ones.
const (
	ApacheFPMExample    = "examples/apache-fpm/shop.conf"
	ApacheModPHPExample = "examples/apache-modphp/shop.conf"
)

// apacheModules is where Debian keeps Apache's modules.
const apacheModules = "/usr/lib/apache2/modules"

// apacheResolver are the directives of the Apache examples that resolve
// `current` for each request; LinkPaths leaves them out.
var apacheResolver = []string{"RewriteEngine", "RewriteMap", "RewriteCond", "RewriteRule"}

// requireApache returns the path of Apache httpd, or skips (fails in CI)
// the test, checking the modules and the user the server's stack needs.
func requireApache(t testing.TB, server Server) string {
	t.Helper()
	const apache = "/usr/sbin/apache2"
	Require(t, apache+": apt-get install apache2 (scripts/install-test-deps.sh)", isExecutable(apache))
	modules := []string{"mod_mpm_event.so", "mod_proxy.so", "mod_proxy_fcgi.so"}
	if server == ApacheModPHP {
		modules = []string{"mod_mpm_prefork.so"}
		php, conf := modPHP()
		Require(t, "mod_php at "+apacheModules+"/libphp*.so with its /etc/apache2/mods-available/php*.conf: apt-get install libapache2-mod-php (scripts/install-test-deps.sh)", php != "" && conf != "")
	}
	for _, m := range append(modules, "mod_authz_core.so", "mod_dir.so", "mod_mime.so", "mod_rewrite.so") {
		Require(t, "Apache module "+apacheModules+"/"+m+": apt-get install apache2", isRegular(filepath.Join(apacheModules, m)))
	}
	_, err := user.Lookup("www-data")
	Require(t, "the user www-data, which Apache's children run as: apt-get install apache2", err == nil)
	return apache
}

// modPHP returns Debian's mod_php and the configuration that hands .php
// files to it ("" if missing), for the highest PHP version installed.
func modPHP() (module, conf string) {
	libs, _ := filepath.Glob(filepath.Join(apacheModules, "libphp*.so"))
	if len(libs) == 0 {
		return "", ""
	}
	module = libs[len(libs)-1]
	version := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(module), "libphp"), ".so")
	conf = "/etc/apache2/mods-available/php" + version + ".conf"
	if !isRegular(conf) {
		return module, ""
	}
	return module, conf
}

// ApacheConfig turns a virtual host example into the one a test serves:
// its <VirtualHost *:80> listens on port, ExampleDeployTo becomes deployTo
// and, if socket is not "", ExampleFPMSocket becomes socket. With LinkPaths
// its four Rewrite lines (the resolver) are left out. Every other line
// stays as it is. It is an error if the example does not have exactly one
// of each: the test would no longer prove what the example says.
func ApacheConfig(example string, port int, deployTo, socket string, paths Paths) (string, error) {
	out, err := replaceExact(example, "<VirtualHost *:80>", fmt.Sprintf("<VirtualHost *:%d>", port), 1, "the virtual host")
	if err != nil {
		return "", err
	}
	if socket != "" {
		if out, err = replaceExact(out, ExampleFPMSocket, socket, 1, "php-fpm's socket"); err != nil {
			return "", err
		}
	}
	if !strings.Contains(out, ExampleDeployTo) {
		return "", fmt.Errorf("the example does not serve %s", ExampleDeployTo)
	}
	out = strings.ReplaceAll(out, ExampleDeployTo, deployTo)
	var lines []string
	for line := range strings.Lines(out) {
		lines = append(lines, line)
	}
	var kept []string
	for _, directive := range apacheResolver {
		n := 0
		for _, line := range lines {
			if directiveName(line) == directive {
				n++
			}
		}
		if n != 1 {
			return "", fmt.Errorf("want exactly one %s line, found %d", directive, n)
		}
	}
	for _, line := range lines {
		if paths == LinkPaths && isApacheResolver(line) {
			continue
		}
		kept = append(kept, line)
	}
	return strings.Join(kept, ""), nil
}

// directiveName is the first word of a configuration line, "" for a
// comment or a blank line.
func directiveName(line string) string {
	fields := strings.Fields(line)
	if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
		return ""
	}
	return fields[0]
}

func isApacheResolver(line string) bool {
	name := directiveName(line)
	for _, d := range apacheResolver {
		if name == d {
			return true
		}
	}
	return false
}

// apacheCommand writes the configuration of an Apache stack (a server
// configuration of its own that includes the example, as
// /etc/apache2/apache2.conf includes sites-enabled) and returns the
// command that runs Apache in the foreground.
func (w *Web) apacheCommand(opts StackOptions, program string, port int, example func(string) (string, error)) ([]string, string, error) {
	rel, socket := ApacheFPMExample, w.Socket
	if opts.Server == ApacheModPHP {
		rel, socket = ApacheModPHPExample, ""
	}
	vhost, err := example(rel)
	if err != nil {
		return nil, "", err
	}
	site, err := ApacheConfig(vhost, port, opts.DeployTo, socket, opts.Paths)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", rel, err)
	}
	if err := os.WriteFile(filepath.Join(w.Dir, "site.conf"), []byte(site), 0o644); err != nil {
		return nil, "", err
	}
	errorLog := filepath.Join(w.Dir, "apache-error.log")
	var server strings.Builder
	fmt.Fprintf(&server, `# Apache httpd of a slipway end-to-end test
ServerRoot /etc/apache2
Listen 127.0.0.1:%[1]d
ServerName 127.0.0.1
User www-data
Group www-data
PidFile %[2]s/apache.pid
DefaultRuntimeDir %[2]s
ErrorLog %[3]s
LogLevel warn
TypesConfig /etc/mime.types
LoadModule authz_core_module %[4]s/mod_authz_core.so
LoadModule dir_module %[4]s/mod_dir.so
LoadModule mime_module %[4]s/mod_mime.so
LoadModule rewrite_module %[4]s/mod_rewrite.so
`, port, w.Dir, errorLog, apacheModules)
	if opts.Server == ApacheModPHP {
		module, conf := modPHP()
		// Every child is started up front, as php-fpm's workers are.
		fmt.Fprintf(&server, `LoadModule mpm_prefork_module %[1]s/mod_mpm_prefork.so
StartServers %[2]d
MinSpareServers %[2]d
MaxSpareServers %[3]d
ServerLimit %[3]d
MaxRequestWorkers %[3]d
LoadModule php_module %[4]s
# Debian's: .php files go to PHP.
Include %[5]s
`, apacheModules, w.Workers, 2*w.Workers, module, conf)
		for _, setting := range opts.PHP {
			name, value, _ := strings.Cut(setting, "=")
			fmt.Fprintf(&server, "php_admin_value %s %s\n", name, value)
		}
	} else {
		// flushpackets: PHP's output goes out as PHP flushes it, so that
		// the slow test request streams (as nginx's X-Accel-Buffering).
		fmt.Fprintf(&server, `LoadModule mpm_event_module %[1]s/mod_mpm_event.so
LoadModule proxy_module %[1]s/mod_proxy.so
LoadModule proxy_fcgi_module %[1]s/mod_proxy_fcgi.so
<Proxy "unix:%[2]s|fcgi://localhost">
    ProxySet flushpackets=on
</Proxy>
`, apacheModules, w.Socket)
	}
	fmt.Fprintf(&server, "Include %s/site.conf\n", w.Dir)
	if err := os.WriteFile(filepath.Join(w.Dir, "apache.conf"), []byte(server.String()), 0o644); err != nil {
		return nil, "", err
	}
	return []string{program, "-f", filepath.Join(w.Dir, "apache.conf"), "-D", "FOREGROUND"}, errorLog, nil
}
