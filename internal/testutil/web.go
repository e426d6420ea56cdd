package testutil

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// NginxExample is the server block slipway documents for PHP applications,
// relative to the module root. StartWeb serves it, so the shipped example
// is the tested one.
const NginxExample = "examples/nginx/slipway-php.conf"

// DocRoot selects what the nginx configuration tells php-fpm about where
// the script is (SCRIPT_FILENAME and DOCUMENT_ROOT).
type DocRoot int

const (
	// RealpathRoot passes $realpath_root, the root with every symlink
	// resolved by nginx per request: NginxExample as it is.
	RealpathRoot DocRoot = iota
	// DocumentRoot passes $document_root, the root as configured, through
	// the `current` symlink: the common, broken configuration, made from
	// NginxExample by swapping the variable in its two fastcgi_param lines.
	DocumentRoot
)

func (d DocRoot) String() string {
	if d == DocumentRoot {
		return "$document_root"
	}
	return "$realpath_root"
}

// WebOptions says what StartWeb serves.
type WebOptions struct {
	// Root is nginx's root on this machine, e.g.
	// host.Path("/srv/app")+"/current/public".
	Root    string
	DocRoot DocRoot
	// Workers is php-fpm's pm.max_children (pm = static); 16 if zero.
	Workers int
}

// Web is a real web server running PHP, a child of the test listening on
// 127.0.0.1 only: nginx in front of php-fpm (StartWeb), or Apache httpd or
// Caddy (StartStack).
type Web struct {
	// URL is the server's address, "http://127.0.0.1:PORT", without a slash.
	URL string
	// Workers is the number of PHP workers, all started up front.
	Workers int
	// Dir holds the configurations, the socket, the pid files and the logs.
	Dir string
	// Socket is php-fpm's unix socket, "" with mod_php.
	Socket string

	// front is the server that takes the requests (nginx, Apache, Caddy);
	// fpm is nil with mod_php.
	front, fpm *webProcess
}

// webProcess is a server started in the foreground, in its own process
// group, as the leader of it.
type webProcess struct {
	name   string
	cmd    *exec.Cmd
	log    string        // its error log
	exited chan struct{} // closed once cmd has been waited for
}

