package deploy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/layout"
	"github.com/slipway-deploy/slipway/internal/shell"
	"github.com/slipway-deploy/slipway/internal/store"
)

// The artifact store (artifacts.store) as the distribution layer of an
// upload: instead of streaming the release to every host over SSH, where
// the deploying machine's uplink carries one copy per host, the deploy
// uploads each pack once to an S3 bucket and every host downloads its own
// with a short-lived presigned URL.
//
// A pack is what the push path would stream to a host (uploadStep): a tar
// of the entries it is sent, full or a delta, with the manifest (or its
// patch) and the checklist, compressed with zstd for hosts that have it
// and GNU tar, with gzip for the others (packCompression). Hosts that
// would be sent the same stream (the same live manifest, the same shared
// directories to seed, the same compression) share one pack. A pack is named by the
// SHA-256 of its bytes and is uploaded only when the store does not have it
// yet, so a promotion or a deploy run again uploads nothing new.
//
// On each host the pack is downloaded into the new release, checked against
// that SHA-256, and extracted by the very script a push runs
// (uploadScript), which stores the manifest and verifies the release's
// files before anything goes live. Everything around it is unchanged: the
// lock and its fence, the barrier before the switch, undo. A host that has
// neither curl nor wget, or whose download fails or does not match, is
// pushed its upload instead, with a warning; so is every host when this
// machine cannot use the store.

// The download tools a host may have, as the inspect step reports them.
const (
	fetchCurl = "curl"
	fetchWget = "wget"
	fetchNone = "none"
)

// packName is the pack's file in the new release while it is downloaded
// and extracted (reserved in source.Reserved). A run killed meanwhile
// leaves it in a release that never went live, which the next deploy
// removes with the release.
const packName = ".slipway-pack"

// presignTTL is how long a host's download URL works: it is made right
// before the host uses it, so this only needs to cover a slow start and
// the clock skew the store tolerates.
const presignTTL = 15 * time.Minute

// Exit statuses of downloadPackScript that make a host fall back to a push; any
// other failure fails the deploy.
const (
	fetchFailedStatus  = 75 // the download failed (the store unreachable, the URL refused)
	packMismatchStatus = 74 // what came is not the pack: its SHA-256 differs
)

// storeRun is the store's part of one deploy, shared by its two steps.
type storeRun struct {
	d *deployRun
	// store is nil once this machine could not use it: every host is then
	// pushed its upload.
	store *store.Store

	mu    sync.Mutex
	packs map[string]*pack // by streamKey
}

// pack is one pack in the store.
type pack struct {
	sum         string // SHA-256 of its bytes, hex: its name in the store
	size        int64
	compression string // compressZstd, compressGzip or compressNone
	hosts       int    // hosts it was made for
}

// viaStore says whether this deploy distributes through the artifact
// store: the upload strategy with artifacts.store set.
func (d *deployRun) viaStore() bool {
	return d.src.Git == nil && d.opts.Config.Artifacts != nil
}

// packCompression is how t's pack is compressed: source.compress, where
// auto takes zstd for a host that has it and GNU tar, and gzip for the
// others, since hosts reach a store over a network.
func (d *deployRun) packCompression(t *Target) string {
	if c, ok := d.compressSet(); ok {
		return c
	}
	if unpacksZstd(t) {
		return compressZstd
	}
	return compressGzip
}

// storePacksStep makes each distinct pack the hosts need and uploads the
// ones the store lacks.
type storePacksStep struct{ st *storeRun }

func (storePacksStep) Name() string { return "store packs" }

