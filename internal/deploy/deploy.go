package deploy

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/layout"
	"github.com/slipway-deploy/slipway/internal/shell"
	"github.com/slipway-deploy/slipway/internal/source"
)

// Source is what a deploy ships and how it is recorded.
type Source struct {
	// Tree is the content to upload (strategy upload); nil for the git
	// strategy, where each host exports the commit from its own mirror.
	Tree     *source.Tree
	Revision string // commit SHA, or the tree digest of a plain directory; resolved on the hosts for the git strategy
	Branch   string // branch or tag deployed, for history and revisions.log
	Dirty    bool   // uncommitted changes were shipped (--allow-dirty)
	Git      *GitSource
	// Force deploys even when the revision is already live on every host.
	Force bool
}

// GitSource is the server-side flow: every host keeps a mirror of URL in
// the repo directory, and exports the commit Want resolves to on the
// primary host, so the whole fleet deploys one commit.
type GitSource struct {
	URL         string
	Want        string   // revision to resolve in the mirror: a SHA, refs/heads/B, refs/tags/T; "" for the default branch
	Subdir      string   // export only this subdirectory, as the release root
	RemoteBuild []string // commands run in the release on each host after the export
	Parallel    int      // hosts fetching at once; 0 for no extra limit
}

// ErrAlreadyLive reports a deploy with nothing to do: the revision is live on
// every host. Deploy returns it with the result; it is not a failure.
var ErrAlreadyLive = errors.New("already live")

// Result says where each host ended up.
type Result struct {
	ReleaseID   string
	Revision    string
	AlreadyLive bool // nothing was done: the revision is live everywhere
	Hosts       []HostResult
	// Switches holds when each host switched; Skew is the time from the
	// first switch to the last within one batch (the largest over batches).
	Switches map[string]SwitchTime
	Skew     time.Duration
	// SkewHosts is the size of the largest batch switched together: skew
	// means something only when it is above one.
	SkewHosts int
	// Duration is the whole run, as the caller measured it.
	Duration time.Duration
}

// SwitchTime is when one host's current was renamed, by our clock (the
// middle of the rename's round trip) and by the host's own (the deploy
// directory's modification time, which the rename sets).
type SwitchTime struct {
	Local  time.Time `json:"local"`
	Remote time.Time `json:"remote,omitzero"`
	RTT    time.Duration
}

// HostResult is one host's outcome.
type HostResult struct {
	Host       string
	Live       string // release current points at after the run ("" if none)
	Previous   string // release that was live before the run
	Switched   bool
	RolledBack bool // switched to the new release, then back
	Known      bool // the host's state was read; false if the run stopped before (could not connect)
}

// SwitchedError reports a run that failed after the new release went live
// on some hosts: those hosts serve it, the failure came later (an
// after_switch hook, recording history).
type SwitchedError struct {
	ReleaseID string
	Err       error
}

func (e *SwitchedError) Error() string {
	return fmt.Sprintf("release %s is live, but a step after the switch failed: %v", e.ReleaseID, e.Err)
}

func (e *SwitchedError) Unwrap() error { return e.Err }

// Deploy ships src as a new release to every selected host of the stage and
// switches them all to it, or, if anything fails before the switch, leaves
// every host on its previous release with no trace of the new one.
func Deploy(ctx context.Context, opts Options, src Source) (*Result, error) {
	r := newRun(opts)
	d := &deployRun{run: r, src: src}
	refreshCtx, stopRefresh := context.WithCancel(ctx)
	go r.refreshLocks(refreshCtx)
	err := r.runner.Run(ctx, d.steps(), r.targets)
	stopRefresh()
	res := d.result()
	if errors.Is(err, ErrAlreadyLive) {
		res.AlreadyLive = true
		return res, nil
	}
	var rb *RolledBackError
	if err != nil && d.live.Load() && !errors.As(err, &rb) {
		return res, &SwitchedError{ReleaseID: d.releaseID, Err: err}
	}
	return res, err
}

// deployRun is the state of one deploy shared by its steps.
type deployRun struct {
	*run
	src       Source
	releaseID string
	switched  atomic.Bool // some host switched: failures no longer undo
	live      atomic.Bool // some host is live on the new release now (after any switch back)

	mu     sync.Mutex
	deltas map[*parsedManifest]*deltaPlan // by the live manifest the hosts hold

	fullCheckOnce sync.Once
	fullCheck     []byte
	switchTimes   map[string]SwitchTime
	skew          time.Duration
	skewHosts     int
}

