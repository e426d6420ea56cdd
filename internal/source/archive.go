package source

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"
	"time"
)

// An archive keeps a tree on this machine as one file, so that a release
// built once can be shipped again (to another stage, or promoted) without
// building it again. It is a plain tar of every entry of the tree, each
// with its whole mode (the setuid, setgid and sticky bits too, which the
// digest covers) and its time to the second. It is not compressed, so its
// files can be read where they lie: OpenArchive notes where each one's
// content starts, and the tree it returns streams them from there to the
// hosts, never extracting anything.

// WriteArchive writes the whole tree as an archive (see OpenArchive).
func (t *Tree) WriteArchive(w io.Writer) error {
	tw := tar.NewWriter(w)
	for _, f := range t.Files {
		if err := t.writeEntry(tw, f, tarMode(f.Mode)); err != nil {
			return err
		}
	}
	return tw.Close()
}

// tarMode is a mode as tar stores it: the permissions and the setuid,
// setgid and sticky bits, which tar.Header.FileInfo turns back into an
// fs.FileMode.
func tarMode(m fs.FileMode) int64 {
	mode := int64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

// Archive is a tree read from an archive file. Close it once nothing
// reads the tree any more (the deploy is over).
type Archive struct {
	Tree *Tree
	file *os.File
}

// OpenArchive reads the archive at file (written by WriteArchive or
// ArchiveRelease) as a tree. Its digest is computed from the content, as
// Scan computes a directory's: the caller compares it with the one it
// expects, so a damaged or altered archive is never shipped as the tree
// it claims to be.
func OpenArchive(file string) (*Archive, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	fsys, err := indexArchive(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("archive %s: %w", file, err)
	}
	tree, err := scanFS(fsys, file, nil)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("archive %s: %w", file, err)
	}
	return &Archive{Tree: tree, file: f}, nil
}

// Close closes the archive's file.
func (a *Archive) Close() error { return a.file.Close() }

// archiveFS is an archive as a read-only file system: directories and
// links in memory, file content read from the archive at its offset.
type archiveFS struct {
	file    io.ReaderAt
	entries map[string]*archiveEntry // by slash path; "." is the root
}

type archiveEntry struct {
	name     string
	mode     fs.FileMode
	modTime  time.Time
	size     int64
	offset   int64  // of a file's content in the archive
	link     string // a symlink's target
	children []string
}

// indexArchive reads the headers of the archive in f, skipping the
// content (tar seeks over it), and notes where each file's content starts.
func indexArchive(f *os.File) (*archiveFS, error) {
	a := &archiveFS{file: f, entries: map[string]*archiveEntry{".": {name: ".", mode: fs.ModeDir | 0o755}}}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		name := strings.TrimSuffix(hdr.Name, "/")
		if err := checkRel(name); err != nil {
			return nil, err
		}
		e := &archiveEntry{name: path.Base(name), mode: hdr.FileInfo().Mode(), modTime: hdr.ModTime}
		switch hdr.Typeflag {
		case tar.TypeDir:
		case tar.TypeSymlink:
			e.link = hdr.Linkname
		case tar.TypeReg:
			// tar reads headers block by block and nothing more: the file
			// is now where this entry's content starts.
			if e.offset, err = f.Seek(0, io.SeekCurrent); err != nil {
				return nil, err
			}
			e.size = hdr.Size
		default:
			return nil, fmt.Errorf("%s: unexpected entry type %q", name, hdr.Typeflag)
		}
		parent, ok := a.entries[path.Dir(name)]
		if !ok || !parent.mode.IsDir() {
			return nil, fmt.Errorf("%s: its directory comes after it, or is not one", name)
		}
		if _, dup := a.entries[name]; dup {
			return nil, fmt.Errorf("%s: listed twice", name)
		}
		a.entries[name] = e
		parent.children = append(parent.children, e.name)
	}
	for _, e := range a.entries {
		slices.Sort(e.children)
	}
	return a, nil
}

func (a *archiveFS) lookup(op, name string) (*archiveEntry, error) {
	e, ok := a.entries[name]
	if !ok {
		return nil, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	}
	return e, nil
}

