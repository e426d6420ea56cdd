package testutil

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Server is a web server that runs PHP in a stack StartStack starts, each
// configured by the example slipway documents for it.
type Server string

const (
	// Nginx in front of php-fpm, NginxExample.
	Nginx Server = "nginx+php-fpm"
	// ApacheFPM is Apache httpd (event MPM) in front of php-fpm through
	// mod_proxy_fcgi, ApacheFPMExample.
	ApacheFPM Server = "apache+php-fpm"
	// ApacheModPHP is Apache httpd (prefork MPM) running PHP itself,
	// ApacheModPHPExample.
	ApacheModPHP Server = "apache+mod_php"
	// Caddy in front of php-fpm through php_fastcgi, CaddyExample.
	Caddy Server = "caddy+php-fpm"
)

// Servers are all the servers StartStack starts, in the order the README
// lists them.
var Servers = []Server{Nginx, ApacheFPM, ApacheModPHP, Caddy}

// Paths is what a stack tells PHP about where the script is.
type Paths int

const (
	// ResolvedPaths is the server's example as shipped: PHP is told the
	// script's path with `current` resolved for each request
	// (releases/<id>/public/index.php).
	ResolvedPaths Paths = iota
	// LinkPaths is the common configuration, the example without its
	// resolving setting: PHP is told current/public/index.php (nginx
	// $document_root; Apache without the RewriteMap; Caddy without
	// resolve_root_symlink).
	LinkPaths
)

func (p Paths) String() string {
	if p == LinkPaths {
		return "current/ paths"
	}
	return "resolved paths"
}

// ExampleDeployTo and ExampleFPMSocket are the deploy directory and the
// php-fpm socket every example names; a stack replaces them with its own.
const (
	ExampleDeployTo  = "/var/www/shop"
	ExampleFPMSocket = "/run/php/php8.2-fpm-shop.sock"
)

// StackOptions says what StartStack serves.
type StackOptions struct {
	Server Server
	Paths  Paths
	// Host is the host whose deploy directory the stack serves: its servers
	// run in the host's mount namespace, as they would on the host itself,
	// and see DeployTo as the host does.
	Host     *Host
	DeployTo string // e.g. "/srv/app"; the stack serves DeployTo/current/public
	// PHP holds php.ini settings on top of the distribution's php.ini and
	// conf.d, as "name=value" ("opcache.validate_timestamps=0"). With
	// mod_php they are php_admin_value lines, which settings PHP reads
	// only at startup (opcache.memory_consumption) ignore.
	PHP []string
	// Workers is the number of PHP workers (php-fpm's pm.max_children,
	// pm = static; Apache prefork's children); 16 if zero.
	Workers int
	// ProcessControlTimeout is php-fpm's process_control_timeout: how long
	// a reload waits for running requests; 0, php-fpm's default, kills
	// them.
	ProcessControlTimeout time.Duration
}

// StartStack starts a web server running PHP in front of opts.Host's
// deploy directory, configured by the server's example (see Servers) in
// the variant opts.Paths, and stops it when the test ends; if the test
// failed, the servers' logs are added to its output then. php-fpm runs as
// root, with its socket open to every user (the deploy user resets OPcache
// through it); Apache's children run as www-data; nginx and Caddy as root.
//
// Web.Dir, which holds the configurations, logs and php-fpm's socket, is a
// short directory under $TMPDIR, the same path on this machine and on the
// host (hosts share this machine's /tmp).
func StartStack(t testing.TB, opts StackOptions) *Web {
	t.Helper()
	if opts.Host == nil || opts.DeployTo == "" {
		t.Fatal("StartStack: Host and DeployTo are required")
	}
	if opts.Workers == 0 {
		opts.Workers = 16
	}
	for _, setting := range opts.PHP {
		if name, value, ok := strings.Cut(setting, "="); !ok || name == "" || strings.ContainsAny(setting, "\n\"") || value == "" {
			t.Fatalf("StartStack: PHP setting %q is not name=value", setting)
		}
	}
	if strings.ContainsAny(opts.DeployTo, " \t\n\"'$;{}#\\") {
		t.Fatalf("StartStack: %q cannot go into the servers' configurations unquoted", opts.DeployTo)
	}
	var fpmPath string
	if opts.Server != ApacheModPHP {
		fpmPath = requireFPM(t)
	}
	front := requireFront(t, opts.Server)

	dir, err := os.MkdirTemp("", "slipway-web-")
	if err != nil {
		t.Fatalf("StartStack: %v", err)
	}
	// Apache's children (www-data) reach php-fpm's socket in it.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("StartStack: %v", err)
	}
	w := &Web{Workers: opts.Workers, Dir: dir}
	t.Cleanup(func() {
		if err := w.stop(); err != nil {
			t.Errorf("stopping %s: %v\n%s", opts.Server, err, w.logs())
		} else if t.Failed() {
			t.Logf("the test failed; logs of its %s:\n%s", opts.Server, w.logs())
		}
		os.RemoveAll(dir)
	})
	if opts.Server != ApacheModPHP {
		w.Socket = filepath.Join(dir, "php-fpm.sock")
		if err := w.startFPM(opts, fpmPath); err != nil {
			t.Fatalf("StartStack: %v", err)
		}
	}
	if err := w.startFront(opts, front); err != nil {
		t.Fatalf("StartStack: %s: %v", opts.Server, err)
	}
	return w
}

