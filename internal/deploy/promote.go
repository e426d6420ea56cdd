package deploy

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/layout"
	"github.com/slipway-deploy/slipway/internal/shell"
	"github.com/slipway-deploy/slipway/internal/source"
)

// Promotion ships to one stage exactly the tree another stage serves, the
// same bytes, never built again. ReadLive reads the release a stage
// serves (every host must agree on it); the caller takes its tree from
// the artifact cache by the digest the release recorded, or has
// FetchRelease stream it back from a host of the stage, to be checked
// against that digest before it ships anywhere. DiffManifests compares
// the live releases of two stages. Nothing here changes a host or takes
// a lock.

// LiveRelease is the release every host of a stage is live on.
type LiveRelease struct {
	Stage string
	ID    string
	Meta  ReleaseMeta // as the hosts recorded it (they agree)
	Hosts []string    // the hosts that serve it, in stage order
	// Manifest is the release's manifest, read from the first host that
	// gives a valid one, when ReadLive was asked for it.
	Manifest map[string]source.Entry

	opts Options // to reach the hosts again (FetchRelease)
}

// Origin is how a release promoted from this one records where it came
// from: "staging@20261122103015".
func (l *LiveRelease) Origin() string { return l.Stage + "@" + l.ID }

// ReadLive reads every selected host of opts' stage, changing nothing and
// taking no lock, and returns the release they all serve, with its
// manifest when withManifest. It refuses a stage whose hosts serve
// different releases, or record the one they serve differently, naming
// the hosts; and one with nothing live.
func ReadLive(ctx context.Context, opts Options, withManifest bool) (*LiveRelease, error) {
	r := newRun(ctx, opts)
	live := &LiveRelease{Stage: opts.Stage.Name, opts: opts}
	steps := []Step{perHost(connectStep{r: r}), perHost(inspectStep{r: r}), fleetWide(liveStep{live: live})}
	if withManifest {
		steps = append(steps, fleetWide(liveManifestStep{r: r, live: live}))
	}
	if err := r.pipeline(steps); err != nil {
		return nil, err
	}
	return live, nil
}

// liveStep finds the release the stage's hosts agree on.
type liveStep struct{ live *LiveRelease }

func (liveStep) Name() string { return "live release" }

func (s liveStep) RunFleet(_ context.Context, targets []*Target) error {
	stage := s.live.Stage
	read := withState(targets)
	if len(read) == 0 {
		return fmt.Errorf("no host of stage %s takes releases", stage)
	}
	if drift := Drift(read); drift != nil {
		var parts []string
		for _, g := range drift.groups() {
			parts = append(parts, g.String())
		}
		return fmt.Errorf("the hosts of %s disagree on the live release: %s; bring them to one release first (slipway status %s shows the details)",
			stage, strings.Join(parts, "; "), stage)
	}
	id := read[0].State.Current
	if id == "" {
		return fmt.Errorf("nothing is live on %s", stage)
	}
	var first *Target
	for _, t := range read {
		m := t.State.Meta[id]
		if m == nil {
			return fmt.Errorf("%s's live release %s has no slipway record on %s (made by another tool, or its record is unreadable)", stage, id, t.Name())
		}
		if first == nil {
			first, s.live.Meta = t, *m
		} else if m.Digest != s.live.Meta.Digest || m.Revision != s.live.Meta.Revision {
			return fmt.Errorf("the hosts of %s record their live release %s differently: %s on %s, %s on %s",
				stage, id, digestOrNone(s.live.Meta.Digest), first.Name(), digestOrNone(m.Digest), t.Name())
		}
		s.live.Hosts = append(s.live.Hosts, t.Name())
	}
	s.live.ID = id
	return nil
}

func digestOrNone(digest string) string {
	if digest == "" {
		return "no tree digest"
	}
	return "tree " + digest
}

// liveManifestStep reads the live release's manifest from the first of
// its hosts that gives a valid one.
type liveManifestStep struct {
	r    *run
	live *LiveRelease
}

func (liveManifestStep) Name() string { return "read manifest" }

