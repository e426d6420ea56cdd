package testutil

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"golang.org/x/sys/unix"
)

// SeaweedFSVersion is the SeaweedFS module version whose `weed` is the S3
// server of the tests that deploy through an artifact store.
// scripts/install-test-deps.sh builds the same one (TestInstallScriptBuildsWeed).
const SeaweedFSVersion = "v0.0.0-20261109003541-7506e5f91cd6"

const seaweedFSModule = "github.com/seaweedfs/seaweedfs"

// S3 is a real S3-compatible object store on loopback: SeaweedFS's `weed
// mini` (master, volume server, filer and S3 gateway in one process), with
// signature checking on (one identity, whose keys Env gives) and one empty
// bucket. The hosts of a Fleet without a private network reach it at
// Endpoint, as this machine does.
type S3 struct {
	// Endpoint is the S3 API: http://127.0.0.1:PORT.
	Endpoint  string
	Bucket    string
	AccessKey string
	SecretKey string

	dir       string
	grpcPorts []int // weed names a socket in /tmp after each
	cmd       *exec.Cmd
	exited    chan struct{}
	client    *minio.Client
}

// StartS3 starts an S3 server and creates Bucket, and stops the server when
// the test ends. It builds SeaweedFS first if the cache does not have it
// (see WeedBinary): minutes, once per machine.
func StartS3(t testing.TB) *S3 {
	t.Helper()
	weed := WeedBinary(t)
	s := &S3{Bucket: "slipway-e2e", AccessKey: "SLIPWAYE2E" + randomHex(5), SecretKey: randomHex(20), dir: t.TempDir()}
	t.Cleanup(s.stop)
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		if err = s.start(weed); err == nil {
			break
		}
		s.stop()
	}
	if err != nil {
		t.Fatalf("StartS3: %v", err)
	}
	return s
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return strings.ToUpper(hex.EncodeToString(b))
}

// s3ReadyTimeout bounds the server's start, which a busy machine slows.
const s3ReadyTimeout = 60 * time.Second

func (s *S3) start(weed string) error {
	config := map[string]any{"identities": []any{map[string]any{
		"name":        "slipway",
		"credentials": []any{map[string]string{"accessKey": s.AccessKey, "secretKey": s.SecretKey}},
		"actions":     []string{"Admin", "Read", "List", "Tagging", "Write"},
	}}}
	data, _ := json.Marshal(config)
	configFile := filepath.Join(s.dir, "s3.json")
	if err := os.WriteFile(configFile, data, 0o600); err != nil {
		return err
	}
	// Every service has an HTTP port and a gRPC one; all are given, free
	// ports of this machine (held together, so distinct): two servers
	// (two test binaries) never compete for a default.
	ports, err := freePorts(10)
	if err != nil {
		return err
	}
	s.grpcPorts = []int{ports[1], ports[3], ports[5], ports[7], ports[9]}
	dataDir := filepath.Join(s.dir, "data")
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return err
	}
	s.Endpoint = "http://127.0.0.1:" + strconv.Itoa(ports[0])
	args := []string{"mini", "-dir=" + dataDir, "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
		"-s3.port=" + strconv.Itoa(ports[0]), "-s3.port.grpc=" + strconv.Itoa(ports[1]),
		"-master.port=" + strconv.Itoa(ports[2]), "-master.port.grpc=" + strconv.Itoa(ports[3]),
		"-volume.port=" + strconv.Itoa(ports[4]), "-volume.port.grpc=" + strconv.Itoa(ports[5]),
		"-filer.port=" + strconv.Itoa(ports[6]), "-filer.port.grpc=" + strconv.Itoa(ports[7]),
		"-admin.port=" + strconv.Itoa(ports[8]), "-admin.port.grpc=" + strconv.Itoa(ports[9]), "-admin.port.legacy=0",
		"-filer.localSocket=" + filepath.Join(s.dir, "filer.sock"), "-s3.localSocket=" + filepath.Join(s.dir, "s3.sock"),
		"-s3.port.iceberg=0", "-s3.port.lance=0", "-webdav=false", "-admin.ui=false", "-master.telemetry=false",
		"-s3.config=" + configFile, "-bucket=" + s.Bucket}
	log, err := os.Create(filepath.Join(s.dir, "weed.log"))
	if err != nil {
		return err
	}
	defer log.Close()
	cmd := exec.Command(weed, args...)
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = log, log
	// Its own process group, out of reach of a Ctrl-C at the terminal, and
	// killed if this process dies without its cleanup.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", weed, err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(s.exited)
	}()
	host := strings.TrimPrefix(s.Endpoint, "http://")
	s.client, err = minio.New(host, &minio.Options{Creds: credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""), Region: "us-east-1"})
	if err != nil {
		return err
	}
	// Ready once the bucket -bucket creates is there for our identity.
	deadline := time.Now().Add(s3ReadyTimeout)
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("weed mini exited before it served S3 (%v); its log:\n%s", cmd.ProcessState, s.Log())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		ok, err := s.client.BucketExists(ctx, s.Bucket)
		cancel()
		if ok && err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("weed mini did not serve bucket %s at %s within %s (last: %v, %v); its log:\n%s", s.Bucket, s.Endpoint, s3ReadyTimeout, ok, err, s.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Log is the server's output, for failure messages.
func (s *S3) Log() string {
	data, err := os.ReadFile(filepath.Join(s.dir, "weed.log"))
	if err != nil {
		return err.Error()
	}
	return string(data)
}

func (s *S3) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.exited
	s.cmd = nil
	// The sockets weed made beside its gRPC ports, whatever their service.
	for _, port := range s.grpcPorts {
		socks, _ := filepath.Glob(fmt.Sprintf("/tmp/seaweedfs-*-grpc-%d.sock", port))
		for _, sock := range socks {
			os.Remove(sock)
		}
	}
}