// requireFront returns the path of the server's program, or skips (fails
// in CI) the test; with what the server's configuration includes.
func requireFront(t testing.TB, server Server) string {
	t.Helper()
	switch server {
	case Nginx:
		nginx, _ := requireWeb(t)
		return nginx
	case ApacheFPM, ApacheModPHP:
		return requireApache(t, server)
	case Caddy:
		return requireCaddy(t)
	}
	t.Fatalf("StartStack: unknown server %q", server)
	return ""
}

// inHost runs path with args in h's mount namespace: nsenter execs it, so
// the process started is the server itself, whose signals (a reload) reach
// it. With a PID namespace, --no-fork keeps it so, as for sshd's listener:
// the server stays in this machine's PID namespace, and the workers it
// forks are in the host's, where a cleanup on the host sees them. A
// server whose own process makes threads (threaded: Caddy, a Go program)
// cannot live in one PID namespace and make its threads in another
// (clone fails with EINVAL): it stays out of the host's altogether.
func inHost(h *Host, threaded bool, path string, args ...string) (string, []string) {
	ns := h.nsenterArgs()
	if h.pidFile != nil {
		if threaded {
			ns = slices.DeleteFunc(ns, func(a string) bool { return strings.HasPrefix(a, "--pid=") })
		} else {
			ns = append(ns, "--no-fork")
		}
	}
	return "nsenter", slices.Concat(ns, []string{"--", path}, args)
}

// startFPM starts php-fpm with the pool of a stack and waits until it
// accepts connections.
func (w *Web) startFPM(opts StackOptions, fpmPath string) error {
	config := stackFPMConfig(w.Dir, w.Socket, w.Workers, opts.ProcessControlTimeout)
	if err := os.WriteFile(filepath.Join(w.Dir, "php-fpm.conf"), []byte(config), 0o644); err != nil {
		return err
	}
	// -F: foreground; -R: the pool runs as root (it only reads the
	// releases; the deploy directories of the fleet are the deploy user's).
	args := []string{"-F", "-R", "-y", filepath.Join(w.Dir, "php-fpm.conf")}
	for _, setting := range opts.PHP {
		args = append(args, "-d", setting)
	}
	path, args := inHost(opts.Host, false, fpmPath, args...)
	var err error
	w.fpm, err = startWebProcess("php-fpm", filepath.Join(w.Dir, "php-fpm.log"), path, args...)
	if err != nil {
		return err
	}
	return w.fpm.waitReady(func() bool { return dials("unix", w.Socket) })
}

// stackFPMConfig is the php-fpm configuration of a stack: the
// distribution's php.ini and conf.d (so OPcache and the realpath cache are
// as in production) with every worker started up front.
func stackFPMConfig(dir, socket string, workers int, processControlTimeout time.Duration) string {
	return fmt.Sprintf(`; php-fpm of a slipway end-to-end test
[global]
pid = %[1]s/php-fpm.pid
error_log = %[1]s/php-fpm.log
log_level = notice
daemonize = no
process_control_timeout = %[4]ds

[web]
user = root
group = root
listen = %[2]s
; Open to every user: Apache's children run as www-data, and the deploy
; user resets OPcache through it over SSH.
listen.mode = 0666
pm = static
pm.max_children = %[3]d
catch_workers_output = yes
decorate_workers_output = no
`, dir, socket, workers, int(processControlTimeout.Seconds()))
}