// steps is the whole deploy, in order.
func (d *deployRun) steps() []any {
	cfg := d.opts.Config
	inspect := inspectStep{r: d.run, sharedFiles: cfg.Shared.Files, forSwitch: true, manifest: d.src.Tree != nil && cfg.Source.Delta}
	steps := append([]any{connectStep{d.run}}, lockSteps(d.run, &inspect)...)
	steps = append(steps, inspect)
	steps = append(steps, driftStep{d})
	if d.src.Git != nil {
		steps = append(steps, fetchStep{d}, resolveStep{d})
	}
	steps = append(steps, alreadyLiveStep{d}, chooseReleaseStep{d})
	if inspect.manifest {
		steps = append(steps, manifestStep{d.run})
	}
	steps = append(steps, createReleaseStep{d})
	if d.src.Git != nil {
		steps = append(steps, exportStep{d})
		for i, command := range d.src.Git.RemoteBuild {
			steps = append(steps, hookStep{run: d.run, phase: "remote_build", index: i, hook: config.Hook{Run: command}, releaseFor: d.releaseFor})
		}
	} else {
		steps = append(steps, uploadStep{d})
	}
	if sh := cfg.Shared; len(sh.Dirs)+len(sh.Files) > 0 {
		steps = append(steps, linkSharedStep{d})
	}
	if _, inRelease := splitWritable(cfg); len(inRelease) > 0 {
		steps = append(steps, writableStep{d})
	}
	for i, h := range cfg.Hooks.BeforeSwitch {
		steps = append(steps, hookStep{run: d.run, phase: "before_switch", index: i, hook: h, releaseFor: d.releaseFor})
	}
	// Everything is prepared on every host; the rollout switches them,
	// all at once or batch by batch, each batch followed by its
	// after_switch hooks and health check.
	steps = append(steps, prepareSwitchStep{d}, rolloutStep{d})
	return append(steps, recordStep{d}, cleanupStep{d.run})
}

func (d *deployRun) releaseFor(*Target) string { return d.releaseID }

func (d *deployRun) result() *Result {
	d.mu.Lock()
	res := &Result{ReleaseID: d.releaseID, Revision: d.src.Revision, Switches: d.switchTimes, Skew: d.skew, SkewHosts: d.skewHosts}
	d.mu.Unlock()
	for _, t := range d.targets {
		hr := HostResult{Host: t.Name()}
		if t.State != nil {
			hr.Known = true
			hr.Live, hr.Previous = t.State.Current, t.State.Previous
			hr.Switched = d.releaseID != "" && t.State.Current == d.releaseID
			hr.RolledBack = t.rolledBack
		}
		res.Hosts = append(res.Hosts, hr)
	}
	return res
}

func (d *deployRun) meta(state string) *ReleaseMeta {
	return &ReleaseMeta{
		ID:        d.releaseID,
		State:     state,
		CreatedAt: d.opts.Now().UTC(),
		User:      d.owner.User,
		Machine:   d.owner.Machine,
		Stage:     d.opts.Stage.Name,
		Revision:  d.src.Revision,
		Branch:    d.src.Branch,
		Digest:    d.digest(),
		Dirty:     d.src.Dirty,
	}
}

// writeMetaScript writes a release's metadata file atomically (temp file and
// rename), so a reader never sees half of it.
func writeMetaScript(l layout.Layout, m *ReleaseMeta) string {
	body, err := json.Marshal(m)
	if err != nil {
		panic(err) // ReleaseMeta always marshals
	}
	file := l.HistoryFile(m.ID)
	return fmt.Sprintf("mkdir -p -- %s && printf '%%s\\n' %s > %s && mv -f -- %s %s",
		shell.Quote(l.HistoryDir()), shell.Quote(string(body)), shell.Quote(file+".tmp"), shell.Quote(file+".tmp"), shell.Quote(file))
}

// chooseReleaseStep picks one release id for the whole fleet, newer than any
// release on any host, so no id is ever reused.
type chooseReleaseStep struct{ d *deployRun }

func (chooseReleaseStep) Name() string { return "choose release id" }

