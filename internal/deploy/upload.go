package deploy

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/layout"
	"github.com/slipway-deploy/slipway/internal/shell"
	"github.com/slipway-deploy/slipway/internal/source"
)

// uploadStep streams the release content as tar straight into the release
// directory (nothing is staged on either side): every entry for a full
// upload, only what changed for a delta. The manifest and the list of
// checksums to verify travel in the same stream; the host stores the
// manifest and checks the release against it before anything goes live.
type uploadStep struct {
	releaseHosts
	d *deployRun
}

func (uploadStep) Name() string { return "upload" }

// upload is what one host is sent.
type upload struct {
	plan     *deltaPlan // nil for a full upload
	keepOut  []string   // shared paths not sent (the host's shared data is there)
	files    []source.File
	toVerify []source.File
	total    int64 // content bytes, before compression
	// extra are slipway's own files, first in the stream: the manifest
	// (or its patch of the live one) and the checklist, when verify.
	extra       []source.Extra
	manifestSHA string // of the new release's manifest, hex
	verify      bool   // extra holds the checklist of toVerify
}

func (s uploadStep) content(t *Target) upload {
	d := s.d
	keepOut := d.sharedShipping(t)
	u := upload{plan: d.deltaPlan(t), keepOut: keepOut}
	all := d.shipped(d.src.Tree.Files, keepOut)
	u.files, u.toVerify = all, all
	if u.plan != nil {
		u.files = d.shipped(u.plan.delta.Send, keepOut)
		u.toVerify = u.files
	}
	if d.opts.Config.Source.Verify == "all" {
		u.toVerify = all
	}
	for _, f := range u.files {
		u.total += f.Size
	}
	sealed := d.src.Tree.Sealed()
	sum := sha256.Sum256(sealed)
	u.manifestSHA = hex.EncodeToString(sum[:])
	// A delta sends the manifest as a patch of the live one, so a one-file
	// change costs about one file; the host rebuilds the manifest and
	// checks it against our hash. That needs the live manifest to be in
	// the canonical form we would write; otherwise it goes whole.
	manifest := source.Extra{Name: ".slipway-manifest", Data: sealed}
	if u.plan != nil && u.plan.patch != nil {
		manifest = source.Extra{Name: ".slipway-manifest-patch", Data: u.plan.patch}
	}
	u.extra = []source.Extra{manifest}
	if check := d.checklist(u.toVerify, u.keepOut); len(check) > 0 {
		u.extra = append(u.extra, source.Extra{Name: ".slipway-check", Data: check})
		u.verify = true
	}
	return u
}

func (s uploadStep) Run(ctx context.Context, t *Target) error {
	return s.runVia(ctx, t, t.Exec.Exec)
}

// runVia uploads with exec, which may carry the scripts of the steps
// folded into the upload's round trip (see fold.go).
func (s uploadStep) runVia(ctx context.Context, t *Target, exec execFunc) error {
	d := s.d
	u := s.content(t)
	compress := d.compressFor(t)
	// Progress counts the content, before compression.
	progress := func(n int64) {
		d.emit(Event{Kind: Progress, Host: t.Name(), Step: "upload", Bytes: n, Total: u.total})
	}
	var stream io.Reader
	shared, err := d.streams.shared(d.lock.Context(), s.streamKeyFor(u, compress), func(w io.Writer, content *atomic.Int64) error {
		return s.makeStream(w, u, compress, content.Store)
	})
	if err != nil {
		d.warn(nil, "%v", err)
	}
	if shared != nil {
		stream = shared.reader(progress)
	} else {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(s.makeStream(pw, u, compress, progress)) }()
		defer pr.Close()
		stream = pr
	}
	sent := &countingReader{r: stream}
	script := uploadScript(d.uploadArgs(t, u, compress))
	_, err = exec(ctx, host.Command{Script: script, Stdin: sent})
	stats := &UploadStats{Delta: u.plan != nil, Entries: len(u.files), Bytes: sent.n.Load(), Compression: compress}
	if u.plan != nil {
		stats.Copied, stats.Removed = len(u.plan.delta.Copy), u.plan.delta.Removed
	}
	d.emit(Event{Kind: Info, Host: t.Name(), Step: "upload", Bytes: stats.Bytes, Upload: stats})
	return err
}

// streamKeyFor is u's streamKey; the first call counts the hosts that
// receive each stream, so that a stream only one host receives is made
// as it is sent, with no file between.
func (s uploadStep) streamKeyFor(u upload, compress string) string {
	d := s.d
	d.streams.once.Do(func() {
		d.streams.count = map[string]int{}
		for _, t := range withState(d.targets) {
			d.streams.count[streamKey(s.content(t), d.compressFor(t))]++
		}
	})
	return streamKey(u, compress)
}