// Pid is the server's process ID, which is also its process group (0 once
// stopped): a benchmark tells its CPU time from other programs'.
func (s *S3) Pid() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Env is the environment that gives a client the server's credentials.
func (s *S3) Env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + s.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s.SecretKey}
}

// NoAWSCredentials clears, for t, every source of AWS credentials an S3
// client reads: the environment, and the shared credentials file (under
// a new, empty HOME).
func NoAWSCredentials(t testing.TB) {
	t.Setenv("HOME", t.TempDir())
	for _, name := range []string{"AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY", "AWS_SESSION_TOKEN",
		"AWS_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"} {
		t.Setenv(name, "")
	}
}

// Objects lists every object of the bucket: its size by key.
func (s *S3) Objects(t testing.TB) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for obj := range s.client.ListObjects(context.Background(), s.Bucket, minio.ListObjectsOptions{Recursive: true}) {
		if obj.Err != nil {
			t.Fatalf("listing bucket %s: %v", s.Bucket, obj.Err)
		}
		out[obj.Key] = obj.Size
	}
	return out
}

// Get returns an object's content.
func (s *S3) Get(t testing.TB, key string) []byte {
	t.Helper()
	obj, err := s.client.GetObject(context.Background(), s.Bucket, key, minio.GetObjectOptions{})
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	defer obj.Close()
	data, err := io.ReadAll(obj)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	return data
}

// Put replaces an object's content (a test damages a pack in the store).
func (s *S3) Put(t testing.TB, key string, data []byte) {
	t.Helper()
	if _, err := s.client.PutObject(context.Background(), s.Bucket, key, bytes.NewReader(data), int64(len(data)), minio.PutObjectOptions{}); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

// Relay is a TCP relay on its own port of 127.0.0.1 to the server, which
// counts the bytes clients send through it: put it in a client's endpoint
// to measure what that client uploads. Hosts keep reaching Endpoint.
type Relay struct {
	// Endpoint is http://127.0.0.1:PORT of the relay.
	Endpoint string
	listener net.Listener
	target   string
	up       atomic.Int64
	wg       sync.WaitGroup
}

// Relay starts a counting relay to the server; it stops with the test.
func (s *S3) Relay(t testing.TB) *Relay {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("relay: %v", err)
	}
	r := &Relay{Endpoint: "http://" + l.Addr().String(), listener: l, target: strings.TrimPrefix(s.Endpoint, "http://")}
	r.wg.Go(r.accept)
	t.Cleanup(func() {
		l.Close()
		r.wg.Wait()
	})
	return r
}

// Sent is how many bytes clients have sent through the relay.
func (r *Relay) Sent() int64 { return r.up.Load() }

// Stop closes the relay's port: a client that connects from now on is
// refused, as by a store that went away.
func (r *Relay) Stop() { _ = r.listener.Close() }

func (r *Relay) accept() {
	for {
		client, err := r.listener.Accept()
		if err != nil {
			return
		}
		r.wg.Go(func() {
			defer client.Close()
			server, err := net.Dial("tcp", r.target)
			if err != nil {
				return
			}
			defer server.Close()
			done := make(chan struct{})
			go func() {
				n, _ := io.Copy(server, client)
				r.up.Add(n)
				if tc, ok := server.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
				}
				close(done)
			}()
			_, _ = io.Copy(client, server)
			client.Close()
			<-done
		})
	}
}

