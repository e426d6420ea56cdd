package host

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// sshTestEnv is a home directory with a user key, and options that read
// only it: no ssh-agent, no /etc/ssh.
type sshTestEnv struct {
	home    string
	opts    SSHOptions
	userKey ssh.PublicKey
}

func newSSHTestEnv(t *testing.T) *sshTestEnv {
	t.Helper()
	t.Setenv("SSH_AUTH_SOCK", "")
	home := t.TempDir()
	_, userKey := writeUserKey(t, filepath.Join(home, ".ssh", "id_ed25519"), "")
	return &sshTestEnv{
		home:    home,
		userKey: userKey,
		opts:    SSHOptions{Home: home, SystemDir: t.TempDir(), ConnectTimeout: 10 * time.Second},
	}
}

func (e *sshTestEnv) knownHosts() string { return filepath.Join(e.home, ".ssh", "known_hosts") }

func (e *sshTestEnv) writeConfig(t *testing.T, config string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(e.home, ".ssh", "config"), []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
}

// knownServer starts a server for user deploy with the env's key and
// records its host key in known_hosts.
func (e *sshTestEnv) knownServer(t *testing.T) *testSSHServer {
	t.Helper()
	srv := newTestSSHServer(t, "deploy", e.userKey)
	addKnownHost(t, e.knownHosts(), srv.addr, srv.hostKey())
	return srv
}

func targetFor(srv *testSSHServer) SSHTarget {
	return SSHTarget{Name: "web1", Host: "127.0.0.1", Port: srv.port, User: "deploy"}
}

func (e *sshTestEnv) dial(t *testing.T, target SSHTarget) *SSH {
	t.Helper()
	conn, err := DialSSH(context.Background(), target, e.opts)
	if err != nil {
		t.Fatalf("DialSSH: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func TestSSHExecOutputAndExitStatus(t *testing.T) {
	env := newSSHTestEnv(t)
	conn := env.dial(t, targetFor(env.knownServer(t)))
	ctx := context.Background()

	res, err := conn.Query(ctx, Command{Script: "echo out; echo err >&2"})
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Stdout) != "out\n" || string(res.Stderr) != "err\n" {
		t.Errorf("stdout %q, stderr %q; want \"out\\n\", \"err\\n\"", res.Stdout, res.Stderr)
	}

	_, err = conn.Exec(ctx, Command{Script: "echo partial; echo broken >&2; exit 3"})
	var exitErr *ExitError
	if !errors.As(err, &exitErr) {
		t.Fatalf("err = %v, want *ExitError", err)
	}
	if exitErr.Code != 3 || exitErr.Host != "web1" || string(exitErr.Stderr) != "broken\n" {
		t.Errorf("ExitError = %+v, want code 3, host web1, stderr \"broken\\n\"", exitErr)
	}

	// Streamed output goes to the writers, and a failure still shows the
	// end of stderr.
	var stdout, stderr bytes.Buffer
	res, err = conn.Exec(ctx, Command{Script: "echo streamed; echo why >&2; exit 4", Stdout: &stdout, Stderr: &stderr})
	if !errors.As(err, &exitErr) || exitErr.Code != 4 || string(exitErr.Stderr) != "why\n" {
		t.Fatalf("err = %v, want exit status 4 with stderr \"why\\n\"", err)
	}
	if stdout.String() != "streamed\n" || stderr.String() != "why\n" || len(res.Stdout)+len(res.Stderr) != 0 {
		t.Errorf("streamed %q/%q, collected %q/%q", stdout.String(), stderr.String(), res.Stdout, res.Stderr)
	}
}

func TestLoopbackThroughWrappers(t *testing.T) {
	env := newSSHTestEnv(t)
	srv := env.knownServer(t)
	conn := env.dial(t, targetFor(srv)) // 127.0.0.1
	for name, ex := range map[string]Executor{
		"ssh": conn, "local": &Local{},
		"verbose": Verbose(conn, func(string) {}), "read-only": ReadOnly(conn),
		"verbose read-only": Verbose(ReadOnly(&Local{}), func(string) {}),
		"faulty":            WithFaults(conn, map[string]bool{"rename@" + conn.Name(): true}),
	} {
		if !ex.Loopback() {
			t.Errorf("%s: not on loopback", name)
		}
	}
}

func TestSSHStreamsStdin(t *testing.T) {
	env := newSSHTestEnv(t)
	conn := env.dial(t, targetFor(env.knownServer(t)))

	input := make([]byte, 5<<20+123)
	if _, err := rand.Read(input); err != nil {
		t.Fatal(err)
	}
	res, err := conn.Exec(context.Background(), Command{Script: "cat", Stdin: bytes.NewReader(input)})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(res.Stdout, input) {
		t.Errorf("cat returned %d bytes, want the %d sent", len(res.Stdout), len(input))
	}

	// A command that does not read its input still succeeds.
	if _, err := conn.Exec(context.Background(), Command{Script: "true", Stdin: bytes.NewReader(input)}); err != nil {
		t.Errorf("command ignoring its input: %v", err)
	}
}

// processesRunning counts this machine's processes whose command line is
// exactly argv.
func processesRunning(t *testing.T, argv ...string) int {
	t.Helper()
	want := strings.Join(argv, "\x00") + "\x00"
	dirs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range dirs {
		if b, err := os.ReadFile(f); err == nil && string(b) == want {
			stat, _ := os.ReadFile(filepath.Join(filepath.Dir(f), "stat"))
			if fields := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:])); len(fields) > 0 && fields[0] != "Z" {
				n++
			}
		}
	}
	return n
}

