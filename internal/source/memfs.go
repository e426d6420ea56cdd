package source

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"path"
	"slices"
	"time"
)

// memFS is a read-only file system in memory: where a git export goes when
// nothing has to run in it (no source.build) and it is small enough
// (MemoryExportLimit). Writing thousands of files to a temporary directory
// and deleting them again cost a deploy more than anything else on this
// machine; in memory, an export costs only git's time.
type memFS struct {
	entries map[string]*memEntry // by slash path; "." is the root
	size    int64                // bytes of file content held
	limit   int64
}

type memEntry struct {
	name     string // base name
	mode     fs.FileMode
	modTime  time.Time
	data     []byte // file content, or a symlink's target
	children []string
	sorted   bool
}

// errTooBig stops an export to memory that outgrows its limit; the export
// is then made on disk.
var errTooBig = errors.New("export too big for memory")

func newMemFS(limit int64) *memFS {
	return &memFS{entries: map[string]*memEntry{".": {name: ".", mode: fs.ModeDir | 0o755}}, limit: limit}
}

// add puts an entry at name (slash-separated, valid), making missing
// parents as 0755 directories. A directory added twice keeps the later
// attributes; anything else may be added once.
func (m *memFS) add(name string, e *memEntry) error {
	if old, ok := m.entries[name]; ok {
		if old.mode.IsDir() && e.mode.IsDir() {
			old.mode, old.modTime = e.mode, e.modTime
			return nil
		}
		return &fs.PathError{Op: "create", Path: name, Err: fs.ErrExist}
	}
	parent := path.Dir(name)
	p, ok := m.entries[parent]
	if !ok {
		if err := m.add(parent, &memEntry{name: path.Base(parent), mode: fs.ModeDir | 0o755}); err != nil {
			return err
		}
		p = m.entries[parent]
	}
	if !p.mode.IsDir() {
		return &fs.PathError{Op: "create", Path: name, Err: errors.New("parent is not a directory")}
	}
	e.name = path.Base(name)
	m.entries[name] = e
	p.children = append(p.children, e.name)
	p.sorted = false
	return nil
}

// addFile reads a file's content into memory, within the limit.
func (m *memFS) addFile(name string, r io.Reader, size int64, perm fs.FileMode, modTime time.Time) error {
	if m.size+size > m.limit {
		return errTooBig
	}
	data := make([]byte, size)
	if _, err := io.ReadFull(r, data); err != nil {
		return err
	}
	m.size += size
	return m.add(name, &memEntry{mode: perm, modTime: modTime, data: data})
}

func (m *memFS) lookup(op, name string) (*memEntry, error) {
	// No fs.ValidPath here: it refuses names that are not UTF-8, which
	// a git tree may hold and a Linux host takes.
	e, ok := m.entries[name]
	if !ok {
		return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	}
	return e, nil
}

// Open opens a file or directory; symlinks are not followed (nothing in
// slipway opens one: Scan reads their targets).
func (m *memFS) Open(name string) (fs.File, error) {
	e, err := m.lookup("open", name)
	if err != nil {
		return nil, err
	}
	if e.mode&fs.ModeSymlink != 0 {
		return nil, &fs.PathError{Op: "open", Path: name, Err: errors.New("is a symbolic link")}
	}
	return &memFile{e: e, r: bytes.NewReader(e.data), fs: m, path: name}, nil
}

// ReadDir lists a directory sorted by name, as fs.WalkDir wants.
func (m *memFS) ReadDir(name string) ([]fs.DirEntry, error) {
	e, err := m.lookup("readdir", name)
	if err != nil {
		return nil, err
	}
	if !e.mode.IsDir() {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a directory")}
	}
	if !e.sorted {
		slices.Sort(e.children)
		e.sorted = true
	}
	out := make([]fs.DirEntry, len(e.children))
	for i, child := range e.children {
		out[i] = fs.FileInfoToDirEntry(memInfo{m.entries[path.Join(name, child)]})
	}
	return out, nil
}

// Lstat and ReadLink make memFS an fs.ReadLinkFS.
func (m *memFS) Lstat(name string) (fs.FileInfo, error) {
	e, err := m.lookup("lstat", name)
	if err != nil {
		return nil, err
	}
	return memInfo{e}, nil
}

func (m *memFS) ReadLink(name string) (string, error) {
	e, err := m.lookup("readlink", name)
	if err != nil {
		return "", err
	}
	if e.mode&fs.ModeSymlink == 0 {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: fs.ErrInvalid}
	}
	return string(e.data), nil
}

type memFile struct {
	e    *memEntry
	r    *bytes.Reader
	fs   *memFS
	path string
}

func (f *memFile) Stat() (fs.FileInfo, error) { return memInfo{f.e}, nil }
func (f *memFile) Read(p []byte) (int, error) { return f.r.Read(p) }
func (f *memFile) Close() error               { return nil }

// ReadDir makes directories opened with Open listable too.
func (f *memFile) ReadDir(n int) ([]fs.DirEntry, error) {
	if n > 0 {
		return nil, errors.New("memFS: ReadDir with a count is not supported")
	}
	return f.fs.ReadDir(f.path)
}

type memInfo struct{ e *memEntry }

func (i memInfo) Name() string       { return i.e.name }
func (i memInfo) Size() int64        { return int64(len(i.e.data)) }
func (i memInfo) Mode() fs.FileMode  { return i.e.mode }
func (i memInfo) ModTime() time.Time { return i.e.modTime }
func (i memInfo) IsDir() bool        { return i.e.mode.IsDir() }
func (i memInfo) Sys() any           { return nil }