// StartWeb starts php-fpm and nginx serving opts.Root with NginxExample
// (listen, root and fastcgi_pass replaced), in the variant opts.DocRoot.
// php-fpm runs with its distribution's php.ini and conf.d, so OPcache and
// the realpath cache behave as in production. Both servers run as root (the
// fleet's directories are not readable by www-data) and are stopped when the
// test ends; if the test failed (in StartWeb or later), their logs are
// added to its output then.
//
// It needs nginx and php-fpm (Debian: apt-get install nginx php-fpm).
func StartWeb(t testing.TB, opts WebOptions) *Web {
	t.Helper()
	nginxPath, fpmPath := requireWeb(t)
	if opts.Workers == 0 {
		opts.Workers = 16
	}
	root, err := ModuleRoot()
	if err != nil {
		t.Fatalf("StartWeb: %v", err)
	}
	example, err := os.ReadFile(filepath.Join(root, NginxExample))
	if err != nil {
		t.Fatalf("StartWeb: %v", err)
	}
	w := &Web{Workers: opts.Workers, Dir: t.TempDir()}
	socket := filepath.Join(w.Dir, "php-fpm.sock")
	w.Socket = socket
	if len(socket) >= 100 { // sun_path holds 108 bytes
		t.Fatalf("StartWeb: socket path %s is too long for a unix socket; set a shorter TMPDIR", socket)
	}
	// nginx would read a $ as a variable and a ; or space as the end of a
	// value; t.TempDir carries subtest names into the path.
	for _, path := range []string{opts.Root, w.Dir} {
		if strings.ContainsAny(path, "$;{}'\"# \t\n\\") {
			t.Fatalf("StartWeb: %q cannot go into an nginx configuration unquoted; name the test or directory without $ ; { } quotes, # or spaces", path)
		}
	}
	t.Cleanup(func() {
		if err := w.stop(); err != nil {
			t.Errorf("stopping nginx and php-fpm: %v\n%s", err, w.logs())
		} else if t.Failed() {
			t.Logf("the test failed; logs of its nginx and php-fpm:\n%s", w.logs())
		}
	})

	if err := w.writeFPMConfig(socket); err != nil {
		t.Fatalf("StartWeb: %v", err)
	}
	w.fpm, err = startWebProcess("php-fpm", filepath.Join(w.Dir, "php-fpm.log"),
		// -F: foreground; -R: the pool runs as root.
		fpmPath, "-F", "-R", "-y", filepath.Join(w.Dir, "php-fpm.conf"))
	if err == nil {
		err = w.fpm.waitReady(func() bool { return dials("unix", socket) })
	}
	if err != nil {
		t.Fatalf("StartWeb: %v", err)
	}

	// nginx binds a port found free a moment earlier; if another process
	// took it meanwhile, nginx exits and gets another one.
	for attempt := 1; ; attempt++ {
		ports, err := freePorts(1)
		if err != nil {
			t.Fatalf("StartWeb: %v", err)
		}
		listen := fmt.Sprintf("127.0.0.1:%d", ports[0])
		if err := w.writeNginxConfig(string(example), listen, opts.Root, socket, opts.DocRoot); err != nil {
			t.Fatalf("StartWeb: %v", err)
		}
		errorLog := filepath.Join(w.Dir, "nginx-error.log")
		var logStart int64
		if info, err := os.Stat(errorLog); err == nil {
			logStart = info.Size()
		}
		w.front, err = startWebProcess("nginx", errorLog,
			nginxPath, "-e", errorLog, "-c", filepath.Join(w.Dir, "nginx.conf"))
		if err == nil {
			err = w.front.waitReady(func() bool { return dials("tcp", listen) })
		}
		if err == nil {
			w.URL = "http://" + listen
			return w
		}
		if attempt == 5 || !strings.Contains(logSince(errorLog, logStart), "Address already in use") {
			t.Fatalf("StartWeb: %v", err)
		}
		if err := w.front.stop(); err != nil {
			t.Fatalf("StartWeb: %v", err)
		}
	}
}

// requireWeb returns the paths of nginx and php-fpm, or skips (fails in CI)
// the test.
func requireWeb(t testing.TB) (nginx, fpm string) {
	t.Helper()
	nginx, err := exec.LookPath("nginx")
	if err != nil && isExecutable("/usr/sbin/nginx") {
		nginx, err = "/usr/sbin/nginx", nil
	}
	Require(t, "nginx: apt-get install nginx (scripts/install-test-deps.sh)", err == nil)
	fpm = requireFPM(t)
	// fastcgi_params is included by the example, as on every nginx install.
	Require(t, "/etc/nginx/fastcgi_params: apt-get install nginx", isRegular("/etc/nginx/fastcgi_params"))
	return nginx, fpm
}

// requireFPM returns the path of php-fpm, or skips (fails in CI) the test.
func requireFPM(t testing.TB) string {
	t.Helper()
	// Debian names the binary after the PHP version: /usr/sbin/php-fpm8.2.
	var fpms []string
	matches, _ := filepath.Glob("/usr/sbin/php-fpm*")
	for _, m := range matches {
		if isExecutable(m) {
			fpms = append(fpms, m)
		}
	}
	Require(t, "php-fpm at /usr/sbin/php-fpm*: apt-get install php-fpm (scripts/install-test-deps.sh)", len(fpms) > 0)
	// One as a rule; with several, the last in name order.
	return fpms[len(fpms)-1]
}

func isRegular(path string) bool {
	info, err := os.Stat(path)
	return err == nil && info.Mode().IsRegular()
}