func (s chooseReleaseStep) RunFleet(_ context.Context, targets []*Target) error {
	var existing []string
	for _, t := range withState(targets) {
		existing = append(existing, t.State.Releases...)
		for id := range t.State.Meta {
			existing = append(existing, id)
		}
	}
	id, err := layout.NewReleaseID(s.d.opts.Now(), existing)
	if err != nil {
		return err
	}
	s.d.releaseID = id
	return nil
}

// createReleaseStep makes the release directory and its metadata. mkdir
// without -p fails if the directory exists: a release is never written
// over. For a delta upload the unchanged entries are then copied from the
// live release (reflinks where the file system has them, hard links with
// source.hardlink); nothing else of the live release comes along, so files
// the app wrote at run time and shared links stay behind.
type createReleaseStep struct{ d *deployRun }

func (createReleaseStep) Name() string { return "create release" }

func (s createReleaseStep) Run(ctx context.Context, t *Target) error {
	l := s.d.layout
	release := shell.Quote(l.ReleaseDir(s.d.releaseID))
	fill := writeMetaScript(l, s.d.meta(StatePreparing))
	plan := s.d.deltaPlan(t)
	var stdin io.Reader
	if plan != nil && len(plan.delta.CopyTree) > 0 {
		// With the live manifest on the host exactly as we read it, the
		// host picks the entries from it; else they are listed.
		fill += fmt.Sprintf(" && (\n%s\n)", copyUnchanged(l, t.State.Current, s.d.releaseID, s.d.opts.Config.Source.Hardlink, plan.pick))
		if plan.pick != nil {
			stdin = copyList(plan.pick.odd)
		} else {
			stdin = copyList(plan.delta.CopyTree)
		}
	}
	// Undo only reaches hosts where this step succeeded: where it fails
	// (a full disk), the script removes what it made itself, so no
	// half-copied release, or one without metadata that cleanup would
	// never touch, stays behind.
	script := fmt.Sprintf("umask 022 && mkdir -p -- %s %s && mkdir -- %s || exit\n{ %s; } || { status=$?; rm -rf -- %s %s; exit $status; }",
		shell.Quote(l.ReleasesDir()), shell.Quote(l.SharedDir()), release, fill, release, shell.Quote(l.HistoryFile(s.d.releaseID)+".tmp"))
	_, err := t.Exec.Exec(ctx, host.Command{Script: script, Stdin: stdin})
	return err
}

// deltaPlan is what a delta upload to t sends, nil for a full upload: a
// delta needs the upload strategy, delta enabled, and a trusted manifest
// of the live release. The
// hosts that hold the same live manifest share one plan (a fleet normally
// holds one manifest): fifty hosts do not cost fifty diffs, lists and
// patches of the whole app.
func (d *deployRun) deltaPlan(t *Target) *deltaPlan {
	src := d.opts.Config.Source
	if d.src.Tree == nil || !src.Delta || t.State.live == nil || !t.State.HasRelease(t.State.Current) {
		return nil
	}
	d.mu.Lock()
	if d.deltas == nil {
		d.deltas = map[*parsedManifest]*deltaPlan{}
	}
	p, ok := d.deltas[t.State.live]
	if !ok {
		p = &deltaPlan{}
		d.deltas[t.State.live] = p
	}
	d.mu.Unlock()
	p.once.Do(func() {
		shared := append(append([]string{}, d.opts.Config.Shared.Dirs...), d.opts.Config.Shared.Files...)
		live := t.State.live
		delta := d.src.Tree.Diff(live.entries, shared)
		p.delta = &delta
		if live.canonical {
			p.pick = pickFromManifest(live.order, delta.CopyTree)
			p.patch = d.src.Tree.Patch(live.entries)
		}
	})
	return p
}

// checklist is source.Checklist(files); the whole tree's (what full
// uploads and verify: all check) is made once for every host.
func (d *deployRun) checklist(files []source.File) []byte {
	all := d.src.Tree.Files
	if len(files) == 0 || len(files) != len(all) || &files[0] != &all[0] {
		return source.Checklist(files)
	}
	d.fullCheckOnce.Do(func() { d.fullCheck = source.Checklist(files) })
	return d.fullCheck
}

// deltaPlan is a delta upload's content for the hosts holding one live
// manifest: the diff, the pick of unchanged entries from the manifest's
// lines, and the manifest patch (both only for a canonical manifest).
type deltaPlan struct {
	once  sync.Once
	delta *source.Delta
	pick  *manifestPick
	patch []byte
}