// makeStream writes u's tar, compressed with compress (compressGzip,
// compressZstd or none), to w; progress is given the content bytes
// written so far (before compression), at most every 200 ms.
func (s uploadStep) makeStream(w io.Writer, u upload, compress string, progress func(int64)) error {
	// Each write goes out as an SSH packet (or a write of the shared
	// stream's file): tar headers and gzip's blocks of a few hundred
	// bytes would cost the host's sshd a packet each.
	out := bufio.NewWriterSize(w, uploadChunk)
	content := &countingWriter{w: out, progress: progress}
	zw := compressor(out, compress, true)
	if zw != nil {
		content.w = zw
	}
	err := s.d.src.Tree.WriteTarOf(content, u.files, u.extra)
	if err == nil && zw != nil {
		err = zw.Close()
	}
	if err == nil {
		err = out.Flush()
	}
	return err
}

// Plan notes what the upload would send to t.
func (s uploadStep) Plan(_ context.Context, t *Target) error {
	u := s.content(t)
	hp := s.d.plan.host(t)
	hp.Upload = "full"
	if u.plan != nil {
		hp.Upload, hp.Copy, hp.Removed = "delta", len(u.plan.delta.Copy), u.plan.delta.Removed
	}
	hp.ManifestOK = t.State.live != nil
	hp.SendBytes = u.total
	for _, f := range u.files {
		hp.Send = append(hp.Send, f.Rel)
	}
	return nil
}

// uploadChunk is the size of the writes an upload stream is sent in.
const uploadChunk = 64 << 10

// compressor compresses what is written to it into w with compression,
// at the fastest level (a push stream) or the default one (a pack, made
// once for every host that downloads it); nil for compressNone. zstd runs
// on one goroutine, so the same tree makes the same bytes (a pack is
// found in the store the next time), with a 1 MiB window at the fastest
// level, which keeps a stream made per host small in memory.
func compressor(w io.Writer, compression string, fastest bool) io.WriteCloser {
	switch {
	case compression == compressGzip && fastest:
		zw, _ := gzip.NewWriterLevel(w, gzip.BestSpeed) // a valid level: no error
		return zw
	case compression == compressGzip:
		return gzip.NewWriter(w)
	case compression == compressZstd && fastest:
		zw, _ := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(1<<20)) // valid options: no error
		return zw
	case compression == compressZstd:
		zw, _ := zstd.NewWriter(w, zstd.WithEncoderLevel(zstd.SpeedDefault), zstd.WithEncoderConcurrency(1)) // valid options: no error
		return zw
	}
	return nil
}

// How an upload's stream is compressed.
const (
	compressNone = ""
	compressGzip = "gzip"
	compressZstd = "zstd"
)

// compressFor is how t's upload stream is compressed: source.compress,
// where auto takes zstd for every host reached over SSH that has it and
// GNU tar, even on a loopback address (the stream is made once for every
// host that receives it, and zstd unpacks at a fraction of gzip's CPU,
// less than the host's sshd spends receiving the bytes it saves);
// otherwise gzip for a host reached over a network link, and nothing for
// one on a loopback address, where the link costs nothing to save and
// gzip costs CPU on both ends, or for the local host (no SSH), whose
// stream is a pipe (docs/benchmarks.md has the measurements).
func (d *deployRun) compressFor(t *Target) string {
	if c, ok := d.compressSet(); ok {
		return c
	}
	switch {
	case t.Host.Local:
		// A pipe to a process of this machine: no sshd receives it.
		return compressNone
	case unpacksZstd(t):
		return compressZstd
	case t.Exec.Loopback():
		return compressNone
	}
	return compressGzip
}

// compressSet is the compression source.compress names, and false for
// auto.
func (d *deployRun) compressSet() (string, bool) {
	switch d.opts.Config.Source.Compress {
	case "zstd":
		return compressZstd, true
	case "gzip":
		return compressGzip, true
	case "none":
		return compressNone, true
	}
	return "", false
}

// unpacksZstd says whether t can unpack a zstd stream: it has zstd, and
// GNU tar to run it (tar -I zstd).
func unpacksZstd(t *Target) bool { return t.State.Zstd && t.State.Tar == tarGNU }

type uploadArgs struct {
	layout      layout.Layout
	id          string // the new release
	live        string // the live release, whose manifest a patch applies to
	manifestSHA string // of the new release's manifest, hex
	verify      bool   // the stream holds .slipway-check: verify those files
	compression string // compressGzip, compressZstd (GNU tar only) or compressNone
	revision    string
	tar         string // the host's tar flavour
	// archive is a file on the host that holds the stream (a pack
	// downloaded from the artifact store), removed once extracted; ""
	// for the command's standard input.
	archive string
}

// uploadArgs are the arguments of the script that extracts u on t.
func (d *deployRun) uploadArgs(t *Target, u upload, compression string) uploadArgs {
	return uploadArgs{
		layout: d.layout, id: d.releaseID, live: t.State.Current, manifestSHA: u.manifestSHA,
		verify: u.verify, compression: compression, revision: d.src.Revision, tar: t.State.Tar,
	}
}