func (s liveManifestStep) RunFleet(ctx context.Context, targets []*Target) error {
	var errs []string
	for _, t := range withState(targets) {
		entries, err := readReleaseManifest(ctx, s.r.layout, t, s.live.ID)
		if err == nil {
			s.live.Manifest = entries
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		errs = append(errs, err.Error())
	}
	return fmt.Errorf("no host of %s has a readable manifest of release %s: %s", s.live.Stage, s.live.ID, strings.Join(errs, "; "))
}

// readReleaseManifest reads and parses release id's manifest on t.
func readReleaseManifest(ctx context.Context, l layout.Layout, t *Target, id string) (map[string]source.Entry, error) {
	script := shell.Script("head -c {{max}} -- {{file}}", shell.Args{"max": maxManifest, "file": l.ManifestFile(id)})
	res, err := t.Exec.Query(ctx, host.Command{Script: script})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", t.Name(), err)
	}
	entries, err := source.ParseManifest(res.Stdout)
	if err != nil {
		return nil, fmt.Errorf("%s: %s: %w", t.Name(), l.ManifestFile(id), err)
	}
	return entries, nil
}

// FetchStats says what FetchRelease fetched.
type FetchStats struct {
	Host  string
	Files int   // files and links
	Bytes int64 // on the wire
	Gzip  bool
}

// FetchRelease streams live's files back from the first of its hosts and
// writes to w the archive of the tree the release shipped
// (source.ArchiveRelease): each entry as the release's manifest lists it,
// each file's content and each link's target as the host holds them and
// as the manifest says. A release whose files were changed after its
// deploy is refused with a *ReleaseChangedError. The caller checks the
// tree's digest against live.Meta.Digest before using it.
func FetchRelease(ctx context.Context, live *LiveRelease, w io.Writer) (*FetchStats, error) {
	opts := live.opts
	i := slices.IndexFunc(opts.Hosts, func(h config.Host) bool { return len(live.Hosts) > 0 && h.Name == live.Hosts[0] })
	if i < 0 {
		return nil, fmt.Errorf("no host of %s serves release %s", live.Stage, live.ID)
	}
	opts.Hosts = opts.Hosts[i : i+1]
	r := newRun(ctx, opts)
	stats := &FetchStats{Host: opts.Hosts[0].Name}
	fetch := stepFunc{name: "fetch release", fn: func(ctx context.Context, t *Target) error {
		return fetchRelease(ctx, r, t, live, w, stats)
	}}
	if err := r.pipeline([]Step{perHost(connectStep{r: r}), perHost(fetch)}); err != nil {
		return nil, err
	}
	return stats, nil
}

func fetchRelease(ctx context.Context, r *run, t *Target, live *LiveRelease, w io.Writer, stats *FetchStats) error {
	manifest, err := readReleaseManifest(ctx, r.layout, t, live.ID)
	if err != nil {
		return fmt.Errorf("release %s cannot be rebuilt from its files without its manifest: %w", live.ID, err)
	}
	var names []string
	for rel, e := range manifest {
		if e.Type != 'd' {
			names = append(names, rel)
		}
	}
	slices.Sort(names)
	stats.Files = len(names)
	stats.Gzip = compressOver(r.opts.Config, t.Exec)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	queried := make(chan error, 1)
	go func() {
		script := fetchReleaseScript(r.layout, live.ID, stats.Gzip)
		_, err := t.Exec.Query(ctx, host.Command{Script: script, Stdin: copyList(names), Stdout: pw})
		var exit *host.ExitError
		if errors.As(err, &exit) {
			// tar ran to its end, complaining (a file it could not
			// read): the stream is whole, and what it lacks is
			// compared with the manifest.
			pw.Close()
			queried <- exit
			return
		}
		pw.CloseWithError(err) // nil: the end of the stream
		queried <- err
	}()
	counted := &countingReader{r: pr}
	var in io.Reader = counted
	var archiveErr error
	if stats.Gzip {
		var zr *gzip.Reader
		if zr, archiveErr = gzip.NewReader(counted); archiveErr == nil {
			in = zr
		}
	}
	if archiveErr == nil {
		// It reads the stream to its end, also when files differ.
		archiveErr = source.ArchiveRelease(w, in, manifest, live.Meta.CreatedAt)
	}
	mismatch, differs := archiveErr.(*source.ReleaseMismatch)
	if archiveErr != nil && !differs {
		// A broken stream: the host's command is stopped.
		cancel()
		pr.CloseWithError(archiveErr)
	}
	queryErr := <-queried
	stats.Bytes = counted.n.Load()
	if differs {
		changed := &ReleaseChangedError{Stage: live.Stage, Release: live.ID, Host: t.Name(), Mismatch: mismatch,
			Shared: underShared(mismatch.Paths(), r.opts.Config.Shared)}
		if exit, ok := queryErr.(*host.ExitError); ok {
			changed.HostSaid = host.Tail(exit.Stderr, 3)
		}
		return changed
	}
	if queryErr != nil {
		return fmt.Errorf("streaming release %s: %w", live.ID, queryErr)
	}
	return archiveErr
}