// Undo removes the release directory and its manifest and marks it failed
// in history.
func (s createReleaseStep) Undo(ctx context.Context, t *Target) error {
	l := s.d.layout
	m := s.d.meta(StateFailed)
	script := fmt.Sprintf("rm -rf -- %s %s %s && %s", shell.Quote(l.ReleaseDir(s.d.releaseID)), shell.Quote(l.SwitchTempLink(s.d.releaseID)), shell.Quote(l.ManifestFile(s.d.releaseID)), writeMetaScript(l, m))
	_, err := t.Exec.Exec(ctx, host.Command{Script: script})
	return err
}

func (d *deployRun) digest() string {
	if d.src.Tree == nil {
		return ""
	}
	return d.src.Tree.Digest
}

// driftStep refuses to deploy over a fleet whose hosts serve different
// releases (a partial deploy, a host rolled back by hand), unless --force:
// the result would look uniform while the rollback targets differ.
type driftStep struct{ d *deployRun }

func (driftStep) Name() string { return "compare hosts" }

func (s driftStep) RunFleet(context.Context, []*Target) error {
	if s.d.src.Force {
		return nil
	}
	if err := Drift(s.d.targets); err != nil {
		err.Stage = s.d.opts.Stage.Name
		return err
	}
	return nil
}

// alreadyLiveStep stops a deploy of the revision that is already live on
// every host: a second run of the same CI job does nothing.
type alreadyLiveStep struct{ d *deployRun }

func (alreadyLiveStep) Name() string { return "compare revision" }

func (s alreadyLiveStep) RunFleet(context.Context, []*Target) error {
	if s.d.src.Force || s.d.src.Dirty || s.d.src.Revision == "" {
		return nil
	}
	for _, t := range withState(s.d.targets) {
		m := t.State.Meta[t.State.Current]
		if m == nil || m.Revision != s.d.src.Revision || m.Dirty {
			return nil
		}
	}
	return ErrAlreadyLive
}

// revisionScript writes Capistrano's REVISION file into the release.
func revisionScript(l layout.Layout, id, revision string) string {
	return fmt.Sprintf("printf '%%s\\n' %s > %s", shell.Quote(revision), shell.Quote(path.Join(l.ReleaseDir(id), "REVISION")))
}

// uploadStep streams the release content as tar straight into the release
// directory (nothing is staged on either side): every entry for a full
// upload, only what changed for a delta. The manifest and the list of
// checksums to verify travel in the same stream; the host stores the
// manifest and checks the release against it before anything goes live.
type uploadStep struct{ d *deployRun }

func (uploadStep) Name() string { return "upload" }

func (s uploadStep) Run(ctx context.Context, t *Target) error {
	d := s.d
	l := d.layout
	tree := d.src.Tree
	files, toVerify := tree.Files, tree.Files
	plan := d.deltaPlan(t)
	var delta *source.Delta
	if plan != nil {
		delta = plan.delta
		files, toVerify = delta.Send, delta.Send
	}
	if d.opts.Config.Source.Verify == "all" {
		toVerify = tree.Files
	}
	check := d.checklist(toVerify)
	sealed := tree.Sealed()
	// A delta sends the manifest as a patch of the live one, so a one-file
	// change costs about one file; the host rebuilds the manifest and
	// checks it against our hash. That needs the live manifest to be in
	// the canonical form we would write; otherwise it goes whole.
	manifest := source.Extra{Name: ".slipway-manifest", Data: sealed}
	if plan != nil && plan.patch != nil {
		manifest = source.Extra{Name: ".slipway-manifest-patch", Data: plan.patch}
	}
	extra := []source.Extra{manifest}
	if len(check) > 0 {
		extra = append(extra, source.Extra{Name: ".slipway-check", Data: check})
	}
	total := tree.Size
	if delta != nil {
		total = delta.Bytes
	}
	compress := d.compressFor(t)
	pr, pw := io.Pipe()
	go func() {
		// A read of the pipe returns one write, and each read goes out as
		// an SSH packet: tar headers and gzip's blocks of a few hundred
		// bytes would cost the host's sshd a packet each.
		out := bufio.NewWriterSize(pw, uploadChunk)
		// Progress counts the content, before compression.
		content := &countingWriter{w: out, progress: func(n int64) {
			d.emit(Event{Kind: Progress, Host: t.Name(), Step: "upload", Bytes: n, Total: total})
		}}
		var zw *gzip.Writer
		if compress {
			zw, _ = gzip.NewWriterLevel(out, gzip.BestSpeed) // a valid level: no error
			content.w = zw
		}
		err := tree.WriteTarOf(content, files, extra)
		if err == nil && zw != nil {
			err = zw.Close()
		}
		if err == nil {
			err = out.Flush()
		}
		pw.CloseWithError(err)
	}()
	defer pr.Close()
	sent := &countingReader{r: pr}
	sum := sha256.Sum256(sealed)
	script := uploadScript(l, d.releaseID, t.State.Current, hex.EncodeToString(sum[:]), len(check) > 0, compress, d.src.Revision)
	_, err := t.Exec.Exec(ctx, host.Command{Script: script, Stdin: sent})
	d.emit(Event{Kind: Info, Host: t.Name(), Step: "upload", Bytes: sent.n.Load(), Line: uploadSummary(delta, len(files), sent.n.Load(), compress)})
	return err
}