// tarExtractFlags are the flags that extract a release as the deploy
// user: GNU tar keeps modes with -p and leaves owners with --no-same-owner;
// BusyBox tar keeps modes without being asked and -o drops owners.
func tarExtractFlags(tar string) shell.Raw {
	if tar == tarBusyBox {
		return "-o"
	}
	return "-p --no-same-owner"
}

// verifyScript checks the release's files against .slipway-check. Where
// the host has openssl, whose SHA-256 uses the CPU's SHA extensions, it
// hashes the listed files first (about a tenth of sha256sum's CPU: a cold
// deploy's verify was the hosts' third largest cost, after sshd and tar)
// and compares the digests line by line; only an exact match of every
// line passes there. Anything else (no openssl, names the checklist
// escapes, a missing or changed file, an xargs without -0) falls to
// sha256sum -c (the flags GNU and BusyBox share), which decides and names
// the damage. A file whose checksum differs is damage; a sha256sum that
// cannot run is said to be that, never damage. The names go to openssl as
// ./NAME, so none is read as an option.
const verifyScript = `if command -v openssl >/dev/null 2>&1 && ! grep -q '^\\' .slipway-check &&
  cut -c67- .slipway-check | sed 's|^|./|' | tr '\n' '\000' | xargs -0 openssl dgst -sha256 -r 2>/dev/null |
  awk 'NR == FNR { want[NR] = substr($0, 1, 64); n = NR; next } substr($0, 1, 64) != want[FNR] { bad = 1 } { m = FNR } END { exit (bad || m != n) }' .slipway-check -; then
  :
elif ! v=$(sha256sum -c .slipway-check 2>&1); then
  if printf '%s\n' "$v" | grep -q ': FAILED'; then
    printf '%s\n' "$v" | grep ': FAILED' | head -n 20 >&2
    echo 'the release on this host does not match its manifest: a file was damaged on the way or on disk' >&2
  else
    printf '%s\n' "$v" | tail -n 5 >&2
    echo 'sha256sum could not check the release (its output is above); nothing is known to be damaged' >&2
  fi
  exit 1
fi
rm -f .slipway-check
`

// uploadScript extracts the stream into the release, stores its manifest
// (rebuilding it from a patch of the live one if that is what came), and
// verifies the release's files against their checksums, all before the
// switch. Changed files are never copied from the live release, so nothing
// sent lands on an inode an older release shares (and GNU tar replaces an
// existing file rather than writing into it).
func uploadScript(a uploadArgs) string {
	l := a.layout
	z := shell.Raw("")
	switch a.compression {
	case compressGzip:
		z = "-z "
	case compressZstd:
		// GNU tar runs zstd -d itself and fails when it fails.
		z = "-I zstd "
	}
	verify := shell.Raw("")
	if a.verify {
		verify = verifyScript
	}
	extract := `tar -x {{z}}{{flags}} -f - -C {{release}} || exit`
	if a.archive != "" {
		extract = `tar -x {{z}}{{flags}} -f {{archive}} -C {{release}} && rm -f -- {{archive}} || exit`
	}
	extract = shell.Script(extract, shell.Args{"z": z, "flags": tarExtractFlags(a.tar), "release": l.ReleaseDir(a.id), "archive": a.archive})
	return shell.Script(`umask 022
{{extract}}
mkdir -p -- {{manifests}} && cd -- {{manifests}} || exit
if [ -e {{release}}/.slipway-manifest-patch ]; then
  mv -f -- {{release}}/.slipway-manifest-patch {{id}}.patch &&
  awk 'NR==FNR { if (substr($0,1,2)=="- ") del[substr($0,3)]=1; else if (substr($0,1,2)=="+ ") print substr($0,3); next } FNR>1 && $0!="end" && !($0 in del)' {{id}}.patch {{live}} | LC_ALL=C sort > {{id}}.body &&
  { echo 'slipway-manifest 1'; cat {{id}}.body; echo end; } > {{id}}.tmp &&
  rm -f -- {{id}}.patch {{id}}.body &&
  printf '%s  %s\n' {{sha}} {{id}}.tmp | sha256sum -c >/dev/null 2>&1 ||
  { echo 'the manifest rebuilt on the host from the live one does not match; deploy again (a full manifest is sent when the live one is unreadable)' >&2; exit 1; }
else
  mv -f -- {{release}}/.slipway-manifest {{id}}.tmp || exit
fi
mv -f -- {{id}}.tmp {{id}} || exit
cd -- {{release}} || exit
{{verify}}{{revision}}
`, shell.Args{
		"extract": shell.Raw(extract), "release": l.ReleaseDir(a.id), "manifests": l.ManifestsDir(), "id": a.id, "live": a.live,
		"sha": a.manifestSHA, "verify": verify, "revision": shell.Raw(revisionScript(l, a.id, a.revision)),
	})
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// countingWriter counts the bytes written through it and reports the
// count at most every 200 ms.
type countingWriter struct {
	w        io.Writer
	n        int64
	progress func(int64)
	last     time.Time
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	if time.Since(c.last) > 200*time.Millisecond {
		c.last = time.Now()
		c.progress(c.n)
	}
	return n, err
}
