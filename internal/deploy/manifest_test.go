package deploy

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/layout"
	"github.com/slipway-deploy/slipway/internal/source"
)

// manifestHost answers the fetch of a manifest with canned bytes.
type manifestHost struct {
	host.Executor
	name    string
	answer  []byte
	fail    bool
	queries atomic.Int32
}

func (h *manifestHost) Name() string { return h.name }

func (h *manifestHost) Query(_ context.Context, cmd host.Command) (host.Result, error) {
	h.queries.Add(1)
	if !strings.HasSuffix(cmd.Script, "| gzip -1 -c") {
		return host.Result{}, errors.New("unexpected script " + cmd.Script)
	}
	if h.fail {
		return host.Result{}, errors.New("connection lost")
	}
	// The manifest comes gzipped.
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	_, _ = zw.Write(h.answer)
	_ = zw.Close()
	return host.Result{Stdout: z.Bytes()}, nil
}

type warnings struct {
	mu    sync.Mutex
	lines []string
}

func (w *warnings) Event(e Event) {
	if e.Kind == Warning {
		w.mu.Lock()
		w.lines = append(w.lines, e.Host+": "+e.Line)
		w.mu.Unlock()
	}
}

func manifestOf(t *testing.T, files map[string]string) ([]byte, string) {
	t.Helper()
	entries := map[string]source.Entry{}
	for rel, content := range files {
		sum := sha256.Sum256([]byte(content))
		entries[rel] = source.Entry{Type: 'f', Mode: 0o644, Size: int64(len(content)), SHA256: hex.EncodeToString(sum[:])}
	}
	raw := source.EncodeManifest(entries)
	sum := sha256.Sum256(raw)
	return raw, hex.EncodeToString(sum[:])
}

func TestManifestStepFetchesEachManifestOnce(t *testing.T) {
	a, sumA := manifestOf(t, map[string]string{"index.php": "a", "lib/x.php": "x"})
	b, sumB := manifestOf(t, map[string]string{"index.php": "b"})
	corrupt := append([]byte("x"), a...)
	hosts := []*manifestHost{
		{name: "web1", answer: corrupt}, // its file changed after inspect read it
		{name: "web2", answer: a},
		{name: "web3", answer: a},
		{name: "web4", answer: b},
		{name: "web5", fail: true}, // the only one with its manifest
		{name: "web6", answer: a},  // too big to be trusted
	}
	sums := []string{sumA, sumA, sumA, sumB, strings.Repeat("0", 64), sumA}
	w := &warnings{}
	r := &run{layout: layout.Layout{DeployTo: "/srv/app", Releases: "releases", Shared: "shared", Current: "current"}, opts: Options{Events: w}}
	var targets []*Target
	for i, h := range hosts {
		st := &State{Current: "20261122080000", Meta: map[string]*ReleaseMeta{}, manifestSum: sums[i], manifestSize: int64(len(h.answer))}
		if h.name == "web6" {
			st.manifestSize = maxManifest + 1
		}
		targets = append(targets, &Target{Exec: h, State: st})
		targets[i].Host.Name = h.name
	}
	if err := (manifestStep{r}).RunFleet(context.Background(), targets); err != nil {
		t.Fatal(err)
	}

	// web1 gave changed bytes, so web2 was asked; web3 was not.
	for i, want := range []int32{1, 1, 0, 1, 1, 0} {
		if got := hosts[i].queries.Load(); got != want {
			t.Errorf("%s was asked %d times, want %d", hosts[i].name, got, want)
		}
	}
	shared := targets[0].State.live
	if shared == nil || len(shared.entries) != 2 || !shared.canonical {
		t.Fatalf("web1: manifest %v, want the two entries of web2's", shared)
	}
	for _, i := range []int{1, 2} {
		if targets[i].State.live != shared || targets[i].State.ManifestErr != nil {
			t.Errorf("%s: does not share the one parsed manifest (err %v)", hosts[i].name, targets[i].State.ManifestErr)
		}
	}
	if st := targets[3].State; st.live == nil || st.live == shared || len(st.live.entries) != 1 {
		t.Errorf("web4: its own manifest was not read: %v", st.live)
	}
	for _, i := range []int{4, 5} {
		if st := targets[i].State; st.ManifestErr == nil || st.live != nil {
			t.Errorf("%s: manifest trusted (err %v)", hosts[i].name, st.ManifestErr)
		}
	}
	if len(w.lines) != 2 || !strings.Contains(strings.Join(w.lines, "\n"), "web5: the live release's manifest is unreadable (reading it from web5: connection lost)") ||
		!strings.Contains(strings.Join(w.lines, "\n"), "web6: the live release's manifest is unreadable (it is") {
		t.Errorf("warnings:\n%s", strings.Join(w.lines, "\n"))
	}
}
