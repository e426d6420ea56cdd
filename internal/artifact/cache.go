// Package artifact keeps the release trees slipway built on this machine,
// so that a build is made once and shipped wherever it goes: to another
// stage for the same revision and build, or promoted as it is from one
// stage to another.
//
// An artifact is a tree (source.Tree) in an archive (source.WriteArchive),
// named by the tree's digest, with a record of the builds that made it
// and the stages it went live on:
//
//	~/.cache/slipway/artifacts/            (os.UserCacheDir)
//	  sha256-<hex>/tree.tar                 the tree, read in place when shipped
//	  sha256-<hex>/record.json              Record: builds, stages, sizes, last use
//	  tmp-*/                                an artifact being written
//
// An artifact is written whole in a tmp- directory and renamed into place,
// so a reader never sees half of one. Every load recomputes the digest from
// the content, so a damaged archive is dropped, never shipped. The cache
// is bounded (MaxBytes, MaxEntries, from SLIPWAY_ARTIFACTS_MAX_SIZE and
// SLIPWAY_ARTIFACTS_MAX_ENTRIES): after each store the least recently used
// artifacts go until it fits.
//
// Several slipway processes may use one cache at once. Artifacts are
// immutable, renamed into place whole and out of it whole (into a tmp-
// directory, deleted there), and a record is only ever written beside its
// archive, so the worst a race does is write a record twice, the later
// write winning (a stage's name can be lost from the list; never a tree).
// A directory holding a record without its archive (or the other way
// round: left by an older slipway, or a hand edit) is no artifact: it is
// not listed, it is replaced when its tree is stored again, and removed
// after any store or import.
package artifact

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/slipway-deploy/slipway/internal/source"
)

// Cache is a directory of artifacts.
type Cache struct {
	Dir string
	// MaxBytes and MaxEntries bound the archives on disk; either at 0
	// turns the cache off (nothing is kept, nothing is found).
	MaxBytes   int64
	MaxEntries int
	Now        func() time.Time // injectable clock for tests
}

// Record is what the cache knows about one artifact.
type Record struct {
	Digest   string       `json:"digest"`
	Files    int          `json:"files"`     // entries of the tree
	Size     int64        `json:"size"`      // bytes of file content
	DiskSize int64        `json:"disk_size"` // bytes of the archive
	Created  time.Time    `json:"created"`
	LastUsed time.Time    `json:"last_used"`
	Builds   []Build      `json:"builds,omitempty"`
	Origin   string       `json:"origin,omitempty"` // where a tree not built here came from
	Stages   []Deployment `json:"stages,omitempty"` // the newest release of each stage it went live as
}

// Build is one build that made the tree: a revision built with the build
// configuration whose BuildKey is Key.
type Build struct {
	Revision string `json:"revision"`
	Key      string `json:"key,omitempty"` // "" for a build of a directory, which is never looked up
	Branch   string `json:"branch,omitempty"`
	Dirty    bool   `json:"dirty,omitempty"` // uncommitted changes: never looked up
}

// Deployment is a release the tree went live as.
type Deployment struct {
	Stage   string    `json:"stage"`
	Release string    `json:"release"`
	At      time.Time `json:"at"`
}

// Revisions are the revisions the tree was built from, in build order.
func (r *Record) Revisions() []string {
	var out []string
	for _, b := range r.Builds {
		if !slices.Contains(out, b.Revision) {
			out = append(out, b.Revision)
		}
	}
	return out
}

// BuildKey identifies a build configuration: what, besides the revision,
// decides the tree a build makes. The same revision built with the same
// key makes a tree the cache may give out instead of building it again.
func BuildKey(build, exclude []string, subdir string, submodules bool) string {
	data, _ := json.Marshal(struct {
		Build      []string `json:"build"`
		Exclude    []string `json:"exclude"`
		Subdir     string   `json:"subdir"`
		Submodules bool     `json:"submodules"`
	}{build, exclude, subdir, submodules}) // strings and bools always marshal
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:16])
}

// Artifact is a tree from the cache, ready to ship. Close it once the
// deploy is over.
type Artifact struct {
	Record
	Tree    *source.Tree
	archive *source.Archive
	temp    string // a directory to remove on Close (an artifact the cache could not keep)
}

// Close closes the archive (and removes it, if the cache did not keep it).
func (a *Artifact) Close() error {
	if a == nil {
		return nil
	}
	err := a.archive.Close()
	if a.temp != "" {
		err = errors.Join(err, os.RemoveAll(a.temp))
	}
	return err
}

// Enabled reports whether the cache keeps anything.
func (c *Cache) Enabled() bool { return c.MaxBytes > 0 && c.MaxEntries > 0 }

