package main

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// bannerServer listens on loopback until the test ends; each connection
// gets an SSH-like banner, then serve.
func bannerServer(t *testing.T, serve func(net.Conn)) net.Listener {
	t.Helper()
	server, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	go func() {
		for {
			conn, err := server.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				conn.Write([]byte("SSH-2.0-x\r\n"))
				serve(conn)
			}()
		}
	}()
	return server
}

// The relay counts exactly the bytes that cross it, both ways, and the
// turns of the conversation.
func TestRelayCountsBytesAndExchanges(t *testing.T) {
	// A server that speaks first, then answers each request of 1,000
	// bytes with 10 bytes.
	server := bannerServer(t, func(conn net.Conn) {
		buf := make([]byte, 1000)
		for {
			if _, err := io.ReadFull(conn, buf); err != nil {
				return
			}
			conn.Write(bytes.Repeat([]byte("k"), 10))
		}
	})
	r, err := startRelay(server.Addr().(*net.TCPAddr).Port)
	if err != nil {
		t.Fatal(err)
	}
	defer r.stop()

	client, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port())))
	if err != nil {
		t.Fatal(err)
	}
	banner := make([]byte, 11)
	if _, err := io.ReadFull(client, banner); err != nil {
		t.Fatal(err)
	}
	const requests = 5
	for range requests {
		if _, err := client.Write(bytes.Repeat([]byte("x"), 1000)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(client, make([]byte, 10)); err != nil {
			t.Fatal(err)
		}
	}
	client.Close()
	for deadline := time.Now().Add(5 * time.Second); r.active() > 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	got := r.snapshot()
	want := counts{conns: 1, up: requests * 1000, down: 11 + requests*10, exchanges: requests}
	if got != want {
		t.Errorf("relay counted %+v, want %+v", got, want)
	}
}

