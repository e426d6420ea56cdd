package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeFastCGI accepts one connection on a unix socket in dir, reads one
// request and answers it with stdout and stderr (in records of at most 7
// bytes, so the client reassembles them), then END_REQUEST. The request's
// parameters come on the channel.
func fakeFastCGI(t *testing.T, dir, stdout, stderr string) (socket string, params chan map[string]string) {
	t.Helper()
	socket = filepath.Join(dir, "fpm.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	params = make(chan map[string]string, 1)
	go func() {
		conn, err := l.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		r := bufio.NewReader(conn)
		var encoded []byte
		gotBegin := false
		for {
			typ, content, err := readRecord(r)
			if err != nil {
				return
			}
			if typ == fcgiBeginRequest {
				gotBegin = len(content) == 8 && content[1] == fcgiResponder
			}
			if typ == fcgiParams {
				encoded = append(encoded, content...)
			}
			if typ == fcgiStdin && len(content) == 0 {
				break
			}
		}
		p := decodeParams(t, encoded)
		if !gotBegin {
			p["!begin"] = "missing"
		}
		params <- p
		w := bufio.NewWriter(conn)
		for _, s := range []struct {
			typ  byte
			text string
		}{{fcgiStdout, stdout}, {fcgiStderr, stderr}} {
			for text := s.text; text != ""; {
				n := min(7, len(text))
				writeRecord(w, s.typ, []byte(text[:n]))
				text = text[n:]
			}
		}
		writeRecord(w, fcgiEndRequest, []byte{0, 0, 0, 0, fcgiRequestStatus, 0, 0, 0})
		w.Flush()
	}()
	return socket, params
}

// decodeParams is the server's side of encodeParams.
func decodeParams(t *testing.T, b []byte) map[string]string {
	out := map[string]string{}
	length := func() int {
		if b[0] < 128 {
			n := int(b[0])
			b = b[1:]
			return n
		}
		n := int(binary.BigEndian.Uint32(b[:4]) &^ (1 << 31))
		b = b[4:]
		return n
	}
	for len(b) > 0 {
		nl, vl := length(), length()
		out[string(b[:nl])] = string(b[nl : nl+vl])
		b = b[nl+vl:]
	}
	return out
}

func TestFastCGIGet(t *testing.T) {
	dir := t.TempDir()
	long := strings.Repeat("x", 300) // a 4-byte length
	socket, params := fakeFastCGI(t, dir, "Content-type: application/json\r\nX-Powered-By: PHP\r\n\r\n{\"loaded\":true}", "PHP Notice: something")
	conn, err := net.Dial("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := fastcgiGet(ctx, conn, map[string]string{"SCRIPT_FILENAME": "/srv/app/releases/1/x.php", "QUERY_STRING": "do=reset", "LONG": long})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != 200 || string(resp.Body) != `{"loaded":true}` || string(resp.Stderr) != "PHP Notice: something" || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("response %d %q %q %v", resp.Status, resp.Body, resp.Stderr, resp.Header)
	}
	got := <-params
	if got["SCRIPT_FILENAME"] != "/srv/app/releases/1/x.php" || got["QUERY_STRING"] != "do=reset" || got["LONG"] != long || got["!begin"] != "" {
		t.Errorf("the server got %v", got)
	}
}

func TestFastCGIStatus(t *testing.T) {
	resp, err := parseCGI([]byte("Status: 404 Not Found\r\nContent-type: text/html\r\n\r\nFile not found.\n"))
	if err != nil || resp.Status != 404 || string(resp.Body) != "File not found.\n" {
		t.Fatalf("%+v %v", resp, err)
	}
	if _, err := parseCGI([]byte("no headers at all")); err == nil {
		t.Error("a body without headers was accepted")
	}
}

func TestFastCGIServerGoesAway(t *testing.T) {
	dir := t.TempDir()
	l, err := net.Listen("unix", filepath.Join(dir, "s"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		if c, err := l.Accept(); err == nil {
			// The whole request, then away without an answer.
			r := bufio.NewReader(c)
			for {
				typ, content, err := readRecord(r)
				if err != nil || typ == fcgiStdin && len(content) == 0 {
					break
				}
			}
			c.Close()
		}
	}()
	conn, err := net.Dial("unix", filepath.Join(dir, "s"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fastcgiGet(context.Background(), conn, map[string]string{"A": "b"}); err == nil || !strings.Contains(err.Error(), "closed the connection") {
		t.Errorf("got %v", err)
	}
}

func TestOPcacheAnswers(t *testing.T) {
	const script, socket, deployTo = "/srv/app/releases/20260101000000/.slipway-opcache-x.php", "/run/php/fpm.sock", "/srv/app"
	for name, tc := range map[string]struct {
		resp    fastcgiResponse
		want    opcacheState
		wantErr string
	}{
		"reset": {
			resp: fastcgiResponse{Status: 200, Body: []byte(`{"loaded":true,"enabled":true,"pending":true,"reset":true,"memory":81.5,"keys":3,"strings":40,"force_restart_timeout":180}`)},
			want: opcacheState{Loaded: true, Enabled: true, Pending: true, Reset: true, Memory: 81.5, Keys: 3, Strings: 40, ForceRestartTimeout: 180},
		},
		"not loaded": {resp: fastcgiResponse{Status: 200, Body: []byte(`{"loaded":false}`)}},
		"script unknown": {
			resp:    fastcgiResponse{Status: 404, Body: []byte("File not found.\n"), Stderr: []byte("Primary script unknown")},
			wantErr: "answered 404 for " + script + " (Primary script unknown): the pool cannot read the live release",
		},
		"restricted": {
			resp:    fastcgiResponse{Status: 200, Body: []byte(`{"loaded":true,"enabled":false,"error":"opcache_get_status(): Zend OPcache API is restricted by \"restrict_api\" configuration directive"}`)},
			wantErr: "fix: set opcache.restrict_api empty, or to a prefix of /srv/app",
		},
		"reset refused": {
			resp:    fastcgiResponse{Status: 200, Body: []byte(`{"loaded":true,"enabled":true,"reset":false,"error":"opcache_reset() returned false"}`)},
			wantErr: "could not reset OPcache: opcache_reset() returned false",
		},
		"not PHP": {
			resp:    fastcgiResponse{Status: 200, Body: []byte("<?php\n// Written by slipway")},
			wantErr: "did not run slipway's script as PHP",
		},
	} {
		t.Run(name, func(t *testing.T) {
			st, err := parseOPcacheAnswer(&tc.resp, script, socket, deployTo)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error with %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || *st != tc.want {
				t.Fatalf("got %+v %v, want %+v", st, err, tc.want)
			}
		})
	}
}

func TestOPcacheShellScripts(t *testing.T) {
	hostile := "/srv/a b/$(touch x)'\"/releases/1/.slipway-opcache-0.php"
	for _, script := range []string{writeOPcacheScript(hostile), removeOPcacheScript(hostile)} {
		if out, err := exec.Command("sh", "-n", "-c", script).CombinedOutput(); err != nil {
			t.Errorf("sh -n: %v %s\n%s", err, out, script)
		}
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "it's $x.php")
	cmd := exec.Command("sh", "-c", writeOPcacheScript(file))
	cmd.Stdin = strings.NewReader(opcacheScript)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if info, err := os.Stat(file); err != nil || info.Mode().Perm() != 0o644 {
		t.Fatalf("written: %v %v", info, err)
	}
	if out, err := exec.Command("sh", "-c", removeOPcacheScript(file)).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("not removed: %v", err)
	}
}

// TestOPcacheScriptRuns runs the script with PHP's command line, which has
// OPcache too (opcache.enable_cli), where PHP is installed.
func TestOPcacheScriptRuns(t *testing.T) {
	php, err := exec.LookPath("php")
	if err != nil {
		t.Skip("php is not installed; the end-to-end suite runs the script in php-fpm")
	}
	file := filepath.Join(t.TempDir(), "opcache.php")
	if err := os.WriteFile(file, []byte(opcacheScript), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(query string) opcacheState {
		t.Helper()
		out, err := exec.Command(php, "-n", "-d", "zend_extension=opcache", "-d", "opcache.enable_cli=1", "-r",
			`parse_str($argv[1], $_GET); include $argv[2];`, query, file).CombinedOutput()
		if err != nil {
			t.Fatalf("php: %v\n%s", err, out)
		}
		var st opcacheState
		if err := json.Unmarshal(bytes.TrimSpace(out), &st); err != nil {
			t.Fatalf("%v: %q", err, out)
		}
		return st
	}
	st := run("do=status")
	if !st.Loaded {
		t.Skip("OPcache is not available to php here")
	}
	if !st.Enabled || st.Reset || st.Memory <= 0 || st.ForceRestartTimeout != 180 {
		t.Errorf("status: %+v", st)
	}
	if st := run("do=reset&above=99"); !st.Enabled || st.Reset {
		t.Errorf("reset above 99%% of an empty cache: %+v", st)
	}
	if st := run("do=reset"); !st.Reset || st.Error != "" {
		t.Errorf("reset: %+v", st)
	}
}

// TestFastCGIGetCancelled: a pool that never answers (every worker busy)
// holds the request no longer than its context, through a connection
// without deadlines (an SSH channel's).
func TestFastCGIGetCancelled(t *testing.T) {
	server, client := net.Pipe()
	defer server.Close()
	go io.Copy(io.Discard, server)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := fastcgiGet(ctx, noDeadlines{client}, map[string]string{"A": "b"})
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Errorf("got %v after %s", err, time.Since(start))
	}
}

// noDeadlines is a connection that refuses deadlines, as an SSH channel does.
type noDeadlines struct{ net.Conn }

func (noDeadlines) SetDeadline(time.Time) error      { return errors.ErrUnsupported }
func (noDeadlines) SetReadDeadline(time.Time) error  { return errors.ErrUnsupported }
func (noDeadlines) SetWriteDeadline(time.Time) error { return errors.ErrUnsupported }