const (
	archiveName = "tree.tar"
	recordName  = "record.json"
	entryPrefix = "sha256-"
	tempPrefix  = "tmp-"
	// staleTemp is the age past which a tmp- directory is left over from
	// a run that died, and is removed.
	staleTemp = 24 * time.Hour
)

// entryDir is the directory of the artifact with digest ("sha256:<hex>").
func (c *Cache) entryDir(digest string) (string, error) {
	hexSum, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(hexSum) != 64 || strings.Trim(hexSum, "0123456789abcdef") != "" {
		return "", fmt.Errorf("%q is not a tree digest (sha256:<64 hex digits>)", digest)
	}
	return filepath.Join(c.Dir, entryPrefix+hexSum), nil
}

func (c *Cache) now() time.Time {
	if c.Now != nil {
		return c.Now().UTC()
	}
	return time.Now().UTC()
}

// Lookup returns the artifact a clean build of revision with the build
// configuration key made, or nil when there is none (or the cache is off).
// An artifact whose archive turns out damaged is removed and not returned.
func (c *Cache) Lookup(revision, key string) (*Artifact, error) {
	if !c.Enabled() || revision == "" || key == "" {
		return nil, nil
	}
	records, err := c.List()
	if err != nil {
		return nil, err
	}
	for _, r := range records { // most recently used first
		built := slices.ContainsFunc(r.Builds, func(b Build) bool { return b.Revision == revision && b.Key == key && !b.Dirty })
		if !built {
			continue
		}
		a, err := c.open(r)
		if err != nil {
			return nil, err
		}
		if a != nil {
			return a, nil
		}
	}
	return nil, nil
}

// Get returns the artifact with digest, or nil when the cache has none.
func (c *Cache) Get(digest string) (*Artifact, error) {
	if !c.Enabled() {
		return nil, nil
	}
	dir, err := c.entryDir(digest)
	if err != nil {
		return nil, err
	}
	r, err := readRecord(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, nil // unreadable: treated as absent, and replaced when stored again
	}
	return c.open(r)
}

// open loads r's archive and checks its digest. A damaged artifact is
// removed: nil, nil.
func (c *Cache) open(r *Record) (*Artifact, error) {
	dir, err := c.entryDir(r.Digest)
	if err != nil {
		return nil, err
	}
	archive, err := source.OpenArchive(filepath.Join(dir, archiveName))
	if errors.Is(err, fs.ErrNotExist) {
		if _, statErr := os.Stat(filepath.Join(dir, recordName)); errors.Is(statErr, fs.ErrNotExist) {
			return nil, nil // evicted by another run since it was listed
		}
		err = fmt.Errorf("its archive %s is missing", archiveName)
	}
	if err == nil && archive.Tree.Digest != r.Digest {
		archive.Close()
		err = fmt.Errorf("its content has digest %s", archive.Tree.Digest)
	}
	if err != nil {
		// Damaged (a full disk, a hand edit): it is of no use to anyone.
		return nil, errors.Join(fmt.Errorf("artifact %s is damaged and was removed (%v); it will be made again", r.Digest, err), c.removeEntry(dir))
	}
	a := &Artifact{Record: *r, Tree: archive.Tree, archive: archive}
	a.LastUsed = c.now()
	// Recording the use is worth a try, not a failure.
	_ = c.update(r.Digest, func(rec *Record) { rec.LastUsed = a.LastUsed })
	return a, nil
}