// compressOver says whether a stream between this machine and ex goes
// gzipped: source.compress, where auto compresses over a network and not
// to a loopback address (as uploads do).
func compressOver(cfg *config.Config, ex host.Executor) bool {
	switch cfg.Source.Compress {
	case "gzip":
		return true
	case "none":
		return false
	}
	return !ex.Loopback()
}

// fetchReleaseScript streams the entries of release id named on standard
// input (NUL-separated and gzipped, as copyList makes them) as tar:
// symlinks as links, files with their content (GNU tar's hard links are
// dereferenced, so every file comes with its content). A name under a
// shared link is read through it, from the host's shared data. BusyBox
// tar reads no list of names: xargs gives them as ./-prefixed arguments,
// one archive per batch.
func fetchReleaseScript(l layout.Layout, id string, gzipped bool) string {
	z := shell.Raw("")
	if gzipped {
		z = " | gzip -1"
	}
	return shell.Script(`cd -- {{release}} || exit
case $(tar --version 2>&1 | head -n 1) in
*GNU*) gzip -dc | tar -c -f - --null --no-unquote --verbatim-files-from --no-recursion --hard-dereference -T - ;;
*) gzip -dc | xargs -0 -r sh -c 'for p do set -- "$@" "./$p"; shift; done; exec tar -c --no-recursion -f - "$@"' sh ;;
esac{{z}}
`, shell.Args{"release": l.ReleaseDir(id), "z": z})
}

// underShared keeps the paths that are, or are inside, a shared path.
func underShared(paths []string, shared config.Shared) []string {
	var out []string
	for _, p := range paths {
		if underAny(p, shared.Dirs) || underAny(p, shared.Files) {
			out = append(out, p)
		}
	}
	return out
}

// ReleaseChangedError reports a live release whose files on a host are no
// longer what its deploy shipped: promoting it would ship a tree no deploy
// made.
type ReleaseChangedError struct {
	Stage, Release, Host string
	Mismatch             *source.ReleaseMismatch
	// Shared are the paths of Mismatch under shared paths: in the release
	// they are links to the host's shared data, which the app changes.
	Shared []string
	// HostSaid is what the host's tar said about files it could not read.
	HostSaid string
}

func (e *ReleaseChangedError) Error() string {
	msg := fmt.Sprintf("%s's live release %s on %s is not what its deploy shipped: of its files, %s", e.Stage, e.Release, e.Host, e.Mismatch)
	if len(e.Shared) > 0 {
		msg += fmt.Sprintf("; %s lie under shared paths, where the release holds links to the host's shared data (which the app changes), so this tree can only come from the artifact cache", strings.Join(e.Shared, ", "))
	}
	if e.HostSaid != "" {
		msg += fmt.Sprintf(" (%s's tar said: %s)", e.Host, strings.ReplaceAll(e.HostSaid, "\n", "; "))
	}
	return msg + fmt.Sprintf("; refusing to promote it (deploy %s again, then promote)", e.Stage)
}

// Change is an entry that differs between two releases.
type Change struct {
	Path string `json:"path"`
	Type string `json:"type"` // file, dir or link: what it is in the release compared to (what it was, for one removed)
}

// ReleaseDiff is what differs between the manifests of two releases.
type ReleaseDiff struct {
	Added   []Change `json:"added"`
	Removed []Change `json:"removed"`
	Changed []Change `json:"changed"` // content, size, mode, type or link target
}

// DiffManifests compares the release with manifest from to the one with
// manifest to: what to has that from has not (added), the reverse
// (removed), and what both have but differently (changed), each sorted.
func DiffManifests(from, to map[string]source.Entry) ReleaseDiff {
	d := ReleaseDiff{Added: []Change{}, Removed: []Change{}, Changed: []Change{}}
	for rel, e := range to {
		have, ok := from[rel]
		switch {
		case !ok:
			d.Added = append(d.Added, Change{Path: rel, Type: entryType(e)})
		case have != e:
			d.Changed = append(d.Changed, Change{Path: rel, Type: entryType(e)})
		}
	}
	for rel, e := range from {
		if _, ok := to[rel]; !ok {
			d.Removed = append(d.Removed, Change{Path: rel, Type: entryType(e)})
		}
	}
	for _, list := range [][]Change{d.Added, d.Removed, d.Changed} {
		slices.SortFunc(list, func(a, b Change) int { return strings.Compare(a.Path, b.Path) })
	}
	return d
}

func entryType(e source.Entry) string {
	switch e.Type {
	case 'd':
		return "dir"
	case 'l':
		return "link"
	}
	return "file"
}