// TestSSHCancelStopsTheWholeProcessGroup: a cancelled command returns only
// once every process it started on the host is gone, on a server that
// ignores the session's signal request too; one that ignores SIGTERM is
// killed.
func TestSSHCancelStopsTheWholeProcessGroup(t *testing.T) {
	env := newSSHTestEnv(t)
	srv := env.knownServer(t)
	srv.ignoreSignals.Store(true)
	srv.leaveProcesses.Store(true)
	conn := env.dial(t, targetFor(srv))
	for _, tc := range []struct {
		name, script, arg string
		atLeast           time.Duration
	}{
		{"plain", "sleep 47.31 & sleep 47.31 & wait", "47.31", 0},
		{"ignoring SIGTERM", "trap '' TERM; sleep 48.31 & sleep 48.31 & wait", "48.31", StopGrace},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			cancelled := make(chan time.Time, 1)
			go func() {
				for processesRunning(t, "sleep", tc.arg) < 2 {
					time.Sleep(10 * time.Millisecond)
				}
				cancelled <- time.Now()
				cancel()
			}()
			_, err := conn.Exec(ctx, Command{Script: tc.script, Stdin: strings.NewReader("")})
			// From the cancel, not the start: starting the sleeps takes
			// what a loaded machine gives it.
			took := time.Since(<-cancelled)
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("err = %v, want context.Canceled", err)
			}
			var still *StillRunningError
			if errors.As(err, &still) {
				t.Fatalf("reported still running: %v", err)
			}
			if n := processesRunning(t, "sleep", tc.arg); n > 0 {
				t.Errorf("%d sleep %s still running after the command returned", n, tc.arg)
			}
			// The upper bound only tells "stopped" from "waited for the
			// sleeps" (47 s), with room for a loaded machine.
			if took < tc.atLeast || took > tc.atLeast+15*time.Second {
				t.Errorf("took %s to stop, want %s to %s", took, tc.atLeast, tc.atLeast+15*time.Second)
			}
		})
	}
	// A command the signal ends before it reported its group (it had not
	// read its script yet: one too long for its command line, on stdin)
	// is over at once: nothing is left to wait for.
	srv.ignoreSignals.Store(false)
	srv.stdinDelay.Store(int64(time.Second))
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	long := "sleep 49.31 # " + strings.Repeat("x", maxInline)
	if _, err := conn.Exec(ctx, Command{Script: long}); !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("a command ended by the signal took %s to return after its cancel", took)
	}
	srv.stdinDelay.Store(0)
	// The report of the process group never shows in what the script
	// printed.
	res, err := conn.Query(context.Background(), Command{Script: "echo out; echo err >&2"})
	if err != nil || string(res.Stdout) != "out\n" || string(res.Stderr) != "err\n" {
		t.Errorf("printed %q / %q (%v), want out / err", res.Stdout, res.Stderr, err)
	}
}