// Store keeps tree, made by build (nil when unknown), unless the cache has
// it already (then only the build is added to its record), then evicts
// the least recently used artifacts until the cache fits its bounds. A
// tree bigger than the whole cache is not kept. Once the tree is kept, a
// failed eviction is an *EvictError: a warning, not a failed store.
func (c *Cache) Store(ctx context.Context, tree *source.Tree, build *Build) error {
	// An archive is bigger than its content (tar headers, padding), so a
	// tree over the bound here cannot fit; put checks the archive itself.
	if !c.Enabled() || tree.Size > c.MaxBytes {
		return nil
	}
	addBuild := func(r *Record) {
		r.LastUsed = c.now()
		if build != nil && !slices.Contains(r.Builds, *build) {
			r.Builds = append(r.Builds, *build)
		}
	}
	dir, err := c.entryDir(tree.Digest)
	if err != nil {
		return err
	}
	if whole(dir) {
		err := c.update(tree.Digest, addBuild)
		if err == nil {
			return c.evict(tree.Digest)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		// Evicted by another run since: it is written again.
	}
	record := &Record{Digest: tree.Digest, Files: len(tree.Files), Size: tree.Size, Created: c.now()}
	addBuild(record)
	kept, err := c.put(record, func(w io.Writer) error { return tree.WriteArchive(&ctxWriter{ctx: ctx, w: w}) })
	if err != nil || !kept {
		return err
	}
	return c.evict(tree.Digest)
}

// put writes an artifact in a temporary directory and places it, unless
// its archive is bigger than the whole cache; it reports whether it did.
func (c *Cache) put(r *Record, write func(io.Writer) error) (bool, error) {
	temp, err := c.tempDir()
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(temp) // a no-op once placed
	if r.DiskSize, err = writeFile(filepath.Join(temp, archiveName), write); err != nil {
		return false, err
	}
	if r.DiskSize > c.MaxBytes {
		return false, nil // eviction would empty the cache and leave it over its bound
	}
	if err := writeRecord(temp, r); err != nil {
		return false, err
	}
	return true, c.place(temp, r)
}

// place renames the artifact written whole in temp into place. An
// artifact there already (another run stored the same tree meanwhile)
// wins, and its record gets r's builds; anything else there (a record
// without its archive, an unreadable record) is replaced.
func (c *Cache) place(temp string, r *Record) error {
	dir, err := c.entryDir(r.Digest)
	if err != nil {
		return err
	}
	err = os.Rename(temp, dir)
	if err != nil && !whole(dir) {
		if removeErr := c.removeEntry(dir); removeErr != nil {
			return errors.Join(err, removeErr)
		}
		err = os.Rename(temp, dir)
	}
	if err == nil {
		return nil
	}
	if !whole(dir) {
		return err
	}
	return c.update(r.Digest, func(have *Record) {
		for _, b := range r.Builds {
			if !slices.Contains(have.Builds, b) {
				have.Builds = append(have.Builds, b)
			}
		}
	})
}

// Import keeps the tree that write writes (an archive, as
// source.ArchiveRelease makes one) as the artifact digest, once it is
// checked to be that tree: one with another digest is refused with a
// *DigestError and never kept. origin says where it came from, build (nil
// when unknown) what made it. With the cache off, the artifact lives in a
// temporary directory until Close.
//
// An *EvictError comes with the artifact, kept and open: only making room
// for it failed, which is a warning; close the artifact as usual. Any
// other error comes alone.
func (c *Cache) Import(ctx context.Context, digest, origin string, build *Build, write func(io.Writer) error) (*Artifact, error) {
	if _, err := c.entryDir(digest); err != nil {
		return nil, err
	}
	temp, err := c.tempDir()
	if err != nil {
		return nil, err
	}
	keep := false
	defer func() {
		if !keep {
			os.RemoveAll(temp)
		}
	}()
	file := filepath.Join(temp, archiveName)
	diskSize, err := writeFile(file, func(w io.Writer) error { return write(&ctxWriter{ctx: ctx, w: w}) })
	if err != nil {
		return nil, err
	}
	archive, err := source.OpenArchive(file)
	if err != nil {
		return nil, err
	}
	if archive.Tree.Digest != digest {
		archive.Close()
		return nil, &DigestError{Want: digest, Got: archive.Tree.Digest}
	}
	now := c.now()
	record := &Record{Digest: digest, Files: len(archive.Tree.Files), Size: archive.Tree.Size, DiskSize: diskSize,
		Created: now, LastUsed: now, Origin: origin}
	if build != nil {
		record.Builds = []Build{*build}
	}
	if !c.Enabled() || record.DiskSize > c.MaxBytes {
		keep = true
		return &Artifact{Record: *record, Tree: archive.Tree, archive: archive, temp: temp}, nil
	}
	// Into place, and opened there (an open file cannot be renamed on
	// every system); the digest is checked again on the way.
	archive.Close()
	if err := writeRecord(temp, record); err != nil {
		return nil, err
	}
	if err := c.place(temp, record); err != nil {
		return nil, err
	}
	a, err := c.Get(digest)
	if err == nil && a == nil {
		err = fmt.Errorf("artifact %s vanished from the cache as it was stored", digest)
	}
	if err != nil {
		return nil, err
	}
	return a, c.evict(digest)
}

// tempDir is where an artifact is written before it is renamed into
// place, or, with the cache off, kept until it is closed. A cache
// directory that cannot be made or written in is a *DirError.
func (c *Cache) tempDir() (string, error) {
	if !c.Enabled() {
		return os.MkdirTemp("", "slipway-artifact-")
	}
	err := os.MkdirAll(c.Dir, 0o700)
	var temp string
	if err == nil {
		temp, err = os.MkdirTemp(c.Dir, tempPrefix)
	}
	if err != nil {
		return "", &DirError{Dir: c.Dir, Err: err}
	}
	return temp, nil
}

// Ready makes the cache's directory and checks that it can be written
// in: a cache that is on and cannot keep anything is a *DirError. A
// caller that must have the tree anyway (a promotion) turns the cache
// off and goes on; Store and Import report the same error themselves.
func (c *Cache) Ready() error {
	if !c.Enabled() {
		return nil
	}
	temp, err := c.tempDir()
	if err == nil {
		os.Remove(temp)
	}
	return err
}

// DirError is a cache directory that cannot be made or written in (a
// read-only or missing home directory, a full disk).
type DirError struct {
	Dir string
	Err error
}

func (e *DirError) Error() string {
	return fmt.Sprintf("the artifact cache %s cannot be used (%v): point %s at a writable directory, or set %s=0 to turn the cache off",
		e.Dir, e.Err, cacheHomeVar(), EnvMaxSize)
}

func (e *DirError) Unwrap() error { return e.Err }

// EvictError is a failure to remove the least recently used artifacts
// after a store: what was stored is kept, and the cache stays over its
// bounds until a later store or prune removes them.
type EvictError struct {
	Dir string
	Err error
}

func (e *EvictError) Error() string {
	return fmt.Sprintf("could not remove the least recently used artifacts to bring the cache %s within its bounds (%v); it stays over them until a later store or `slipway artifacts prune` removes them", e.Dir, e.Err)
}

func (e *EvictError) Unwrap() error { return e.Err }

// DigestError reports a tree that is not the one it was taken for.
type DigestError struct{ Want, Got string }

func (e *DigestError) Error() string {
	return fmt.Sprintf("its digest is %s, not the %s recorded", e.Got, e.Want)
}

// Deployed records that the artifact digest went live as release on
// stage. The cache may not have it (off, or the tree was too big).
func (c *Cache) Deployed(digest, stage, release string) error {
	if !c.Enabled() {
		return nil
	}
	err := c.update(digest, func(r *Record) {
		r.LastUsed = c.now()
		r.Stages = slices.DeleteFunc(r.Stages, func(d Deployment) bool { return d.Stage == stage })
		r.Stages = append(r.Stages, Deployment{Stage: stage, Release: release, At: c.now()})
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// List returns the records of the cache, most recently used first.
// Directories that are not whole artifacts are left out.
func (c *Cache) List() ([]*Record, error) {
	entries, err := os.ReadDir(c.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []*Record
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), entryPrefix) {
			continue
		}
		r, err := readWhole(filepath.Join(c.Dir, e.Name()))
		if err != nil {
			continue // not whole: removed after the next store
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *Record) int {
		if c := b.LastUsed.Compare(a.LastUsed); c != 0 {
			return c
		}
		return strings.Compare(a.Digest, b.Digest)
	})
	return out, nil
}

// KeepNewest removes all but the n most recently used artifacts, and
// returns what it removed.
func (c *Cache) KeepNewest(n int) ([]*Record, error) {
	return c.prune(func(records []*Record) []*Record {
		if len(records) > n {
			return records[max(n, 0):]
		}
		return nil
	})
}

// RemoveUnused removes the artifacts last used longer ago than age, and
// returns them.
func (c *Cache) RemoveUnused(age time.Duration) ([]*Record, error) {
	cutoff := c.now().Add(-age)
	return c.prune(func(records []*Record) []*Record {
		var drop []*Record
		for _, r := range records {
			if r.LastUsed.Before(cutoff) {
				drop = append(drop, r)
			}
		}
		return drop
	})
}

// Fit removes the least recently used artifacts until the cache fits its
// bounds (all of them, when the cache is off), and returns them.
func (c *Cache) Fit() ([]*Record, error) {
	return c.prune(func(records []*Record) []*Record { return c.overBounds(records, "") })
}

// prune removes the records pick picks from the cache's, most recently
// used first.
func (c *Cache) prune(pick func([]*Record) []*Record) ([]*Record, error) {
	records, err := c.List()
	if err != nil {
		return nil, err
	}
	drop := pick(records)
	return drop, c.remove(drop)
}

// evict removes the least recently used artifacts until the cache fits
// its bounds, never keep (the one just stored), and what runs that died
// left behind. A failure is an *EvictError.
func (c *Cache) evict(keep string) error {
	c.removeLeftovers()
	records, err := c.List()
	if err == nil {
		err = c.remove(c.overBounds(records, keep))
	}
	if err != nil {
		return &EvictError{Dir: c.Dir, Err: err}
	}
	return nil
}

// overBounds picks, oldest use first, the records to remove for the rest
// to fit MaxBytes and MaxEntries; keep is never picked.
func (c *Cache) overBounds(records []*Record, keep string) []*Record {
	var total int64
	for _, r := range records {
		total += r.DiskSize
	}
	count := len(records)
	var drop []*Record
	for i := len(records) - 1; i >= 0 && (count > c.MaxEntries || total > c.MaxBytes); i-- {
		if records[i].Digest == keep {
			continue
		}
		drop = append(drop, records[i])
		count--
		total -= records[i].DiskSize
	}
	return drop
}

func (c *Cache) remove(records []*Record) error {
	var errs []error
	for _, r := range records {
		dir, err := c.entryDir(r.Digest)
		if err == nil {
			err = c.removeEntry(dir)
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// removeEntry takes the artifact in dir out of the cache in one rename,
// then deletes it aside. Deleting it in place would let a run recording
// a use of it meanwhile (update) put its record back, and a removal cut
// short would leave a record without its archive; aside, the worst left
// is a tmp- directory, deleted once stale.
func (c *Cache) removeEntry(dir string) error {
	aside, err := os.MkdirTemp(c.Dir, tempPrefix)
	if err != nil {
		return err
	}
	err = os.Rename(dir, filepath.Join(aside, filepath.Base(dir)))
	if errors.Is(err, fs.ErrNotExist) {
		err = nil // removed by another run meanwhile
	}
	removeErr := os.RemoveAll(aside)
	if removeErr != nil {
		// A run recording a use may have created its record's temporary
		// file just before the rename; nothing can be added since.
		removeErr = os.RemoveAll(aside)
	}
	return errors.Join(err, removeErr)
}

// removeLeftovers removes what runs that died left behind: tmp-
// directories older than staleTemp, and artifact directories that are
// not whole.
func (c *Cache) removeLeftovers() {
	entries, _ := os.ReadDir(c.Dir)
	for _, e := range entries {
		dir := filepath.Join(c.Dir, e.Name())
		switch {
		case strings.HasPrefix(e.Name(), tempPrefix):
			if info, err := e.Info(); err == nil && c.now().Sub(info.ModTime()) > staleTemp {
				os.RemoveAll(dir)
			}
		case strings.HasPrefix(e.Name(), entryPrefix) && e.IsDir() && !whole(dir):
			c.removeEntry(dir)
		}
	}
}

// whole reports whether dir holds an artifact: a record that reads, and
// its archive. Artifacts appear and go in one rename, and a record is
// only written beside its archive, so anything else is damage.
func whole(dir string) bool {
	_, err := readWhole(dir)
	return err == nil
}

// readWhole is the record of the artifact in dir, if it is whole.
func readWhole(dir string) (*Record, error) {
	r, err := readRecord(dir)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, archiveName)); err != nil {
		return nil, err
	}
	return r, nil
}

// update changes the record of digest, replacing it whole. An artifact
// whose archive is gone gets no record back (see writeRecord).
func (c *Cache) update(digest string, change func(*Record)) error {
	dir, err := c.entryDir(digest)
	if err != nil {
		return err
	}
	r, err := readRecord(dir)
	if err != nil {
		return err
	}
	change(r)
	return writeRecord(dir, r)
}

func readRecord(dir string) (*Record, error) {
	data, err := os.ReadFile(filepath.Join(dir, recordName))
	if err != nil {
		return nil, err
	}
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, recordName), err)
	}
	if r.Digest != "sha256:"+strings.TrimPrefix(filepath.Base(dir), entryPrefix) {
		return nil, fmt.Errorf("%s: the record of another artifact", filepath.Join(dir, recordName))
	}
	return &r, nil
}

// writeRecord writes r into dir through a temporary file and a rename, so
// a reader never sees half of it, and only beside its archive: a record
// renamed into a directory being deleted, after its archive went, would
// make the artifact look kept when its tree is not.
func writeRecord(dir string, r *Record) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, recordName+".*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(append(data, '\n'))
	if closeErr := tmp.Close(); err == nil {
		err = closeErr
	}
	if err == nil {
		_, err = os.Stat(filepath.Join(dir, archiveName))
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, recordName))
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// writeFile creates file with what write writes, and returns its size.
func writeFile(file string, write func(io.Writer) error) (int64, error) {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, err
	}
	counted := &countingWriter{w: f}
	err = write(counted)
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	return counted.n, err
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// ctxWriter stops a write once ctx is done (an interrupted run).
type ctxWriter struct {
	ctx context.Context
	w   io.Writer
}

func (c *ctxWriter) Write(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.w.Write(p)
}