// uploadChunk is the size of the writes an upload stream is sent in.
const uploadChunk = 64 << 10

// compressFor says whether t's upload goes gzipped: source.compress, where
// auto compresses for every host reached over a network link and not for
// one on a loopback address (this machine), where the link costs nothing
// to save and compressing costs CPU on both ends (docs/benchmarks.md has
// the measurements).
func (d *deployRun) compressFor(t *Target) bool {
	switch d.opts.Config.Source.Compress {
	case "gzip":
		return true
	case "none":
		return false
	}
	return !host.OnLoopback(t.Exec)
}

// uploadScript extracts the stream into the release, stores its manifest
// (rebuilding it from a patch of the live one if that is what came), and
// verifies the release's files against their checksums, all before the
// switch.
func uploadScript(l layout.Layout, id, live, manifestSHA string, verify, gzipped bool, revision string) string {
	release := shell.Quote(l.ReleaseDir(id))
	// Changed files are never copied from the live release, so nothing
	// sent lands on an inode an older release shares (and GNU tar
	// replaces an existing file rather than writing into it).
	var b strings.Builder
	z := ""
	if gzipped {
		z = "-z "
	}
	fmt.Fprintf(&b, "umask 022\ntar -x %s-p --no-same-owner -f - -C %s || exit\n", z, release)
	fmt.Fprintf(&b, "mkdir -p -- %[1]s && cd -- %[1]s || exit\n", shell.Quote(l.ManifestsDir()))
	fmt.Fprintf(&b, `if [ -e %[1]s/.slipway-manifest-patch ]; then
  mv -f -- %[1]s/.slipway-manifest-patch %[2]s.patch &&
  awk 'NR==FNR { if (substr($0,1,2)=="- ") del[substr($0,3)]=1; else if (substr($0,1,2)=="+ ") print substr($0,3); next } FNR>1 && $0!="end" && !($0 in del)' %[2]s.patch %[3]s | LC_ALL=C sort > %[2]s.body &&
  { echo 'slipway-manifest 1'; cat %[2]s.body; echo end; } > %[2]s.tmp &&
  rm -f -- %[2]s.patch %[2]s.body &&
  printf '%%s  %%s
' %[4]s %[2]s.tmp | sha256sum -c --quiet --strict >/dev/null ||
  { echo 'the manifest rebuilt on the host from the live one does not match; deploy again (a full manifest is sent when the live one is unreadable)' >&2; exit 1; }
else
  mv -f -- %[1]s/.slipway-manifest %[2]s.tmp || exit
fi
mv -f -- %[2]s.tmp %[2]s || exit
`, release, shell.Quote(id), shell.Quote(live), manifestSHA)
	fmt.Fprintf(&b, "cd -- %s || exit\n", release)
	if verify {
		b.WriteString("sha256sum -c --quiet --strict .slipway-check || { echo 'the release on this host does not match its manifest: a file was damaged on the way or on disk' >&2; exit 1; }\nrm -f .slipway-check\n")
	}
	b.WriteString(revisionScript(l, id, revision) + "\n")
	return b.String()
}