func (s storePacksStep) RunFleet(ctx context.Context, targets []*Target) error {
	st, d := s.st, s.st.d
	up := uploadStep{d: d}
	groups := map[string][]*Target{}
	var keys []string
	for _, t := range withState(targets) {
		if t.Host.NoRelease || t.State.Fetcher == fetchNone {
			continue
		}
		key := streamKey(up.content(t), d.packCompression(t))
		if groups[key] == nil {
			keys = append(keys, key)
		}
		groups[key] = append(groups[key], t)
	}
	if len(keys) == 0 {
		return nil // no host can download: every one is pushed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	var err error
	if st.store, err = d.openStore(); err != nil {
		return err
	}
	st.packs = map[string]*pack{}
	for _, key := range keys {
		hosts := groups[key]
		p, err := st.put(ctx, up.content(hosts[0]), d.packCompression(hosts[0]), len(hosts))
		if err == nil {
			st.packs[key] = p
			continue
		}
		var unusable *storeUnusableError
		if !errors.As(err, &unusable) {
			return err
		}
		// The store cannot be used from here: the hosts are pushed their
		// uploads, as they would be without it.
		d.warn(nil, "%v; pushing every host's upload over SSH instead", err)
		st.store, st.packs = nil, nil
		return nil
	}
	return nil
}

// PlanFleet: a dry run uploads nothing; the upload step's plan says what
// each host would get.
// PlanFleet notes a store this machine has no credentials for.
func (s storePacksStep) PlanFleet(context.Context, []*Target) error {
	d := s.st.d
	if _, err := d.openStore(); err != nil {
		d.plan.Warnings = append(d.plan.Warnings, err.Error()+": the deploy would stop before any change")
	}
	return nil
}

// openStore makes the client of artifacts.store: it asks the store
// nothing, and fails without credentials for it.
func (d *deployRun) openStore() (*store.Store, error) {
	cfg := d.opts.Config.Artifacts
	s, err := store.Open(cfg)
	if err != nil {
		return nil, fmt.Errorf("%w (%s: artifacts.store; remove it to push every upload over SSH)", err, cfg.Where)
	}
	return s, nil
}

// storeUnusableError is a failure of the store itself (unreachable,
// credentials refused): the deploy goes on without it.
type storeUnusableError struct{ err error }

func (e *storeUnusableError) Error() string {
	return "the artifact store could not be used from here: " + e.err.Error()
}

func (e *storeUnusableError) Unwrap() error { return e.err }

// put makes the pack of u, compressed with compression, in a temporary
// file, computing its SHA-256, and uploads it unless the store has it
// already.
func (st *storeRun) put(ctx context.Context, u upload, compression string, hosts int) (*pack, error) {
	d := st.d
	file, err := os.CreateTemp("", "slipway-pack-*")
	if err != nil {
		return nil, fmt.Errorf("making a pack: %w", err)
	}
	defer os.Remove(file.Name())
	defer file.Close()
	p := &pack{compression: compression, hosts: hosts}
	sum := sha256.New()
	out := io.Writer(io.MultiWriter(file, sum))
	// Made once for every host that downloads it: worth the default
	// level, where a push stream uses the fastest.
	zw := compressor(out, compression, false)
	if zw != nil {
		out = zw
	}
	err = d.src.Tree.WriteTarOf(out, u.files, u.extra)
	if err == nil && zw != nil {
		err = zw.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("making a pack: %w", err)
	}
	if p.size, err = file.Seek(0, io.SeekCurrent); err != nil {
		return nil, fmt.Errorf("making a pack: %w", err)
	}
	p.sum = hex.EncodeToString(sum.Sum(nil))
	kind := "full"
	if u.plan != nil {
		kind = "delta"
	}
	what := fmt.Sprintf("%s pack %s (%s, %d entries, %d bytes, for %d hosts)", kind, short(p.sum), st.store.Location(), len(u.files), p.size, hosts)
	size, found, err := st.store.Stat(ctx, p.sum)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &storeUnusableError{err}
	}
	if found && size == p.size {
		d.emit(Event{Kind: Info, Step: "store packs", Line: what + ": already in the store"})
		return p, nil
	}
	if _, err := file.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("making a pack: %w", err)
	}
	if err := st.store.Put(ctx, p.sum, file, p.size); err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &storeUnusableError{err}
	}
	d.emit(Event{Kind: Info, Step: "store packs", Bytes: p.size, Line: what + ": uploaded"})
	return p, nil
}