type failingReader struct{ sent bool }

func (r *failingReader) Read(p []byte) (int, error) {
	if !r.sent {
		r.sent = true
		return copy(p, "partial input\n"), nil
	}
	return 0, errors.New("disk read error")
}

func TestSSHFailedStdinFailsTheCommand(t *testing.T) {
	env := newSSHTestEnv(t)
	conn := env.dial(t, targetFor(env.knownServer(t)))
	done := filepath.Join(t.TempDir(), "done")

	// The pause gives the signal time to land before the script would go on,
	// as it would with sshd, which also closes the script's stdin.
	script := "cat >/dev/null && sleep 0.5 && touch " + done
	_, err := conn.Exec(context.Background(), Command{Script: script, Stdin: &failingReader{}})
	if err == nil || !strings.HasPrefix(err.Error(), "web1: ") || !strings.Contains(err.Error(), "disk read error") {
		t.Fatalf("err = %v, want the read error naming web1", err)
	}
	time.Sleep(time.Second)
	if _, err := os.Stat(done); err == nil {
		t.Error("the command saw a clean end of its truncated input")
	}
}

func TestSSHReusesOneConnection(t *testing.T) {
	env := newSSHTestEnv(t)
	srv := env.knownServer(t)
	conn := env.dial(t, targetFor(srv))

	var wg sync.WaitGroup
	errs := make(chan error, 60)
	for i := range 60 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := conn.Query(context.Background(), Command{Script: fmt.Sprintf("echo %d", i)})
			if err == nil && string(res.Stdout) != fmt.Sprintf("%d\n", i) {
				err = fmt.Errorf("query %d printed %q", i, res.Stdout)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	if n := srv.accepts.Load(); n != 1 {
		t.Errorf("server accepted %d TCP connections, want 1", n)
	}
}

// TestSFTPOpensAheadOnlyWhenAsked: a run that will rename (RenameAhead)
// opens SFTP with the connection; any other opens it only when it first
// renames, so a rollback starts no sftp-server on its hosts.
func TestSFTPOpensAheadOnlyWhenAsked(t *testing.T) {
	for _, ahead := range []bool{true, false} {
		env := newSSHTestEnv(t)
		env.opts.RenameAhead = ahead
		srv := env.knownServer(t)
		conn := env.dial(t, targetFor(srv))
		if _, err := conn.Exec(context.Background(), Command{Script: "true"}); err != nil {
			t.Fatal(err)
		}
		want := int64(0)
		if ahead {
			want = 1
		}
		// Opened ahead, it is under way by now, or done.
		deadline := time.Now().Add(5 * time.Second)
		for srv.sftpRequests.Load() < want && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if got := srv.sftpRequests.Load(); got != want {
			t.Errorf("RenameAhead %v: %d sftp requests after a command, want %d", ahead, got, want)
		}
		if err := conn.PrepareRename(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := srv.sftpRequests.Load(); got != 1 {
			t.Errorf("RenameAhead %v: %d sftp requests once a rename is prepared, want 1", ahead, got)
		}
	}
}

func TestSSHRenameSwitchesSymlinkAtomically(t *testing.T) {
	for _, path := range []string{"sftp", "exec"} {
		t.Run(path, func(t *testing.T) { testRenameSwitchesAtomically(t, path) })
	}
}

// testRenameSwitchesAtomically switches a symlink 40 times with Rename,
// over SFTP or, on a server without SFTP, by command.
func testRenameSwitchesAtomically(t *testing.T, path string) {
	env := newSSHTestEnv(t)
	srv := env.knownServer(t)
	srv.noSFTP.Store(path == "exec")
	conn := env.dial(t, targetFor(srv))
	if got := conn.RenamePath(); got != path {
		t.Fatalf("RenamePath = %q, want %q", got, path)
	}
	dir := t.TempDir()
	for _, release := range []string{"releases/1", "releases/2"} {
		if err := os.MkdirAll(filepath.Join(dir, release), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	current := filepath.Join(dir, "current")
	if err := os.Symlink("releases/1", current); err != nil {
		t.Fatal(err)
	}

	// A reader resolves current all along; it must never miss it.
	stop := make(chan struct{})
	missing := make(chan error, 1)
	go func() {
		for {
			select {
			case <-stop:
				close(missing)
				return
			default:
			}
			if _, err := os.Stat(current); err != nil {
				missing <- err
				close(missing)
				return
			}
		}
	}()
	for i := range 40 {
		target := fmt.Sprintf("releases/%d", 1+(i+1)%2)
		tmp := filepath.Join(dir, "current.tmp")
		if err := os.Symlink(target, tmp); err != nil {
			t.Fatal(err)
		}
		if err := conn.Rename(context.Background(), tmp, current); err != nil {
			t.Fatal(err)
		}
		if got, err := os.Readlink(current); err != nil || got != target {
			t.Fatalf("current -> %q (%v), want %q", got, err, target)
		}
		if _, err := os.Lstat(tmp); !os.IsNotExist(err) {
			t.Fatalf("%s still exists after the rename: %v", tmp, err)
		}
	}
	close(stop)
	if err := <-missing; err != nil {
		t.Errorf("current went missing during a switch: %v", err)
	}

	err := conn.Rename(context.Background(), filepath.Join(dir, "nonexistent"), current)
	if err == nil || !strings.HasPrefix(err.Error(), "web1: ") || errors.Is(err, ErrConnectionLost) {
		t.Errorf("rename of a missing file: err = %v, want an error naming web1", err)
	}
}

func TestSSHUnknownHostKeyRefused(t *testing.T) {
	env := newSSHTestEnv(t)
	srv := newTestSSHServer(t, "deploy", env.userKey)

	_, err := DialSSH(context.Background(), targetFor(srv), env.opts)
	var hkErr *HostKeyError
	if !errors.As(err, &hkErr) {
		t.Fatalf("err = %v, want *HostKeyError", err)
	}
	fingerprint := ssh.FingerprintSHA256(srv.hostKey())
	if hkErr.Changed || hkErr.Fingerprint != fingerprint || hkErr.KeyType != srv.hostKey().Type() ||
		hkErr.Host != "web1" || hkErr.Addr != srv.addr || hkErr.KnownHostsFile != env.knownHosts() {
		t.Errorf("HostKeyError = %+v", hkErr)
	}
	for _, want := range []string{"web1 (" + srv.addr + "): unknown host key", fingerprint, "--accept-new-host-keys", env.knownHosts()} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q lacks %q", err, want)
		}
	}
	if _, err := os.Stat(env.knownHosts()); !os.IsNotExist(err) {
		t.Errorf("known_hosts was written: %v", err)
	}
	if n := srv.accepts.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

func TestSSHAcceptNewHostKeyRecordsIt(t *testing.T) {
	env := newSSHTestEnv(t)
	if err := os.Remove(filepath.Join(env.home, ".ssh", "id_ed25519")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(env.home, ".ssh")); err != nil {
		t.Fatal(err)
	}
	// The key lives elsewhere, so that ~/.ssh must be created for known_hosts.
	keyFile := filepath.Join(t.TempDir(), "key")
	_, userKey := writeUserKey(t, keyFile, "")
	env.opts.SystemDir = t.TempDir()
	if err := os.WriteFile(filepath.Join(env.opts.SystemDir, "ssh_config"), []byte("IdentityFile "+keyFile+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := newTestSSHServer(t, "deploy", userKey)

	accepting := env.opts
	accepting.AcceptNewHostKeys = true
	conn, err := DialSSH(context.Background(), targetFor(srv), accepting)
	if err != nil {
		t.Fatalf("DialSSH with AcceptNewHostKeys: %v", err)
	}
	conn.Close()

	info, err := os.Stat(env.knownHosts())
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("known_hosts mode %v, want 0600", info.Mode().Perm())
	}
	if dirInfo, err := os.Stat(filepath.Dir(env.knownHosts())); err != nil || dirInfo.Mode().Perm() != 0o700 {
		t.Errorf("~/.ssh: %v, mode %v, want 0700", err, dirInfo.Mode().Perm())
	}
	data, _ := os.ReadFile(env.knownHosts())
	wantLine := fmt.Sprintf("[127.0.0.1]:%d %s", srv.port, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(srv.hostKey()))))
	if strings.TrimSpace(string(data)) != wantLine {
		t.Errorf("known_hosts = %q, want %q", data, wantLine)
	}

	// Known now: no flag needed.
	conn, err = DialSSH(context.Background(), targetFor(srv), env.opts)
	if err != nil {
		t.Fatalf("second DialSSH: %v", err)
	}
	conn.Close()
}

func TestSSHChangedHostKeyAlwaysRefused(t *testing.T) {
	for _, strict := range []string{"", "no", "accept-new"} {
		t.Run("StrictHostKeyChecking="+strict, func(t *testing.T) {
			env := newSSHTestEnv(t)
			srv := newTestSSHServer(t, "deploy", env.userKey)
			old := newEd25519Signer(t).PublicKey()
			addKnownHost(t, env.knownHosts(), srv.addr, old)
			if strict != "" {
				env.writeConfig(t, "Host *\n  StrictHostKeyChecking "+strict+"\n")
			}
			before, _ := os.ReadFile(env.knownHosts())

			opts := env.opts
			opts.AcceptNewHostKeys = true
			_, err := DialSSH(context.Background(), targetFor(srv), opts)
			var hkErr *HostKeyError
			if !errors.As(err, &hkErr) || !hkErr.Changed {
				t.Fatalf("err = %v, want a changed *HostKeyError", err)
			}
			if len(hkErr.KnownKeys) != 1 || !strings.Contains(hkErr.KnownKeys[0], ssh.FingerprintSHA256(old)) {
				t.Errorf("KnownKeys = %q, want the old key", hkErr.KnownKeys)
			}
			want := fmt.Sprintf("web1 (%s): HOST KEY CHANGED (now %s %s, known_hosts has %s %s",
				srv.addr, srv.hostKey().Type(), ssh.FingerprintSHA256(srv.hostKey()), old.Type(), ssh.FingerprintSHA256(old))
			if !strings.HasPrefix(err.Error(), want) {
				t.Errorf("message %q does not start with %q", err, want)
			}
			if hint := fmt.Sprintf("ssh-keygen -R '[127.0.0.1]:%d'", srv.port); !strings.HasSuffix(err.Error(), hint) {
				t.Errorf("message %q does not end with %q", err, hint)
			}
			after, _ := os.ReadFile(env.knownHosts())
			if !bytes.Equal(before, after) {
				t.Errorf("known_hosts changed from %q to %q", before, after)
			}
		})
	}
}

func TestSSHStrictHostKeyChecking(t *testing.T) {
	t.Run("yes refuses unknown keys even with the flag", func(t *testing.T) {
		env := newSSHTestEnv(t)
		srv := newTestSSHServer(t, "deploy", env.userKey)
		env.writeConfig(t, "Host 127.0.0.1\n  StrictHostKeyChecking yes\n")
		opts := env.opts
		opts.AcceptNewHostKeys = true
		_, err := DialSSH(context.Background(), targetFor(srv), opts)
		var hkErr *HostKeyError
		if !errors.As(err, &hkErr) || hkErr.Changed {
			t.Fatalf("err = %v, want an unknown-key *HostKeyError", err)
		}
		if !strings.Contains(err.Error(), "StrictHostKeyChecking yes") {
			t.Errorf("message %q does not say why the flag did not help", err)
		}
		if _, err := os.Stat(env.knownHosts()); !os.IsNotExist(err) {
			t.Errorf("known_hosts was written: %v", err)
		}
	})
	t.Run("accept-new records unknown keys without the flag", func(t *testing.T) {
		env := newSSHTestEnv(t)
		srv := newTestSSHServer(t, "deploy", env.userKey)
		env.writeConfig(t, "Host *\n  StrictHostKeyChecking accept-new\n  HashKnownHosts yes\n")
		conn := env.dial(t, targetFor(srv))
		conn.Close()
		data, err := os.ReadFile(env.knownHosts())
		if err != nil || !strings.HasPrefix(string(data), "|1|") {
			t.Fatalf("known_hosts = %q (%v), want one hashed line", data, err)
		}
		env.writeConfig(t, "")
		env.dial(t, targetFor(srv)).Close()
	})
}

func TestSSHHostKeyAlgorithmsFollowKnownHosts(t *testing.T) {
	env := newSSHTestEnv(t)
	// x/crypto prefers ECDSA over Ed25519 by default: unless the client
	// asks for the type known_hosts has, it would see the ECDSA key.
	ed := newEd25519Signer(t)
	srv := newTestSSHServer(t, "deploy", env.userKey, newECDSASigner(t), ed)
	addKnownHost(t, env.knownHosts(), srv.addr, ed.PublicKey())
	env.dial(t, targetFor(srv))
}

func TestSSHConfigAlias(t *testing.T) {
	env := newSSHTestEnv(t)
	keyFile := filepath.Join(env.home, "keys", "deploy_key")
	_, userKey := writeUserKey(t, keyFile, "")
	srv := newTestSSHServer(t, "app", userKey)
	customKnownHosts := filepath.Join(env.home, "kh", "127.0.0.1_hosts")
	addKnownHost(t, customKnownHosts, srv.addr, srv.hostKey())
	env.writeConfig(t, fmt.Sprintf(`# slipway test
Host web
  HostName 127.0.0.1
  Port %d
  User app
  IdentityFile ~/keys/deploy_key
  UserKnownHostsFile %%d/kh/%%h_hosts

Host *
  User nobody
`, srv.port))

	conn := env.dial(t, SSHTarget{Name: "web", Host: "web"})
	res, err := conn.Query(context.Background(), Command{Script: "echo hi"})
	if err != nil || string(res.Stdout) != "hi\n" {
		t.Fatalf("Query = %q, %v", res.Stdout, err)
	}
	if _, err := os.Stat(env.knownHosts()); !os.IsNotExist(err) {
		t.Errorf("the default known_hosts was used: %v", err)
	}

	// An explicit user wins over the config's; this one is refused.
	_, err = DialSSH(context.Background(), SSHTarget{Name: "root@web", Host: "web", User: "root"}, env.opts)
	var authErr *AuthError
	if !errors.As(err, &authErr) || authErr.User != "root" || authErr.Host != "root@web" {
		t.Fatalf("err = %v, want *AuthError for root", err)
	}
	if !strings.Contains(err.Error(), keyFile) {
		t.Errorf("message %q does not list the key tried", err)
	}
}

func TestSSHAuthFailureNamesWhatWasTried(t *testing.T) {
	env := newSSHTestEnv(t)
	writeUserKey(t, filepath.Join(env.home, ".ssh", "id_ecdsa"), "secret") // encrypted: skipped
	other := newEd25519Signer(t).PublicKey()
	srv := newTestSSHServer(t, "deploy", other)
	addKnownHost(t, env.knownHosts(), srv.addr, srv.hostKey())

	_, err := DialSSH(context.Background(), targetFor(srv), env.opts)
	var authErr *AuthError
	if !errors.As(err, &authErr) {
		t.Fatalf("err = %v, want *AuthError", err)
	}
	msg := err.Error()
	for _, want := range []string{
		"web1 (" + srv.addr + ")", "user deploy", "no ssh-agent",
		filepath.Join(env.home, ".ssh", "id_ed25519") + " (ssh-ed25519 " + ssh.FingerprintSHA256(env.userKey) + ")",
		filepath.Join(env.home, ".ssh", "id_ecdsa") + " (encrypted, skipped",
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
}

func TestSSHAgentAuthAndForwarding(t *testing.T) {
	env := newSSHTestEnv(t)
	if err := os.Remove(filepath.Join(env.home, ".ssh", "id_ed25519")); err != nil {
		t.Fatal(err)
	}
	private, public := writeUserKey(t, filepath.Join(t.TempDir(), "agent_key"), "")
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: private}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				agent.ServeAgent(keyring, c)
			}()
		}
	}()
	t.Setenv("SSH_AUTH_SOCK", sock)

	srv := newTestSSHServer(t, "deploy", public)
	addKnownHost(t, env.knownHosts(), srv.addr, srv.hostKey())
	env.opts.ForwardAgent = true
	conn := env.dial(t, targetFor(srv))
	if _, err := conn.Query(context.Background(), Command{Script: "true"}); err != nil {
		t.Fatal(err)
	}
	select {
	case keys := <-srv.forwardedKeys:
		if len(keys) != 1 || !bytes.Equal(keys[0].Marshal(), public.Marshal()) {
			t.Errorf("forwarded agent lists %v, want the one key", keys)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the server could not reach the forwarded agent")
	}
}