func (w *Web) writeFPMConfig(socket string) error {
	// No php.ini or -d options: the distribution's php.ini and conf.d, so
	// OPcache is loaded and enabled with validate_timestamps=1 and
	// revalidate_freq=2, and realpath_cache_ttl is 120 seconds. pm = static
	// starts every worker at once, so a test can reach all of them.
	config := fmt.Sprintf(`; php-fpm of a slipway end-to-end test
[global]
pid = %[1]s/php-fpm.pid
error_log = %[1]s/php-fpm.log
log_level = notice
daemonize = no

[web]
user = root
group = root
listen = %[2]s
listen.mode = 0600
pm = static
pm.max_children = %[3]d
catch_workers_output = yes
decorate_workers_output = no
`, w.Dir, socket, w.Workers)
	return os.WriteFile(filepath.Join(w.Dir, "php-fpm.conf"), []byte(config), 0o644)
}

func (w *Web) writeNginxConfig(example, listen, root, socket string, docRoot DocRoot) error {
	server, err := NginxConfig(example, listen, root, "unix:"+socket, docRoot)
	if err != nil {
		return fmt.Errorf("%s: %w", NginxExample, err)
	}
	// The example includes fastcgi_params, relative to the configuration's
	// directory as in /etc/nginx.
	params, err := os.ReadFile("/etc/nginx/fastcgi_params")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(w.Dir, "fastcgi_params"), params, 0o644); err != nil {
		return err
	}
	// user root: the workers must traverse the fleet's directories (0700
	// test directories) to resolve $realpath_root and check try_files.
	config := fmt.Sprintf(`# nginx of a slipway end-to-end test
daemon off;
master_process on;
worker_processes 2;
user root root;
pid %[1]s/nginx.pid;
error_log %[1]s/nginx-error.log warn;
events {
    worker_connections 1024;
}
http {
    access_log off;
    default_type application/octet-stream;
    client_body_temp_path %[1]s/client_body;
    fastcgi_temp_path %[1]s/fastcgi;
    proxy_temp_path %[1]s/proxy;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;

%[2]s
}
`, w.Dir, server)
	return os.WriteFile(filepath.Join(w.Dir, "nginx.conf"), []byte(config), 0o644)
}

// NginxConfig turns the server block example into the one a test serves:
// its single listen, root and fastcgi_pass directives get the given values,
// and with DocumentRoot its SCRIPT_FILENAME and DOCUMENT_ROOT parameters
// pass $document_root instead of $realpath_root. Every other line stays as
// it is. It is an error if the example does not have exactly one of each
// directive, or does not pass $realpath_root in both parameters: the test
// would no longer prove what the example says.
func NginxConfig(example, listen, root, fastcgiPass string, docRoot DocRoot) (string, error) {
	for _, want := range []string{
		"fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;",
		"fastcgi_param DOCUMENT_ROOT $realpath_root;",
	} {
		if n := countDirective(example, want); n != 1 {
			return "", fmt.Errorf("want exactly one line %q, found %d", want, n)
		}
	}
	out := example
	for _, d := range []struct{ name, value string }{
		{"listen", listen}, {"root", root}, {"fastcgi_pass", fastcgiPass},
	} {
		re := regexp.MustCompile(`(?m)^[ \t]*` + d.name + `[ \t]+[^;#\n]*;`)
		if n := len(re.FindAllStringIndex(out, -1)); n != 1 {
			return "", fmt.Errorf("want exactly one %s directive, found %d", d.name, n)
		}
		out = re.ReplaceAllStringFunc(out, func(line string) string {
			indent := line[:len(line)-len(strings.TrimLeft(line, " \t"))]
			return indent + d.name + " " + d.value + ";"
		})
	}
	if docRoot == DocumentRoot {
		re := regexp.MustCompile(`(?m)^([ \t]*fastcgi_param[ \t]+(?:SCRIPT_FILENAME|DOCUMENT_ROOT)[ \t].*)$`)
		out = re.ReplaceAllStringFunc(out, func(line string) string {
			return strings.ReplaceAll(line, "$realpath_root", "$document_root")
		})
	}
	return out, nil
}