// short is the first 12 hex digits of a checksum, as messages show it.
func short(sum string) string { return sum[:min(12, len(sum))] }

// storeUploadStep fills the new release on each host from its pack in the
// store, or, where that cannot be done, by a push (uploadStep). Its name is
// the push's: it is the same step, by another road.
type storeUploadStep struct {
	releaseHosts
	st *storeRun
}

func (storeUploadStep) Name() string { return "upload" }

func (s storeUploadStep) Run(ctx context.Context, t *Target) error {
	return s.runVia(ctx, t, t.Exec.Exec)
}

// runVia downloads and extracts t's pack in one command, with exec, which
// may carry the scripts of the steps folded into the upload's round trip
// (fold.go); a host that cannot download it is pushed its upload, by the
// same exec.
func (s storeUploadStep) runVia(ctx context.Context, t *Target, exec execFunc) error {
	d := s.st.d
	push := uploadStep{d: d}
	u := push.content(t)
	p, why := s.st.packFor(t, u)
	if p == nil {
		if why != "" {
			d.warn(t, "%s: pushing its upload over SSH instead", why)
		}
		return push.runVia(ctx, t, exec)
	}
	url, err := s.st.store.PresignGet(ctx, p.sum, presignTTL)
	if err != nil {
		d.warn(t, "no download URL for its pack: %v; pushing its upload over SSH instead", err)
		return push.runVia(ctx, t, exec)
	}
	args := d.uploadArgs(t, u, p.compression)
	args.archive = path.Join(d.layout.ReleaseDir(d.releaseID), packName)
	script := downloadPackScript(d.layout, d.releaseID, t.State.Fetcher, p.sum) + extractPackScript(args)
	sent := &countingReader{r: strings.NewReader(url + "\n")}
	_, err = exec(ctx, host.Command{Script: script, Stdin: sent})
	// Only the download's own statuses make a push: not a folded step's
	// that exits with the same number (a *phaseError).
	var exit *host.ExitError
	var member *phaseError
	if errors.As(err, &exit) && (exit.Code == fetchFailedStatus || exit.Code == packMismatchStatus) && !errors.As(err, &member) && ctx.Err() == nil {
		why := host.Tail(exit.Stderr, 3)
		if exit.Code == packMismatchStatus {
			// The name of a pack is its SHA-256: the object is not what
			// it was uploaded as, and every deploy of it would push.
			why += fmt.Sprintf(" (the object %s in %s is not the pack its name says: damaged, or written over by something else; delete it, and the next deploy uploads the pack again)", s.st.store.Key(p.sum), s.st.store.Location())
		}
		d.warn(t, "could not download its pack from %s: %s; pushing its upload over SSH instead", s.st.store.Location(), why)
		return push.runVia(ctx, t, exec)
	}
	if err != nil {
		return err
	}
	kind := "full"
	if u.plan != nil {
		kind = fmt.Sprintf("delta (%d unchanged on the host, %d removed)", len(u.plan.delta.Copy), u.plan.delta.Removed)
	}
	d.emit(Event{Kind: Info, Host: t.Name(), Step: "upload", Bytes: sent.n.Load(),
		Line: fmt.Sprintf("%s upload from the artifact store: %d entries, pack %s of %d bytes downloaded by the host with %s", kind, len(u.files), short(p.sum), p.size, t.State.Fetcher)})
	return nil
}

// extractPackScript extracts the downloaded pack as a push's upload would
// its stream (uploadScript), after downloadPackScript in the same
// command: should it fail with one of the statuses that make a host fall
// back to a push, it exits 1 instead, since by then the pack was there.
func extractPackScript(args uploadArgs) string {
	return fmt.Sprintf("(\n%s\n) || { s=$?; case $s in %d|%d) exit 1;; esac; exit $s; }\n",
		uploadScript(args), fetchFailedStatus, packMismatchStatus)
}