func uploadSummary(delta *source.Delta, entries int, sent int64, gzipped bool) string {
	how := ""
	if gzipped {
		how = " (gzip)"
	}
	if delta == nil {
		return fmt.Sprintf("full upload: %d entries, %s sent%s", entries, HumanBytes(sent), how)
	}
	return fmt.Sprintf("delta upload: %d copied on the host, %d sent, %d removed, %s sent%s", len(delta.Copy), len(delta.Send), delta.Removed, HumanBytes(sent), how)
}

// HumanBytes prints a byte count the way people read it.
func HumanBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
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

// linkSharedStep links each shared path into the release, replacing what the
// release shipped there. A shared directory that does not exist yet is
// seeded from the release (as Deployer does), so a fresh host gets the
// skeleton the app expects (storage/framework/...); an existing one is
// never touched.
type linkSharedStep struct{ d *deployRun }

func (linkSharedStep) Name() string { return "link shared" }

func (s linkSharedStep) Run(ctx context.Context, t *Target) error {
	l := s.d.layout
	release := l.ReleaseDir(s.d.releaseID)
	var b strings.Builder
	b.WriteString("set -e\numask 022\n")
	link := func(rel string) {
		inRelease := path.Join(release, rel)
		fmt.Fprintf(&b, "rm -rf -- %s\nmkdir -p -- %s\nln -s -- %s %s\n",
			shell.Quote(inRelease), shell.Quote(path.Dir(inRelease)), shell.Quote(l.SharedLinkTarget(rel)), shell.Quote(inRelease))
	}
	for _, dir := range s.d.opts.Config.Shared.Dirs {
		shared, inRelease := shell.Quote(l.SharedPath(dir)), shell.Quote(path.Join(release, dir))
		fmt.Fprintf(&b, "if [ ! -e %[1]s ] && [ ! -L %[1]s ]; then mkdir -p -- %[3]s; if [ -d %[2]s ] && [ ! -L %[2]s ]; then cp -Rp -- %[2]s %[1]s; else mkdir -- %[1]s; fi; fi\n",
			shared, inRelease, shell.Quote(path.Dir(l.SharedPath(dir))))
		link(dir)
	}
	for _, file := range s.d.opts.Config.Shared.Files {
		link(file)
	}
	_, err := t.Exec.Exec(ctx, host.Command{Script: b.String()})
	return err
}

// writableStep lets the web server write the release's writable
// directories. Those inside shared directories are left alone: shared data
// is never changed by a deploy (slipway setup prepares them once).
type writableStep struct{ d *deployRun }

func (writableStep) Name() string { return "writable" }

func (s writableStep) Run(ctx context.Context, t *Target) error {
	w := s.d.opts.Config.Writable
	_, inRelease := splitWritable(s.d.opts.Config)
	var paths []string
	for _, dir := range inRelease {
		paths = append(paths, path.Join(s.d.layout.ReleaseDir(s.d.releaseID), dir))
	}
	_, err := t.Exec.Exec(ctx, host.Command{Script: writableScript(w.Mode, w.User, paths)})
	return err
}

// splitWritable separates writable directories inside shared ones from the
// ones in the release itself.
func splitWritable(cfg *config.Config) (shared, inRelease []string) {
	for _, dir := range cfg.Writable.Dirs {
		if underAny(dir, cfg.Shared.Dirs) {
			shared = append(shared, dir)
		} else {
			inRelease = append(inRelease, dir)
		}
	}
	return shared, inRelease
}