// jumpEnv is a target reachable only through a jump host, both in the ssh
// config with keys of their own.
type jumpEnv struct {
	*sshTestEnv
	jump, target *testSSHServer
}

func newJumpEnv(t *testing.T) *jumpEnv {
	env := newSSHTestEnv(t)
	_, jumpKey := writeUserKey(t, filepath.Join(env.home, ".ssh", "jump_key"), "")
	_, targetKey := writeUserKey(t, filepath.Join(env.home, ".ssh", "target_key"), "")
	jump := newTestSSHServer(t, "jumper", jumpKey)
	target := newTestSSHServer(t, "deploy", targetKey)
	env.writeConfig(t, fmt.Sprintf(`Host web
  HostName 127.0.0.1
  Port %d
  User deploy
  IdentityFile ~/.ssh/target_key
  ProxyJump bastion

Host bastion
  HostName 127.0.0.1
  Port %d
  User jumper
  IdentityFile ~/.ssh/jump_key
`, target.port, jump.port))
	return &jumpEnv{sshTestEnv: env, jump: jump, target: target}
}

func TestSSHProxyJump(t *testing.T) {
	t.Run("both host keys known", func(t *testing.T) {
		env := newJumpEnv(t)
		addKnownHost(t, env.knownHosts(), env.jump.addr, env.jump.hostKey())
		addKnownHost(t, env.knownHosts(), env.target.addr, env.target.hostKey())
		conn := env.dial(t, SSHTarget{Name: "web1", Host: "web"})
		for range 3 {
			if _, err := conn.Query(context.Background(), Command{Script: "true"}); err != nil {
				t.Fatal(err)
			}
		}
		if err := conn.Close(); err != nil {
			t.Fatal(err)
		}
		if j, d, tgt := env.jump.accepts.Load(), env.jump.directTCPIP.Load(), env.target.accepts.Load(); j != 1 || d != 1 || tgt != 1 {
			t.Errorf("jump accepted %d, forwarded %d; target accepted %d; want 1 each", j, d, tgt)
		}
		// Behind a jump host there is a network link, wherever the
		// addresses point.
		if conn.Loopback() {
			t.Error("a connection through a jump host reports itself on loopback")
		}
	})
	t.Run("unknown jump host key", func(t *testing.T) {
		env := newJumpEnv(t)
		addKnownHost(t, env.knownHosts(), env.target.addr, env.target.hostKey())
		opts := env.opts
		_, err := DialSSH(context.Background(), SSHTarget{Name: "web1", Host: "web"}, opts)
		var hkErr *HostKeyError
		if !errors.As(err, &hkErr) || hkErr.Addr != env.jump.addr || hkErr.Changed {
			t.Fatalf("err = %v, want an unknown-key *HostKeyError for the jump host", err)
		}
		if !strings.HasPrefix(err.Error(), "web1: jump host bastion ("+env.jump.addr+"): unknown host key") {
			t.Errorf("message %q does not name the jump host", err)
		}
		if n := env.target.accepts.Load(); n != 0 {
			t.Errorf("the target was reached %d times", n)
		}
	})
	t.Run("changed target key behind a known jump host", func(t *testing.T) {
		env := newJumpEnv(t)
		addKnownHost(t, env.knownHosts(), env.jump.addr, env.jump.hostKey())
		addKnownHost(t, env.knownHosts(), env.target.addr, newEd25519Signer(t).PublicKey())
		opts := env.opts
		opts.AcceptNewHostKeys = true
		_, err := DialSSH(context.Background(), SSHTarget{Name: "web1", Host: "web"}, opts)
		var hkErr *HostKeyError
		if !errors.As(err, &hkErr) || hkErr.Addr != env.target.addr || !hkErr.Changed || hkErr.Host != "web1" {
			t.Fatalf("err = %v, want a changed *HostKeyError for the target", err)
		}
	})
	t.Run("inline hop with user and port", func(t *testing.T) {
		env := newJumpEnv(t)
		addKnownHost(t, env.knownHosts(), env.jump.addr, env.jump.hostKey())
		addKnownHost(t, env.knownHosts(), env.target.addr, env.target.hostKey())
		env.writeConfig(t, fmt.Sprintf(`Host web
  HostName 127.0.0.1
  Port %d
  User deploy
  IdentityFile ~/.ssh/target_key
  ProxyJump jumper@127.0.0.1:%d
`, env.target.port, env.jump.port))
		// The hop is no alias, so it gets the default key files, not
		// web's IdentityFile: make the jump key ~/.ssh/id_ed25519.
		data, err := os.ReadFile(filepath.Join(env.home, ".ssh", "jump_key"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(env.home, ".ssh", "id_ed25519"), data, 0o600); err != nil {
			t.Fatal(err)
		}
		env.dial(t, SSHTarget{Name: "web1", Host: "web"})
	})
}

func TestSSHConnectTimeout(t *testing.T) {
	env := newSSHTestEnv(t)
	// A server that accepts the TCP connection and never says a word.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held []net.Conn
	var mu sync.Mutex
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, c)
			mu.Unlock()
		}
	}()
	defer func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range held {
			c.Close()
		}
	}()

	env.opts.ConnectTimeout = 300 * time.Millisecond
	start := time.Now()
	_, err = DialSSH(context.Background(), SSHTarget{Name: "web1", Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port}, env.opts)
	elapsed := time.Since(start)
	if err == nil || !strings.HasPrefix(err.Error(), "web1: ") || !strings.Contains(err.Error(), "within 300ms") {
		t.Fatalf("err = %v, want a timeout naming web1", err)
	}
	if elapsed > 5*time.Second {
		t.Errorf("DialSSH took %v with a 300ms timeout", elapsed)
	}
}