// Plan is the push's plan, with what would make the host pushed.
func (s storeUploadStep) Plan(ctx context.Context, t *Target) error {
	if err := (uploadStep{d: s.st.d}).Plan(ctx, t); err != nil {
		return err
	}
	if t.State.Fetcher == fetchNone {
		hp := s.st.d.plan.host(t)
		hp.Warnings = append(hp.Warnings, "neither curl nor wget on this host: its upload would be pushed over SSH, not downloaded from the artifact store")
	}
	return nil
}

// packFor is the pack t downloads, or nil and why it is pushed instead
// ("" when there is nothing to say: the store is not used at all).
func (st *storeRun) packFor(t *Target, u upload) (*pack, string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	switch {
	case t.State.Fetcher == fetchNone:
		return nil, "neither curl nor wget is on this host's PATH, so it cannot download from the artifact store"
	case st.store == nil:
		return nil, ""
	}
	if p := st.packs[streamKey(u, st.d.packCompression(t))]; p != nil {
		return p, ""
	}
	return nil, "no pack was made for this host"
}

// downloadStallSeconds is how long a download may go without progress
// (less than 1 kB/s, for curl; without a byte read, for wget) before it
// fails. A variable for tests.
var downloadStallSeconds = 20

// downloadPackScript downloads the pack whose SHA-256 is sum into release id,
// from the URL on standard input (never on a command line, where other
// users of the host could read it: curl reads it as its config), and
// checks it (with openssl's SHA-256 where the host has it, which uses the
// CPU's SHA extensions; what openssl does not match, sha256sum decides).
// A failed download, or one the host has no tool to check, exits
// fetchFailedStatus, a pack that does not match packMismatchStatus, each
// leaving nothing behind.
func downloadPackScript(l layout.Layout, id, fetcher, sum string) string {
	// A store that stops answering (it accepted the connection, then
	// stalled) fails the download within about a minute, so the host is
	// pushed its upload: without a limit curl would wait for ever, and
	// the fleet with it, at the barrier, holding the lock.
	get := fmt.Sprintf(`printf 'url = "%%s"\n' "$url" | curl -fsS --connect-timeout 10 --speed-limit 1024 --speed-time %d --retry 2 -o "$pack" -K -`, downloadStallSeconds)
	if fetcher == fetchWget {
		// GNU wget reads the URL from standard input (-i -); BusyBox's
		// reads no list of URLs, so there the URL is on wget's command
		// line while it downloads (README says so). -t 2: GNU wget tries
		// 20 times by default.
		get = fmt.Sprintf(`if wget --help 2>&1 | grep -q -e '--input-file'; then printf '%%s\n' "$url" | wget -q -T %[1]d -t 2 -O "$pack" -i -; else wget -q -T %[1]d -O "$pack" "$url"; fi`, downloadStallSeconds)
	}
	return shell.Script(`IFS= read -r url || { echo 'no download URL on standard input' >&2; exit 1; }
pack={{pack}}
rm -f -- "$pack"
{{get}} || { s=$?; rm -f -- "$pack"; echo "{{fetcher}} could not download the pack (exit status $s)" >&2; exit {{failed}}; }
if ! { got=$(openssl dgst -sha256 -r "$pack" 2>/dev/null) && [ "${got%% *}" = {{sum}} ]; }; then
  command -v sha256sum >/dev/null 2>&1 || { rm -f -- "$pack"; echo 'the pack could not be checked: this host has no sha256sum (and no openssl that confirmed its SHA-256)' >&2; exit {{failed}}; }
  printf '%s  %s\n' {{sum}} "$pack" | sha256sum -c >/dev/null 2>&1 || { rm -f -- "$pack"; echo 'what was downloaded is not the pack: its SHA-256 differs' >&2; exit {{mismatch}}; }
fi
`, shell.Args{
		"pack": path.Join(l.ReleaseDir(id), packName), "get": shell.Raw(get), "fetcher": shell.Raw(fetcher),
		"sum": sum, "failed": fetchFailedStatus, "mismatch": packMismatchStatus,
	})
}