func (a *archiveFS) Open(name string) (fs.File, error) {
	e, err := a.lookup("open", name)
	if err != nil {
		return nil, err
	}
	if e.mode&fs.ModeSymlink != 0 {
		return nil, &fs.PathError{Op: "open", Path: name, Err: errors.New("is a symbolic link")}
	}
	return &archiveFile{e: e, r: io.NewSectionReader(a.file, e.offset, e.size), fs: a, path: name}, nil
}

// ReadDir lists a directory sorted by name, as fs.WalkDir wants.
func (a *archiveFS) ReadDir(name string) ([]fs.DirEntry, error) {
	e, err := a.lookup("readdir", name)
	if err != nil {
		return nil, err
	}
	if !e.mode.IsDir() {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: errors.New("not a directory")}
	}
	out := make([]fs.DirEntry, len(e.children))
	for i, child := range e.children {
		out[i] = fs.FileInfoToDirEntry(archiveInfo{a.entries[path.Join(name, child)]})
	}
	return out, nil
}

// Lstat and ReadLink make archiveFS an fs.ReadLinkFS.
func (a *archiveFS) Lstat(name string) (fs.FileInfo, error) {
	e, err := a.lookup("lstat", name)
	if err != nil {
		return nil, err
	}
	return archiveInfo{e}, nil
}

func (a *archiveFS) ReadLink(name string) (string, error) {
	e, err := a.lookup("readlink", name)
	if err != nil {
		return "", err
	}
	if e.mode&fs.ModeSymlink == 0 {
		return "", &fs.PathError{Op: "readlink", Path: name, Err: fs.ErrInvalid}
	}
	return e.link, nil
}

type archiveFile struct {
	e    *archiveEntry
	r    *io.SectionReader
	fs   *archiveFS
	path string
}

func (f *archiveFile) Stat() (fs.FileInfo, error) { return archiveInfo{f.e}, nil }
func (f *archiveFile) Read(p []byte) (int, error) { return f.r.Read(p) }
func (f *archiveFile) Close() error               { return nil }

// ReadDir makes directories opened with Open listable too.
func (f *archiveFile) ReadDir(n int) ([]fs.DirEntry, error) {
	if n > 0 {
		return nil, errors.New("archiveFS: ReadDir with a count is not supported")
	}
	return f.fs.ReadDir(f.path)
}

type archiveInfo struct{ e *archiveEntry }

func (i archiveInfo) Name() string       { return i.e.name }
func (i archiveInfo) Size() int64        { return i.e.size }
func (i archiveInfo) Mode() fs.FileMode  { return i.e.mode }
func (i archiveInfo) ModTime() time.Time { return i.e.modTime }
func (i archiveInfo) IsDir() bool        { return i.e.mode.IsDir() }
func (i archiveInfo) Sys() any           { return nil }

// ReleaseMismatch lists the entries of a release whose copy on a host is
// not what the release's manifest says was shipped.
type ReleaseMismatch struct {
	Differ  []string // content, size, type or link target differ
	Missing []string // not on the host
}

func (e *ReleaseMismatch) Error() string {
	var parts []string
	if len(e.Differ) > 0 {
		parts = append(parts, fmt.Sprintf("%d differ from what was shipped (%s)", len(e.Differ), listSome(e.Differ)))
	}
	if len(e.Missing) > 0 {
		parts = append(parts, fmt.Sprintf("%d are missing (%s)", len(e.Missing), listSome(e.Missing)))
	}
	return strings.Join(parts, ", and ")
}

// Paths are the entries that differ and those missing, together.
func (e *ReleaseMismatch) Paths() []string {
	return append(slices.Clone(e.Differ), e.Missing...)
}

// listSome lists at most five names, and how many more there are.
func listSome(names []string) string {
	const most = 5
	if len(names) <= most {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:most], ", "), len(names)-most)
}