var weedBinary struct {
	once sync.Once
	path string
	err  error
}

// WeedBinary returns SeaweedFS's weed at SeaweedFSVersion, built once per
// machine into the user's cache directory
// (~/.cache/slipway-test/weed-VERSION/weed), which survives a fresh clone;
// never into the repository. A build takes minutes (it is niced, to leave
// the machine to the tests); processes that need it at once wait for one
// build, under a lock file.
func WeedBinary(t testing.TB) string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	Require(t, "the go tool on PATH, to build SeaweedFS's weed (the S3 server of the artifact store tests)", err == nil)
	weedBinary.once.Do(func() {
		weedBinary.path, weedBinary.err = buildWeed(goTool)
	})
	if weedBinary.err != nil {
		t.Fatalf("SeaweedFS's weed: %v", weedBinary.err)
	}
	return weedBinary.path
}

// WeedPath is where WeedBinary keeps the binary.
func WeedPath() (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(cache, "slipway-test", "weed-"+SeaweedFSVersion, "weed"), nil
}

func buildWeed(goTool string) (string, error) {
	binary, err := WeedPath()
	if err != nil {
		return "", err
	}
	if isExecutable(binary) {
		return binary, nil
	}
	dir := filepath.Dir(binary)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	lock, err := os.OpenFile(filepath.Join(dir, "build.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return "", fmt.Errorf("lock %s: %w", lock.Name(), err)
	}
	if isExecutable(binary) {
		return binary, nil // built by whoever held the lock
	}
	fmt.Fprintf(os.Stderr, "testutil: building SeaweedFS %s into %s (once per machine; minutes)\n", SeaweedFSVersion, binary)
	started := time.Now()
	// The module's go.mod has replace directives, which go install
	// pkg@version refuses: build it as the main module, in the module cache.
	env := append(os.Environ(), "GOFLAGS=-mod=mod", "GOWORK=off")
	download := exec.Command(goTool, "mod", "download", "-json", seaweedFSModule+"@"+SeaweedFSVersion)
	download.Dir, download.Env = os.TempDir(), env
	out, err := download.Output()
	if err != nil {
		return "", fmt.Errorf("go mod download %s@%s: %w\n%s", seaweedFSModule, SeaweedFSVersion, err, exitStderr(err))
	}
	var module struct{ Dir, Error string }
	if err := json.Unmarshal(out, &module); err != nil || module.Dir == "" {
		return "", fmt.Errorf("go mod download %s@%s: %v %s", seaweedFSModule, SeaweedFSVersion, err, module.Error)
	}
	tmp := binary + ".building"
	build := exec.Command("nice", "-n", "10", goTool, "build", "-trimpath", "-o", tmp, "./weed")
	build.Dir, build.Env = module.Dir, append(os.Environ(), "GOFLAGS=-buildvcs=false", "GOWORK=off")
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./weed in %s: %w\n%s", module.Dir, err, strings.TrimSpace(string(out)))
	}
	if err := os.Rename(tmp, binary); err != nil {
		return "", err
	}
	fmt.Fprintf(os.Stderr, "testutil: built SeaweedFS in %s\n", time.Since(started).Round(time.Second))
	return binary, nil
}

func exitStderr(err error) string {
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return strings.TrimSpace(string(exitErr.Stderr))
	}
	return ""
}

// HideCommands takes the named commands off the host's PATH: inside the
// host's mount namespace only, each one found in /usr/local/bin, /usr/bin
// or /bin is covered by an empty file that is not executable, so that
// `command -v NAME` fails there as on a server without the package. The
// rest of the machine and the other hosts keep them.
func (h *Host) HideCommands(t testing.TB, names ...string) {
	t.Helper()
	empty := filepath.Join(h.dir, "hidden-command")
	if err := os.WriteFile(empty, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		for _, dir := range []string{"/usr/local/bin", "/usr/bin", "/bin"} {
			path := filepath.Join(dir, name)
			if !isExecutable(path) {
				continue
			}
			args := append(h.nsenterArgs(), "--", "mount", "--bind", empty, path)
			if out, err := exec.Command("nsenter", args...).CombinedOutput(); err != nil {
				t.Fatalf("%s: hide %s: %v: %s", h.Name, path, err, out)
			}
		}
	}
	if out, _, err := h.TryRun("for c in " + strings.Join(names, " ") + "; do command -v $c; done"); err == nil || strings.TrimSpace(out) != "" {
		t.Fatalf("%s: %s still on PATH after HideCommands: %q", h.Name, strings.Join(names, ", "), out)
	}
}