// The app is the same for the same seed, about the size asked for, and
// its one-file change touches one line.
func TestGenerateAppIsDeterministic(t *testing.T) {
	spec := appSpec{Files: 300, Bytes: 2e6, Seed: 7}
	a, b := t.TempDir(), t.TempDir()
	filesA, err := generateApp(a, spec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := generateApp(b, spec); err != nil {
		t.Fatal(err)
	}
	if len(filesA) != spec.Files {
		t.Errorf("%d files, want %d", len(filesA), spec.Files)
	}
	var total int64
	for _, f := range filesA {
		x, err := os.ReadFile(filepath.Join(a, f.rel))
		if err != nil {
			t.Fatal(err)
		}
		y, err := os.ReadFile(filepath.Join(b, f.rel))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(x, y) {
			t.Fatalf("%s differs between two generations with one seed", f.rel)
		}
		total += int64(len(x))
	}
	if float64(total) < 0.9*float64(spec.Bytes) || float64(total) > 1.1*float64(spec.Bytes) {
		t.Errorf("%d bytes, want about %d", total, spec.Bytes)
	}
	if d := lineDiff(appConfig(0), appConfig(1)); d != 1 {
		t.Errorf("the one-file change touches %d lines, want 1", d)
	}
}

func lineDiff(a, b string) int {
	x, y := bytes.Split([]byte(a), []byte("\n")), bytes.Split([]byte(b), []byte("\n"))
	if len(x) != len(y) {
		return -1
	}
	n := 0
	for i := range x {
		if !bytes.Equal(x[i], y[i]) {
			n++
		}
	}
	return n
}

func TestUplinkCarriesItsBandwidth(t *testing.T) {
	// 100 Mbit/s is 12.5 MB/s: 2.5 MB in 64 kB chunks takes 200 ms, less
	// the burst allowance, from two writers sharing the link.
	u := newUplink(100e6)
	start := time.Now()
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				u.carry(1250000 / 20)
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	if took < 200*time.Millisecond-uplinkBurst || took > time.Second {
		t.Errorf("2.5 MB over 100 Mbit/s took %v, want about 200 ms", took)
	}
}

// The store's two parts go into scaling.md where they belong the first
// time (the measurements before "1,000 hosts and more", the plan inside it,
// before what slipway needs), and replace themselves, and nothing else,
// after that.
func TestSpliceStore(t *testing.T) {
	doc := "# How slipway scales\n\n## With the number of files\n\ntable\n\n## 1,000 hosts and more\n\n### What the measurements predict\n\n- bytes\n\n### What slipway needs for such fleets\n\n1. pacing\n\n## Machine\n\n- CPU\n"
	part := func(begin, end, text string) string { return begin + "\n" + text + "\n" + end + "\n" }
	first := spliceStore(doc, part(storeBegin, storeEnd, "## Through an artifact store\n\nrun 1"),
		part(storePlanBegin, storePlanEnd, "### With the artifact store\n\nplan 1"))
	want := "# How slipway scales\n\n## With the number of files\n\ntable\n\n" +
		storeBegin + "\n## Through an artifact store\n\nrun 1\n" + storeEnd + "\n" +
		"\n## 1,000 hosts and more\n\n### What the measurements predict\n\n- bytes\n\n" +
		storePlanBegin + "\n### With the artifact store\n\nplan 1\n" + storePlanEnd + "\n" +
		"\n### What slipway needs for such fleets\n\n1. pacing\n\n## Machine\n\n- CPU\n"
	if first != want {
		t.Fatalf("first splice:\n%s\nwant:\n%s", first, want)
	}
	second := spliceStore(first, part(storeBegin, storeEnd, "## Through an artifact store\n\nrun 2"),
		part(storePlanBegin, storePlanEnd, "### With the artifact store\n\nplan 2"))
	if second != strings.NewReplacer("run 1", "run 2", "plan 1", "plan 2").Replace(want) {
		t.Fatalf("second splice:\n%s", second)
	}
}

// With a round-trip time, the relay delays each direction by half of it:
// the TCP connect and the banner take their round trips, each request
// and answer one more, and a bulk transfer is not slowed by more than the
// delay (the relay queues what it reads instead of pausing between reads).
func TestRelayDelaysWithoutLimitingThroughput(t *testing.T) {
	const rtt = 40 * time.Millisecond
	// A banner; then, for each line, its length as an answer.
	server := bannerServer(t, func(conn net.Conn) {
		lines := bufio.NewReaderSize(conn, 1<<20)
		for {
			n := 0
			line, err := lines.ReadSlice('\n')
			for ; err == bufio.ErrBufferFull; line, err = lines.ReadSlice('\n') {
				n += len(line)
			}
			if err != nil {
				return
			}
			conn.Write([]byte(strconv.Itoa(n+len(line)) + "\n"))
		}
	})
	r, err := startRelay(server.Addr().(*net.TCPAddr).Port)
	if err != nil {
		t.Fatal(err)
	}
	defer r.stop()
	r.setDelay(rtt)

	start := time.Now()
	client, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port())))
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	answers := bufio.NewReader(client)
	if _, err := answers.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	// Connect (one round trip) and the banner, sent when the host accepts
	// (half a round trip later) and half a round trip on its way.
	if took := time.Since(start); took < 2*rtt || took > 2*rtt+rtt/2 {
		t.Errorf("the banner came %v after the connect, want about %v", took, 2*rtt)
	}
	const requests = 3
	start = time.Now()
	for range requests {
		if _, err := client.Write([]byte("ping\n")); err != nil {
			t.Fatal(err)
		}
		if _, err := answers.ReadString('\n'); err != nil {
			t.Fatal(err)
		}
	}
	if took := time.Since(start); took < requests*rtt || took > requests*rtt+rtt {
		t.Errorf("%d requests took %v, want about %v", requests, took, requests*rtt)
	}

	// 64 MB in one line: paused for the delay before each read of at
	// most 64 KiB, it would take over 10 s.
	bulk := bytes.Repeat([]byte("x"), 64<<20)
	bulk[len(bulk)-1] = '\n'
	start = time.Now()
	go client.Write(bulk)
	answer, err := answers.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if answer != strconv.Itoa(64<<20)+"\n" {
		t.Errorf("the host read %q bytes, want %d", answer, 64<<20)
	}
	if took := time.Since(start); took < rtt || took > rtt+3*time.Second {
		t.Errorf("64 MB and its answer took %v, want a little more than %v", took, rtt)
	}
	client.Close()
	for deadline := time.Now().Add(5 * time.Second); r.active() > 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if got := r.snapshot(); got.exchanges != requests+1 || got.conns != 1 {
		t.Errorf("relay counted %+v, want %d exchanges (the requests and the bulk line) in one connection", got, requests+1)
	}
}

// A receiver that does not read holds the sender back, as TCP's window
// would: the lane does not queue what it cannot deliver.
func TestLaneHoldsTheSenderBackWhenTheReceiverDoesNot(t *testing.T) {
	sender, lanesSource := net.Pipe()
	lanesTarget, receiver := net.Pipe() // nobody reads receiver
	defer receiver.Close()
	l := newLane(0, time.Time{})
	go l.read(lanesSource, func(int) {})
	go l.write(lanesTarget, func(int) {})
	if _, err := sender.Write(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	// The lane's writer is stuck writing that chunk.
	for l.writing.TryLock() {
		l.writing.Unlock()
		time.Sleep(time.Millisecond)
	}
	go func() {
		for {
			if _, err := sender.Write(make([]byte, 1000)); err != nil {
				return
			}
		}
	}()
	time.Sleep(100 * time.Millisecond)
	// The read that was waiting for the sender may have taken one more.
	if queued := len(l.chunks); queued > 1 {
		t.Errorf("%d chunks queued for a receiver that reads nothing, want at most 1", queued)
	}
	sender.Close()
	lanesSource.Close()
	lanesTarget.Close()
}

func TestGoalRatio(t *testing.T) {
	for g, want := range map[float64]string{1.0 / 8: "1/8", 1.0 / 3: "1/3", 0.1: "1/10", 0.7: "0.7×", 0.4: "0.4×", 0.9: "0.9×"} {
		if got := goalRatio(g); got != want {
			t.Errorf("goalRatio(%v) = %q, want %q", g, got, want)
		}
	}
}