// ArchiveRelease writes to w the archive of the tree that a release's
// manifest describes, rebuilt from r: a tar stream of the release's files
// and symlinks as a host holds them (several archives one after the
// other, and names starting with "./", are fine). Each entry's type and
// mode come from the manifest, which says what was shipped (on the host,
// writable directories and shared links have changed them since); each
// file's content and each link's target come from the stream, and must be
// what the manifest says. Directories, which the stream need not hold,
// get dirTime. When anything differs or is missing, the error is a
// *ReleaseMismatch naming it, and what was written must not be used.
func ArchiveRelease(w io.Writer, r io.Reader, manifest map[string]Entry, dirTime time.Time) error {
	tw := tar.NewWriter(w)
	var dirs []string
	for rel, e := range manifest {
		if e.Type == 'd' {
			dirs = append(dirs, rel)
		}
	}
	slices.Sort(dirs) // each directory before those it holds
	for _, rel := range dirs {
		hdr := &tar.Header{Typeflag: tar.TypeDir, Name: rel + "/", Mode: int64(manifest[rel].Mode.Perm()), ModTime: dirTime.Truncate(time.Second)}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("%s: %w", rel, err)
		}
	}
	mismatch := &ReleaseMismatch{}
	seen := map[string]bool{}
	err := eachTarEntry(r, func(hdr *tar.Header, content io.Reader) error {
		rel := strings.TrimPrefix(strings.TrimSuffix(hdr.Name, "/"), "./")
		want, ok := manifest[rel]
		if !ok || seen[rel] || want.Type == 'd' {
			return nil // not asked for: not part of the tree
		}
		seen[rel] = true
		switch {
		case want.Type == 'l' && hdr.Typeflag == tar.TypeSymlink:
			if hdr.Linkname != want.Link {
				mismatch.Differ = append(mismatch.Differ, rel)
				return nil
			}
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: rel, Linkname: hdr.Linkname, Mode: int64(want.Mode.Perm()), ModTime: hdr.ModTime.Truncate(time.Second)})
		case want.Type == 'f' && hdr.Typeflag == tar.TypeReg:
			if hdr.Size != want.Size {
				mismatch.Differ = append(mismatch.Differ, rel)
				return nil
			}
			out := &tar.Header{Typeflag: tar.TypeReg, Name: rel, Size: hdr.Size, Mode: int64(want.Mode.Perm()), ModTime: hdr.ModTime.Truncate(time.Second)}
			if err := tw.WriteHeader(out); err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
			sum := sha256.New()
			if _, err := io.Copy(io.MultiWriter(tw, sum), content); err != nil {
				return fmt.Errorf("%s: %w", rel, err)
			}
			if hex.EncodeToString(sum.Sum(nil)) != want.SHA256 {
				mismatch.Differ = append(mismatch.Differ, rel)
			}
			return nil
		default:
			mismatch.Differ = append(mismatch.Differ, rel)
			return nil
		}
	})
	if err != nil {
		return err
	}
	for rel, e := range manifest {
		if e.Type != 'd' && !seen[rel] {
			mismatch.Missing = append(mismatch.Missing, rel)
		}
	}
	if len(mismatch.Differ)+len(mismatch.Missing) > 0 {
		slices.Sort(mismatch.Differ)
		slices.Sort(mismatch.Missing)
		return mismatch
	}
	return tw.Close()
}

// eachTarEntry calls fn for each entry of the tar archives in r, which may
// be several, one after the other (tar run once per batch of names), each
// padded with zero blocks.
func eachTarEntry(r io.Reader, fn func(*tar.Header, io.Reader) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	zero := make([]byte, 512)
	for {
		// Between archives: the padding of the one before, if any.
		for {
			block, err := br.Peek(512)
			if err == io.EOF && len(block) == 0 {
				return nil
			}
			if err != nil {
				return fmt.Errorf("reading the release's files: %w", err)
			}
			if !bytes.Equal(block, zero) {
				break
			}
			if _, err := br.Discard(512); err != nil {
				return err
			}
		}
		tr := tar.NewReader(br)
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("reading the release's files: %w", err)
			}
			if err := fn(hdr, tr); err != nil {
				return err
			}
		}
	}
}