func TestSSHContextCancelStopsCommand(t *testing.T) {
	env := newSSHTestEnv(t)
	conn := env.dial(t, targetFor(env.knownServer(t)))

	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	start := time.Now()
	_, err := conn.Exec(ctx, Command{Script: "sleep 30"})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("Exec returned %v after the cancel", elapsed)
	}
	// The connection outlives the cancelled command.
	if _, err := conn.Query(context.Background(), Command{Script: "true"}); err != nil {
		t.Errorf("Query after a cancelled command: %v", err)
	}
}

func TestSSHConnectionLost(t *testing.T) {
	env := newSSHTestEnv(t)
	srv := env.knownServer(t)
	conn := env.dial(t, targetFor(srv))

	time.AfterFunc(200*time.Millisecond, srv.dropConnections)
	_, err := conn.Exec(context.Background(), Command{Script: "sleep 30"})
	if !errors.Is(err, ErrConnectionLost) || !strings.HasPrefix(err.Error(), "web1: connection lost") {
		t.Fatalf("err = %v, want ErrConnectionLost naming web1", err)
	}
	var exitErr *ExitError
	if errors.As(err, &exitErr) {
		t.Errorf("a lost connection reported as exit status %d", exitErr.Code)
	}
	if _, err := conn.Query(context.Background(), Command{Script: "true"}); !errors.Is(err, ErrConnectionLost) {
		t.Errorf("Query on the lost connection: %v, want ErrConnectionLost", err)
	}
}

func TestSSHKeepAliveClosesDeadConnection(t *testing.T) {
	env := newSSHTestEnv(t)
	srv := env.knownServer(t)
	env.opts.KeepAlive = 50 * time.Millisecond
	conn := env.dial(t, targetFor(srv))
	srv.ignoreKeepAlives.Store(true)

	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := conn.Query(context.Background(), Command{Script: "true"})
		if errors.Is(err, ErrConnectionLost) {
			if !strings.Contains(err.Error(), "keepalive") {
				t.Errorf("message %q does not say the keepalives went unanswered", err)
			}
			return
		}
		if err != nil {
			t.Fatalf("Query: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the connection is still up 10s after the server stopped answering keepalives")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