func underAny(p string, dirs []string) bool {
	for _, d := range dirs {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

// writableScript makes dirs writable for the web server: group-writable
// with setgid directories (files made inside keep the group), or an ACL
// for the web server's user. chmod -R and setfacl -R do not follow
// symlinks, so nothing outside the directories changes.
func writableScript(mode, user string, dirs []string) string {
	if len(dirs) == 0 {
		return "true"
	}
	list := shell.Join(dirs...)
	if mode == "acl" {
		acl := shell.Quote("u:" + user + ":rwX")
		defaultACL := shell.Quote("d:u:" + user + ":rwX")
		return fmt.Sprintf("command -v setfacl >/dev/null || { echo 'writable.mode acl needs setfacl on the host (apt-get install acl), or use writable.mode group' >&2; exit 1; }\nmkdir -p -- %s && setfacl -R -m %s -m %s -- %s", list, acl, defaultACL, list)
	}
	return fmt.Sprintf("mkdir -p -- %[1]s && chmod -R g+w -- %[1]s && find %[1]s -type d -exec chmod g+s {} +", list)
}

// prepareSwitchStep makes the release durable and creates the temporary link
// that the switch renames over current, so the switch itself is one rename.
type prepareSwitchStep struct{ d *deployRun }

func (prepareSwitchStep) Name() string { return "sync" }

func (s prepareSwitchStep) Run(ctx context.Context, t *Target) error {
	if err := prepareSwitch(ctx, t.Exec, s.d.layout, s.d.releaseID, true); err != nil {
		return err
	}
	// Open the rename channel now, so the switch is one round trip.
	if p, ok := t.Exec.(host.RenamePreparer); ok {
		return p.PrepareRename(ctx)
	}
	return nil
}

func (s prepareSwitchStep) Undo(ctx context.Context, t *Target) error {
	_, err := t.Exec.Exec(ctx, host.Command{Script: "rm -f -- " + shell.Quote(s.d.layout.SwitchTempLink(s.d.releaseID))})
	return err
}

func prepareSwitch(ctx context.Context, ex host.Executor, l layout.Layout, id string, syncRelease bool) error {
	tmp := shell.Quote(l.SwitchTempLink(id))
	script := fmt.Sprintf("rm -f -- %s && ln -s -- %s %s", tmp, shell.Quote(l.CurrentTarget(id)), tmp)
	if syncRelease {
		// sync -f flushes the file system holding the release (syncfs);
		// plain sync is the fallback where -f is unknown.
		script = fmt.Sprintf("{ sync -f -- %s 2>/dev/null || sync; } && %s", shell.Quote(l.ReleaseDir(id)), script)
	}
	_, err := ex.Exec(ctx, host.Command{Script: script})
	return err
}

// switchTo renames the prepared temporary link over current, syncs the
// deploy directory so the rename is durable, and reads the link back.
func switchTo(ctx context.Context, ex host.Executor, l layout.Layout, id string) error {
	if err := ex.Rename(ctx, l.SwitchTempLink(id), l.CurrentLink()); err != nil {
		return fmt.Errorf("rename %s over %s: %w", l.SwitchTempLink(id), l.CurrentLink(), err)
	}
	_, err := verifySwitch(ctx, ex, l, id)
	return err
}

// Switch points current at release id on one host with the same two-step
// switch a deploy uses: a temporary link, then one rename over current.
func Switch(ctx context.Context, ex host.Executor, l layout.Layout, id string) error {
	if err := prepareSwitch(ctx, ex, l, id, false); err != nil {
		return err
	}
	return switchTo(ctx, ex, l, id)
}

// recordStep marks the release live in history and appends Capistrano's
// revisions.log line.
type recordStep struct{ d *deployRun }

func (recordStep) Name() string { return "record" }

func (s recordStep) Run(ctx context.Context, t *Target) error {
	l := s.d.layout
	m := s.d.meta(StateDeployed)
	m.LiveAt = s.d.opts.Now().UTC()
	t.State.Meta[m.ID] = m
	t.State.Releases = append(t.State.Releases, m.ID)
	branch := s.d.src.Branch
	if branch == "" {
		branch = "-"
	}
	line := fmt.Sprintf("Branch %s (at %s) deployed as release %s by %s", branch, s.d.src.Revision, m.ID, m.User)
	script := writeMetaScript(l, m) + " && " + appendLogScript(l, line)
	_, err := t.Exec.Exec(ctx, host.Command{Script: script})
	return err
}

func appendLogScript(l layout.Layout, line string) string {
	return fmt.Sprintf("printf '%%s\\n' %s >> %s", shell.Quote(line), shell.Quote(l.RevisionsLog()))
}

// hookStep runs one hook command in the release directory of each host.
type hookStep struct {
	run        *run
	phase      string
	index      int
	hook       config.Hook
	releaseFor func(*Target) string // the release directory the hook runs in
}

func (s hookStep) Name() string {
	const width = 40
	command := strings.Join(strings.Fields(s.hook.Run), " ")
	if len(command) > width {
		command = command[:width-1] + "…"
	}
	return s.phase + ": " + command
}

// Skip keeps a hook to the hosts it is for: those with one of its roles
// (no roles: every host that takes releases), and of those only the first,
// the primary, for a `once` hook.
func (s hookStep) Skip(t *Target) bool {
	if !s.hookFor(t) {
		return true
	}
	return s.hook.Once && t != s.primary()
}

// RunsOnNoRelease: a hook limited to a no_release host's role runs there.
func (hookStep) RunsOnNoRelease() bool { return true }

func (s hookStep) hookFor(t *Target) bool {
	if len(s.hook.Roles) == 0 {
		return !t.Host.NoRelease
	}
	for _, want := range s.hook.Roles {
		if slices.Contains(t.Host.Roles, want) {
			return true
		}
	}
	return false
}

func (s hookStep) primary() *Target {
	for _, t := range s.run.targets {
		if s.hookFor(t) {
			return t
		}
	}
	return nil
}

func (s hookStep) Run(ctx context.Context, t *Target) error {
	return runHook(ctx, s.run, t, s.hook.Run, s.releaseFor(t))
}

// runHook runs a user's command on a host in the release directory, its
// output streamed as events. The command is one quoted argument to sh -c,
// so it is parsed by sh whatever the login shell is, and every value in its
// environment is quoted.
func runHook(ctx context.Context, r *run, t *Target, command, releaseID string) error {
	l := r.layout
	env := []string{
		"SLIPWAY_RELEASE_ID=" + releaseID,
		"SLIPWAY_RELEASE_PATH=" + l.ReleaseDir(releaseID),
		"SLIPWAY_DEPLOY_PATH=" + l.DeployTo,
		"SLIPWAY_SHARED_PATH=" + l.SharedDir(),
		"SLIPWAY_PREVIOUS_RELEASE=" + previousOf(t),
		"SLIPWAY_STAGE=" + r.opts.Stage.Name,
		"SLIPWAY_HOST=" + t.Name(),
	}
	// Secrets come on standard input as quoted assignments: a command
	// line is visible to every user of the host (ps, /proc).
	var secrets strings.Builder
	for _, v := range r.opts.Config.Env {
		if v.Secret {
			fmt.Fprintf(&secrets, "export %s=%s\n", v.Name, shell.Quote(v.Value))
		} else {
			env = append(env, v.Name+"="+v.Value)
		}
	}
	run := fmt.Sprintf("exec env %s sh -c %s </dev/null", shell.Join(env...), shell.Quote(command))
	var stdin io.Reader
	if secrets.Len() > 0 {
		run = `eval "$(cat)" && ` + run
		stdin = strings.NewReader(secrets.String())
	}
	script := fmt.Sprintf("cd -- %s && %s", shell.Quote(l.ReleaseDir(releaseID)), run)
	if t.Host.NoRelease {
		// No release here: the hook runs in the deploy user's home.
		script = run
	}
	out := &lineWriter{mask: r.mask, emit: func(line string) {
		if r.opts.Events != nil {
			r.opts.Events.Event(Event{Kind: Output, Host: t.Name(), Step: command, Line: line})
		}
	}}
	_, err := t.Exec.Exec(ctx, host.Command{Script: script, Stdin: stdin, Stdout: out, Stderr: out})
	out.Flush()
	if ee, ok := err.(*host.ExitError); ok {
		return fmt.Errorf("%q exited with status %d\n%s", command, ee.Code, out.Tail())
	}
	return err
}

// mask hides the values of secret variables in text that leaves the run
// (hook output, errors).
func (r *run) mask(s string) string {
	for _, v := range r.opts.Config.Env {
		if v.Secret && len(v.Value) >= 3 {
			s = strings.ReplaceAll(s, v.Value, "***")
		}
	}
	return s
}

func previousOf(t *Target) string {
	if t.State == nil {
		return ""
	}
	return t.State.Previous
}

// withState keeps the targets whose deploy directory was read (not the
// no_release hosts).
func withState(targets []*Target) []*Target {
	var out []*Target
	for _, t := range targets {
		if t.State != nil {
			out = append(out, t)
		}
	}
	return out
}

// cleanupStep prunes old releases after a successful switch. A failure to
// prune is a warning: the deploy itself succeeded.
type cleanupStep struct{ r *run }

func (cleanupStep) Name() string { return "cleanup" }

func (s cleanupStep) Run(ctx context.Context, t *Target) error {
	res, err := Prune(ctx, t, s.r.layout, s.r.opts.Config.KeepReleases, s.r.opts.Config.Cleanup.Sudo)
	s.r.reportPrune(t, res, err)
	return nil
}
