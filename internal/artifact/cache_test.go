package artifact

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipway-deploy/slipway/internal/source"
)

// clock is a test clock that moves on a minute each time it is read.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Minute)
	return c.now
}

func newCache(t *testing.T) *Cache {
	t.Helper()
	c := &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	return &Cache{Dir: filepath.Join(t.TempDir(), "artifacts"), MaxBytes: 1 << 30, MaxEntries: 10, Now: c.Now}
}

// tree scans a small site whose build.txt holds version.
func tree(t *testing.T, version string) *source.Tree {
	t.Helper()
	dir := t.TempDir()
	for rel, body := range map[string]string{"index.php": "<?php echo 1;", "build.txt": version, "bin/run": "#!/bin/sh"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, rel)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, rel), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tr, err := source.Scan(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

func store(t *testing.T, c *Cache, tr *source.Tree, revision, key string) {
	t.Helper()
	if err := c.Store(context.Background(), tr, &Build{Revision: revision, Key: key, Branch: "main"}); err != nil {
		t.Fatal(err)
	}
}

func digests(t *testing.T, c *Cache) string {
	t.Helper()
	records, err := c.List()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range records {
		out = append(out, r.Digest)
	}
	return strings.Join(out, " ")
}

func TestStoreAndLookup(t *testing.T) {
	c := newCache(t)
	key := BuildKey([]string{"npm run build"}, []string{"tests/"}, "app", false)
	built := tree(t, "built at 1")
	store(t, c, built, "abc123", key)

	a, err := c.Lookup("abc123", key)
	if err != nil || a == nil {
		t.Fatalf("lookup: %v, %v", a, err)
	}
	defer a.Close()
	if a.Tree.Digest != built.Digest || !bytes.Equal(a.Tree.Sealed(), built.Sealed()) {
		t.Fatalf("looked up %s, stored %s", a.Tree.Digest, built.Digest)
	}
	if a.Builds[0].Branch != "main" {
		t.Errorf("record: %+v", a.Record)
	}
	for what, lookup := range map[string][2]string{
		"another revision":     {"def456", key},
		"another build":        {"abc123", BuildKey([]string{"npm run build:prod"}, []string{"tests/"}, "app", false)},
		"another subdir":       {"abc123", BuildKey([]string{"npm run build"}, []string{"tests/"}, "", false)},
		"a directory's build":  {"abc123", ""},
		"an unknown revision ": {"", key},
	} {
		if a, err := c.Lookup(lookup[0], lookup[1]); a != nil || err != nil {
			t.Errorf("%s: found %v (%v)", what, a, err)
		}
	}
	if a, err := c.Get(built.Digest); a == nil || err != nil {
		t.Errorf("get: %v, %v", a, err)
	} else {
		a.Close()
	}

	// A dirty build is kept (it can be promoted), never looked up.
	dirty := tree(t, "dirty")
	if err := c.Store(context.Background(), dirty, &Build{Revision: "abc999", Key: key, Dirty: true}); err != nil {
		t.Fatal(err)
	}
	if a, _ := c.Lookup("abc999", key); a != nil {
		t.Error("a dirty build was looked up")
	}
	if a, _ := c.Get(dirty.Digest); a == nil {
		t.Error("a dirty build was not kept")
	} else {
		a.Close()
	}

	// The same tree built again adds the build to its record.
	store(t, c, built, "abc124", key)
	records, _ := c.List()
	for _, r := range records {
		if r.Digest == built.Digest && strings.Join(r.Revisions(), ",") != "abc123,abc124" {
			t.Errorf("revisions %v", r.Revisions())
		}
	}
}

func TestDamagedArtifactIsDroppedNotShipped(t *testing.T) {
	c := newCache(t)
	built := tree(t, "v1")
	store(t, c, built, "abc", "key")
	dir, _ := c.entryDir(built.Digest)
	file := filepath.Join(dir, archiveName)
	data, _ := os.ReadFile(file)
	i := bytes.Index(data, []byte("<?php echo 1;"))
	data[i+len("<?php echo ")] = '2'
	if err := os.WriteFile(file, data, 0o600); err != nil {
		t.Fatal(err)
	}
	a, err := c.Lookup("abc", "key")
	if a != nil || err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("lookup of a damaged artifact: %v, %v", a, err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Error("the damaged artifact is still there")
	}
	store(t, c, built, "abc", "key")
	if a, err := c.Lookup("abc", "key"); a == nil {
		t.Fatalf("stored again: %v", err)
	} else {
		a.Close()
	}

	// An unreadable record: the artifact is not found, and made again.
	if err := os.WriteFile(filepath.Join(dir, recordName), []byte("{half"), 0o600); err != nil {
		t.Fatal(err)
	}
	if a, err := c.Get(built.Digest); a != nil || err != nil {
		t.Fatalf("get with a broken record: %v, %v", a, err)
	}
	store(t, c, built, "abc", "key")
	if a, err := c.Get(built.Digest); a == nil {
		t.Fatalf("stored over a broken record: %v", err)
	} else {
		a.Close()
	}
}

func TestLeastRecentlyUsedIsEvicted(t *testing.T) {
	c := newCache(t)
	c.MaxEntries = 2
	v1, v2, v3 := tree(t, "v1"), tree(t, "v2"), tree(t, "v3")
	store(t, c, v1, "r1", "k")
	store(t, c, v2, "r2", "k")
	a, _ := c.Get(v1.Digest) // v1 is used again: v2 is now the oldest
	a.Close()
	store(t, c, v3, "r3", "k")
	if got, want := digests(t, c), v3.Digest+" "+v1.Digest; got != want {
		t.Fatalf("kept %s, want %s", got, want)
	}

	// By size: each archive is a few KB.
	c.MaxEntries = 10
	records, _ := c.List()
	c.MaxBytes = records[0].DiskSize + records[0].DiskSize/2
	v4 := tree(t, "v4")
	store(t, c, v4, "r4", "k")
	if got := digests(t, c); got != v4.Digest {
		t.Fatalf("kept %s, want only %s", got, v4.Digest)
	}
	c.MaxBytes = v4.Size - 1 // a tree bigger than the cache is not kept
	v5 := tree(t, "v5 is bigger than the cache")
	store(t, c, v5, "r5", "k")
	if got := digests(t, c); got != v4.Digest {
		t.Fatalf("kept %s", got)
	}
}

func TestStaleTempsAreRemoved(t *testing.T) {
	c := newCache(t)
	store(t, c, tree(t, "v1"), "r1", "k")
	stale, fresh := filepath.Join(c.Dir, "tmp-stale"), filepath.Join(c.Dir, "tmp-fresh")
	for _, dir := range []string{stale, fresh} {
		if err := os.Mkdir(dir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	old := c.now().Add(-48 * time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(fresh, c.now(), c.now()); err != nil {
		t.Fatal(err)
	}
	store(t, c, tree(t, "v2"), "r2", "k")
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Error("a stale temporary directory was left")
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Error("a fresh temporary directory (another run's) was removed")
	}
}

func TestPrune(t *testing.T) {
	c := newCache(t)
	trees := []*source.Tree{tree(t, "v1"), tree(t, "v2"), tree(t, "v3"), tree(t, "v4")}
	for i, tr := range trees {
		store(t, c, tr, "r"+string(rune('1'+i)), "k")
	}
	removed, err := c.KeepNewest(3)
	if err != nil || len(removed) != 1 || removed[0].Digest != trees[0].Digest {
		t.Fatalf("--keep 3 removed %v (%v)", removed, err)
	}
	// v2 was used a minute before v3: the limit falls between them.
	now := c.now()
	c.Now = func() time.Time { return now }
	removed, err = c.RemoveUnused(now.Sub(lastUsed(t, c, trees[2].Digest)) + time.Second)
	if err != nil || len(removed) != 1 || removed[0].Digest != trees[1].Digest {
		t.Fatalf("--older-than removed %v (%v)", removed, err)
	}
	c.MaxEntries = 1
	removed, err = c.Fit()
	if err != nil || len(removed) != 1 || digests(t, c) != trees[3].Digest {
		t.Fatalf("to the bounds: removed %v, kept %s (%v)", removed, digests(t, c), err)
	}
	if removed, err = c.KeepNewest(0); err != nil || len(removed) != 1 || digests(t, c) != "" {
		t.Fatalf("--keep 0: removed %v, kept %s (%v)", removed, digests(t, c), err)
	}
}

func lastUsed(t *testing.T, c *Cache, digest string) time.Time {
	t.Helper()
	records, _ := c.List()
	for _, r := range records {
		if r.Digest == digest {
			return r.LastUsed
		}
	}
	t.Fatalf("%s not in the cache", digest)
	return time.Time{}
}

func TestImportKeepsOnlyTheTreeItWasTakenFor(t *testing.T) {
	c := newCache(t)
	built := tree(t, "v1")
	write := func(w io.Writer) error { return built.WriteArchive(w) }

	_, err := c.Import(context.Background(), tree(t, "v2").Digest, "staging@1", nil, write)
	var digestErr *DigestError
	if !errors.As(err, &digestErr) || digestErr.Got != built.Digest {
		t.Fatalf("import under another digest: %v", err)
	}
	if entries, _ := os.ReadDir(c.Dir); len(entries) != 0 {
		t.Fatalf("a refused import left %v", entries)
	}

	a, err := c.Import(context.Background(), built.Digest, "fetched from staging@1", &Build{Revision: "abc"}, write)
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	got, err := c.Get(built.Digest)
	if err != nil || got == nil || got.Origin != "fetched from staging@1" || got.Revisions()[0] != "abc" {
		t.Fatalf("imported: %+v, %v", got, err)
	}
	got.Close()

	// With the cache off, an import lives until it is closed.
	off := &Cache{Dir: c.Dir + "-off"}
	a, err = off.Import(context.Background(), built.Digest, "", nil, write)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(a.temp); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Tree.Sealed(), built.Sealed()) {
		t.Error("the import is another tree")
	}
	a.Close()
	if _, err := os.Stat(a.temp); !os.IsNotExist(err) {
		t.Error("closing an import the cache could not keep left it")
	}
	if _, err := os.Stat(off.Dir); !os.IsNotExist(err) {
		t.Error("a cache that is off made its directory")
	}
}

func TestInterruptedStoreLeavesNothing(t *testing.T) {
	c := newCache(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := c.Store(ctx, tree(t, "v1"), nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("store: %v", err)
	}
	if entries, _ := os.ReadDir(c.Dir); len(entries) != 0 {
		t.Fatalf("left %v", entries)
	}
}

func TestDeployedRecordsTheNewestReleaseOfEachStage(t *testing.T) {
	c := newCache(t)
	built := tree(t, "v1")
	store(t, c, built, "r1", "k")
	for _, d := range [][2]string{{"staging", "20260101000000"}, {"production", "20260102000000"}, {"staging", "20260103000000"}} {
		if err := c.Deployed(built.Digest, d[0], d[1]); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Deployed(tree(t, "never stored").Digest, "staging", "20260104000000"); err != nil {
		t.Errorf("a tree the cache does not have: %v", err)
	}
	records, _ := c.List()
	var got []string
	for _, d := range records[0].Stages {
		got = append(got, d.Stage+"@"+d.Release)
	}
	if strings.Join(got, " ") != "production@20260102000000 staging@20260103000000" {
		t.Errorf("stages %v", got)
	}
}

func TestConcurrentStoresOfOneTree(t *testing.T) {
	c := newCache(t)
	built := tree(t, "v1")
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.Store(context.Background(), built, &Build{Revision: "r", Key: "k"})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if got := digests(t, c); got != built.Digest {
		t.Fatalf("cache holds %q", got)
	}
	a, err := c.Lookup("r", "k")
	if a == nil {
		t.Fatalf("lookup: %v", err)
	}
	a.Close()
}

func TestOpenReadsTheBoundsFromTheEnvironment(t *testing.T) {
	env := map[string]string{}
	getenv := func(k string) string { return env[k] }
	c, err := Open(getenv)
	if err != nil || c.MaxBytes != DefaultMaxBytes || c.MaxEntries != DefaultMaxEntries || !strings.HasSuffix(c.Dir, filepath.Join("slipway", "artifacts")) {
		t.Fatalf("defaults: %+v, %v", c, err)
	}
	env[EnvMaxSize], env[EnvMaxEntries] = "500MB", "7"
	if c, err = Open(getenv); err != nil || c.MaxBytes != 500<<20 || c.MaxEntries != 7 {
		t.Fatalf("set: %+v, %v", c, err)
	}
	env[EnvMaxSize] = "0"
	if c, _ = Open(getenv); c.Enabled() {
		t.Error("size 0 leaves the cache on")
	}
	env[EnvMaxSize] = "lots"
	var envErr *EnvError
	if _, err = Open(getenv); !errors.As(err, &envErr) || !strings.Contains(err.Error(), EnvMaxSize+`="lots": give a size such as 5GB`) {
		t.Errorf("bad size: %v", err)
	}
	env[EnvMaxSize], env[EnvMaxEntries] = "", "-1"
	if _, err = Open(getenv); !errors.As(err, &envErr) {
		t.Errorf("bad count: %v", err)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "1024": 1024, "100B": 100, "5GB": 5 << 30, "5G": 5 << 30, "5gib": 5 << 30, "500MB": 500 << 20,
		"1.5G": 3 << 29, "2 TB": 2 << 40, "64k": 64 << 10,
	} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("%q: %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "GB", "-1G", "5X", "5 G B", "1e3", "99999999T"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("%q: %d, want an error", in, got)
		}
	}
}

// halve leaves the artifact of built as a removal cut short left it in
// older slipways (or one that raced a run recording a use): its record,
// without its archive.
func halve(t *testing.T, c *Cache, built *source.Tree) string {
	t.Helper()
	store(t, c, built, "abc", "key")
	dir, _ := c.entryDir(built.Digest)
	if err := os.Remove(filepath.Join(dir, archiveName)); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestRecordWithoutArchiveIsNoArtifact(t *testing.T) {
	c := newCache(t)
	built := tree(t, "v1")
	write := func(w io.Writer) error { return built.WriteArchive(w) }

	dir := halve(t, c, built)
	if got := digests(t, c); got != "" {
		t.Errorf("listed %s", got)
	}
	if err := c.Deployed(built.Digest, "staging", "20260101000000"); err != nil {
		t.Errorf("deployed: %v", err)
	}
	if r, err := readRecord(dir); err != nil || len(r.Stages) != 0 {
		t.Errorf("a record without its archive was written again: %+v, %v", r, err)
	}
	a, err := c.Get(built.Digest)
	if a != nil || err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("get: %v, %v", a, err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Error("get left it")
	}

	// Stored or imported again, it is written whole, not only added to.
	halve(t, c, built)
	store(t, c, built, "abc", "key")
	if a, err := c.Lookup("abc", "key"); a == nil {
		t.Fatalf("stored again: %v", err)
	} else {
		a.Close()
	}
	halve(t, c, built)
	if a, err := c.Import(context.Background(), built.Digest, "fetched from staging@1", nil, write); err != nil {
		t.Fatalf("imported again: %v", err)
	} else {
		a.Close()
	}

	// Left alone, it goes after the next store.
	dir = halve(t, c, built)
	store(t, c, tree(t, "v2"), "def", "key")
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Error("a store left it")
	}
}

func TestUpdateNeverPutsARecordBackWithoutItsArchive(t *testing.T) {
	c := newCache(t)
	built := tree(t, "v1")
	store(t, c, built, "abc", "key")
	dir, _ := c.entryDir(built.Digest)
	// A removal in place (an older slipway's RemoveAll) deletes both
	// files while this run records a use, then the directory.
	err := c.update(built.Digest, func(r *Record) {
		r.LastUsed = c.now()
		for _, name := range []string{archiveName, recordName} {
			if err := os.Remove(filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
	})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("update: %v", err)
	}
	if err := os.Remove(dir); err != nil {
		t.Errorf("the removal cannot finish: %v", err)
	}
}

func TestFailedEvictionIsAWarning(t *testing.T) {
	c := newCache(t)
	c.MaxEntries = 1
	// An artifact that cannot be removed (tests may run as root, who may
	// remove anything): its name is no digest, so nothing can name it.
	stuck := tree(t, "v0")
	store(t, c, stuck, "r0", "k")
	dir, _ := c.entryDir(stuck.Digest)
	upper := strings.ToUpper(stuck.Digest[len("sha256:"):])
	r, _ := readRecord(dir)
	r.Digest = "sha256:" + upper
	if err := writeRecord(dir, r); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dir, filepath.Join(c.Dir, entryPrefix+upper)); err != nil {
		t.Fatal(err)
	}

	built := tree(t, "v1")
	err := c.Store(context.Background(), built, &Build{Revision: "r1", Key: "k"})
	var evictErr *EvictError
	if !errors.As(err, &evictErr) {
		t.Fatalf("store: %v", err)
	}
	if a, err := c.Lookup("r1", "k"); a == nil {
		t.Fatalf("the store was not kept: %v", err)
	} else {
		a.Close()
	}

	imported := tree(t, "v2")
	a, err := c.Import(context.Background(), imported.Digest, "fetched from staging@1", nil, func(w io.Writer) error { return imported.WriteArchive(w) })
	if !errors.As(err, &evictErr) || a == nil || a.Tree.Digest != imported.Digest {
		t.Fatalf("import: %v, %v", a, err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if a, err := c.Get(imported.Digest); a == nil {
		t.Fatalf("the import was not kept: %v", err)
	} else {
		a.Close()
	}
}

func TestArchiveBiggerThanTheCacheIsNotKept(t *testing.T) {
	c := newCache(t)
	small := tree(t, "v1")
	store(t, c, small, "r1", "k")
	big := tree(t, "v2 "+strings.Repeat("x", 8<<10))
	// Its content fits; its archive, with tar headers and padding, does not.
	c.MaxBytes = big.Size + 100
	store(t, c, big, "r2", "k")
	if got := digests(t, c); got != small.Digest {
		t.Fatalf("kept %s, want only %s", got, small.Digest)
	}
}

func TestUnusableDirectoryNamesTheFix(t *testing.T) {
	home := filepath.Join(t.TempDir(), "home")
	if err := os.WriteFile(home, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	c := &Cache{Dir: filepath.Join(home, "slipway", "artifacts"), MaxBytes: 1 << 30, MaxEntries: 10}
	err := c.Ready()
	var dirErr *DirError
	if !errors.As(err, &dirErr) {
		t.Fatalf("ready: %v", err)
	}
	for _, want := range []string{c.Dir, dirErr.Err.Error(), cacheHomeVar(), EnvMaxSize + "=0"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%q does not say %q", err, want)
		}
	}
	if err := c.Store(context.Background(), tree(t, "v1"), nil); !errors.As(err, &dirErr) {
		t.Errorf("store: %v", err)
	}
	c.MaxBytes = 0
	if err := c.Ready(); err != nil {
		t.Errorf("a cache that is off: %v", err)
	}
}