// startFront writes the front server's configuration on a free port and
// starts it; when another process took the port meanwhile, it tries
// another one.
func (w *Web) startFront(opts StackOptions, program string) error {
	for attempt := 1; ; attempt++ {
		ports, err := freePorts(1)
		if err != nil {
			return err
		}
		listen := fmt.Sprintf("127.0.0.1:%d", ports[0])
		cmd, errorLog, err := w.frontCommand(opts, program, ports[0])
		if err != nil {
			return err
		}
		var logStart int64
		if info, err := os.Stat(errorLog); err == nil {
			logStart = info.Size()
		}
		path, args := inHost(opts.Host, opts.Server == Caddy, cmd[0], cmd[1:]...)
		w.front, err = startWebProcess(string(opts.Server), errorLog, path, args...)
		if err == nil {
			err = w.front.waitReady(func() bool { return dials("tcp", listen) })
		}
		if err == nil {
			w.URL = "http://" + listen
			return nil
		}
		if attempt == 5 || !strings.Contains(strings.ToLower(logSince(errorLog, logStart)), "address already in use") {
			return err
		}
		if err := w.front.stop(); err != nil {
			return err
		}
	}
}

// frontCommand writes the front server's configuration for port and
// returns the command that runs it in the foreground, and its error log.
func (w *Web) frontCommand(opts StackOptions, program string, port int) (cmd []string, errorLog string, err error) {
	root, err := ModuleRoot()
	if err != nil {
		return nil, "", err
	}
	example := func(rel string) (string, error) {
		data, err := os.ReadFile(filepath.Join(root, rel))
		return string(data), err
	}
	switch opts.Server {
	case Nginx:
		server, err := example(NginxExample)
		if err != nil {
			return nil, "", err
		}
		docRoot := RealpathRoot
		if opts.Paths == LinkPaths {
			docRoot = DocumentRoot
		}
		if err := w.writeNginxConfig(server, fmt.Sprintf("127.0.0.1:%d", port), opts.DeployTo+"/current/public", w.Socket, docRoot); err != nil {
			return nil, "", err
		}
		errorLog := filepath.Join(w.Dir, "nginx-error.log")
		return []string{program, "-e", errorLog, "-c", filepath.Join(w.Dir, "nginx.conf")}, errorLog, nil
	case ApacheFPM, ApacheModPHP:
		return w.apacheCommand(opts, program, port, example)
	case Caddy:
		return w.caddyCommand(opts, program, port, example)
	}
	return nil, "", fmt.Errorf("unknown server %q", opts.Server)
}

// replaceExact replaces old in s, which must occur exactly n times.
func replaceExact(s, old, new string, n int, what string) (string, error) {
	if got := strings.Count(s, old); got != n {
		return "", fmt.Errorf("want %s (%q) %d times, found %d", what, old, n, got)
	}
	return strings.ReplaceAll(s, old, new), nil
}

// ReloadFPM asks php-fpm to reload gracefully (SIGUSR2, what systemctl
// reload php8.2-fpm does) and returns at once.
func (w *Web) ReloadFPM(t testing.TB) {
	t.Helper()
	if w.fpm == nil {
		t.Fatal("ReloadFPM: this stack has no php-fpm")
	}
	if err := w.fpm.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatalf("ReloadFPM: %v", err)
	}
}

// BindMount shows source, a file or directory of this machine, at target
// inside the host only (in its mount namespace), as a host's own
// configuration: a test gives one host a web server configuration in /etc
// without touching this machine's. target must exist.
func (h *Host) BindMount(t testing.TB, source, target string) {
	t.Helper()
	path, args := inHost(h, false, "mount", "--bind", source, target)
	if out, err := exec.Command(path, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s: mount --bind %s %s: %v %s", h.Name, source, target, err, out)
	}
}