// countDirective counts the lines of config that are directive, apart from
// indentation.
func countDirective(config, directive string) int {
	n := 0
	for line := range strings.Lines(config) {
		if strings.TrimSpace(line) == directive {
			n++
		}
	}
	return n
}

// startWebProcess starts a server in the foreground. log is its error log,
// which its output goes to as well.
func startWebProcess(name, log string, path string, args ...string) (*webProcess, error) {
	logFile, err := os.OpenFile(log, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	cmd := exec.Command(path, args...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own process group, so that the cleanup can kill workers that
	// outlive their master; Pdeathsig kills the master if this process dies
	// without cleaning up (as the fleet's sshd).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &webProcess{name: name, cmd: cmd, log: log, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// webReadyTimeout bounds how long nginx or php-fpm may take to accept
// connections.
const webReadyTimeout = 10 * time.Second

func (p *webProcess) waitReady(ready func() bool) error {
	deadline := time.Now().Add(webReadyTimeout)
	for {
		select {
		case <-p.exited:
			return fmt.Errorf("%s (pid %d) exited (%v) before it was ready", p.name, p.cmd.Process.Pid, p.cmd.ProcessState)
		default:
		}
		if ready() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s (pid %d) did not accept connections within %s", p.name, p.cmd.Process.Pid, webReadyTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stop ends the server: SIGTERM to its master, which stops its workers at
// once (in-flight requests are cut, as the test is over) and waits for
// them; SIGKILL to its process group if it takes more than ten seconds.
func (p *webProcess) stop() error {
	if p == nil {
		return nil
	}
	pid := p.cmd.Process.Pid
	select {
	case <-p.exited:
		// It ended by itself (Running reports that); workers it may have
		// left are still in its process group, made for it by Setpgid.
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		return nil
	default:
	}
	// os.Process signals through a pidfd: never another process that got
	// the PID after the server was reaped.
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		return nil
	case <-time.After(10 * time.Second):
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL)
	<-p.exited
	return fmt.Errorf("%s (pid %d) did not exit within 10s of SIGTERM; killed its process group", p.name, pid)
}

func (w *Web) stop() error {
	// The front first, so that no request reaches a stopping php-fpm.
	return errors.Join(w.front.stop(), w.fpm.stop())
}

// Running returns an error naming the web server or php-fpm if either has
// exited (crashed, or been restarted), so a test can prove they served it
// all.
func (w *Web) Running() error {
	var errs []error
	for _, p := range []*webProcess{w.front, w.fpm} {
		if p == nil {
			continue
		}
		select {
		case <-p.exited:
			errs = append(errs, fmt.Errorf("%s (pid %d) exited: %v", p.name, p.cmd.Process.Pid, p.cmd.ProcessState))
		default:
		}
	}
	return errors.Join(errs...)
}

// logs returns the web server's error log and php-fpm's log (with what PHP
// wrote to stderr), each under a header line.
func (w *Web) logs() string {
	var logs strings.Builder
	for _, p := range []*webProcess{w.front, w.fpm} {
		if p != nil {
			fmt.Fprintf(&logs, "---- %s log (%s)\n%s", p.name, p.log, readLog(p.log))
		}
	}
	return logs.String()
}

func readLog(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)\n", path, err)
	}
	return string(data)
}

// logSince returns the log at path from offset on.
func logSince(path string, offset int64) string {
	data, err := os.ReadFile(path)
	if err != nil || offset > int64(len(data)) {
		return ""
	}
	return string(data[offset:])
}

// dials reports whether something accepts connections at address.
func dials(network, address string) bool {
	conn, err := net.DialTimeout(network, address, time.Second)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}
