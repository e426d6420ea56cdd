package source

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strconv"
	"strings"
)

// A manifest lists every entry of a release as shipped: type, mode, size,
// SHA-256 and link target. Each release keeps one on its hosts, so the next
// deploy can send only what changed, and each host can verify what it got.
//
// The format is line-based text:
//
//	slipway-manifest 1
//	f 644 1234 <sha256> "path/in/release.php"
//	d 755 0 - "path/dir"
//	l 777 0 - "path/link" "target"
//
// Paths and link targets are Go-quoted, so any byte can appear in a name.

const manifestHeader = "slipway-manifest 1"

// Entry is one line of a manifest.
type Entry struct {
	Type   byte // 'f' file, 'd' directory, 'l' symlink
	Mode   fs.FileMode
	Size   int64
	SHA256 string
	Link   string
}

// Manifest encodes the tree's manifest, unsealed.
func (t *Tree) Manifest() []byte {
	entries := make(map[string]Entry, len(t.Files))
	for _, f := range t.Files {
		entries[f.Rel] = f.entry()
	}
	return encodeEntries(entries, false)
}

// EncodeManifest is the sealed manifest of entries, in canonical form:
// lines sorted bytewise (what `LC_ALL=C sort` gives on a host), so a host
// can rebuild it from a patch and check it byte for byte.
func EncodeManifest(entries map[string]Entry) []byte { return encodeEntries(entries, true) }

func encodeEntries(entries map[string]Entry, sealed bool) []byte {
	lines := make([]string, 0, len(entries))
	for rel, e := range entries {
		lines = append(lines, entryLine(rel, e))
	}
	slices.Sort(lines)
	var b bytes.Buffer
	b.WriteString(manifestHeader + "\n")
	for _, l := range lines {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	if sealed {
		b.WriteString("end\n")
	}
	return b.Bytes()
}

// ManifestOrder lists the paths of entries in the order of their lines in
// the canonical manifest (EncodeManifest): line n+2 of the file is the
// entry of the n-th path (line 1 is the header).
func ManifestOrder(entries map[string]Entry) []string {
	type line struct{ text, rel string }
	lines := make([]line, 0, len(entries))
	for rel, e := range entries {
		lines = append(lines, line{entryLine(rel, e), rel})
	}
	slices.SortFunc(lines, func(a, b line) int { return strings.Compare(a.text, b.text) })
	out := make([]string, len(lines))
	for i, l := range lines {
		out[i] = l.rel
	}
	return out
}

// PlainName reports whether rel stands in a manifest line as itself
// between double quotes: printable ASCII without quotes or backslashes,
// so a shell tool on a host can read it without unquoting.
func PlainName(rel string) bool {
	return strconv.QuoteToASCII(rel) == `"`+rel+`"`
}

// entryLine is one manifest line; names are quoted to plain ASCII, so
// shell tools on the host handle every line the same way.
func entryLine(rel string, e Entry) string {
	sum := e.SHA256
	if sum == "" {
		sum = "-"
	}
	line := fmt.Sprintf("%c %o %d %s %s", e.Type, uint32(e.Mode), e.Size, sum, strconv.QuoteToASCII(rel))
	if e.Type == 'l' {
		line += " " + strconv.QuoteToASCII(e.Link)
	}
	return line
}

func (f File) entry() Entry {
	switch {
	case f.Mode.IsDir():
		return Entry{Type: 'd', Mode: f.Mode.Perm()}
	case f.Mode&fs.ModeSymlink != 0:
		return Entry{Type: 'l', Mode: 0o777, Link: f.Link}
	default:
		return Entry{Type: 'f', Mode: f.Mode.Perm(), Size: f.Size, SHA256: f.SHA256}
	}
}

// ParseManifest reads a manifest from a host. Anything malformed or
// truncated is an error: a manifest that is not trusted is not used.
func ParseManifest(data []byte) (map[string]Entry, error) {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	if !sc.Scan() || sc.Text() != manifestHeader {
		return nil, fmt.Errorf("not a slipway manifest (first line %q)", firstLine(data))
	}
	entries := map[string]Entry{}
	complete := false
	for line := 2; sc.Scan(); line++ {
		text := sc.Text()
		if text == "end" {
			complete = true
			continue
		}
		if complete {
			return nil, fmt.Errorf("line %d: content after the end marker", line)
		}
		rel, e, err := parseEntry(text)
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", line, err)
		}
		if _, dup := entries[rel]; dup {
			return nil, fmt.Errorf("line %d: %q listed twice", line, rel)
		}
		entries[rel] = e
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if !complete {
		return nil, fmt.Errorf("truncated: no end marker")
	}
	return entries, nil
}

// Sealed is the manifest with its end marker, as stored on hosts: a
// manifest cut short by a full disk or a lost connection lacks it.
// It is built once: every host of a fleet gets the same bytes.
func (t *Tree) Sealed() []byte {
	t.sealedOnce.Do(func() { t.sealed = append(t.Manifest(), "end\n"...) })
	return t.sealed
}

// Patch turns the live release's manifest into the tree's: the lines to
// drop and the lines to add. It is only valid when live, encoded again,
// is byte for byte the file the host has (see EncodeManifest).
func (t *Tree) Patch(live map[string]Entry) []byte {
	var b bytes.Buffer
	b.WriteString("slipway-manifest-patch 1\n")
	// In a stable order: the same change makes the same bytes (an
	// artifact store names what it keeps by their checksum).
	var gone []string
	for rel, have := range live {
		if want, ok := t.index()[rel]; !ok || want != have {
			gone = append(gone, "- "+entryLine(rel, have)+"\n")
		}
	}
	slices.Sort(gone)
	for _, line := range gone {
		b.WriteString(line)
	}
	for _, f := range t.Files {
		if have, ok := live[f.Rel]; !ok || have != f.entry() {
			b.WriteString("+ " + entryLine(f.Rel, f.entry()) + "\n")
		}
	}
	return b.Bytes()
}

func firstLine(data []byte) string {
	line, _, _ := bytes.Cut(data, []byte("\n"))
	if len(line) > 40 {
		line = line[:40]
	}
	return string(line)
}

func parseEntry(text string) (string, Entry, error) {
	fields := strings.SplitN(text, " ", 5)
	if len(fields) != 5 || len(fields[0]) != 1 {
		return "", Entry{}, fmt.Errorf("malformed entry")
	}
	e := Entry{Type: fields[0][0]}
	mode, err := strconv.ParseUint(fields[1], 8, 32)
	if err != nil || mode > 0o7777 {
		return "", Entry{}, fmt.Errorf("bad mode %q", fields[1])
	}
	e.Mode = fs.FileMode(mode)
	if e.Size, err = strconv.ParseInt(fields[2], 10, 64); err != nil || e.Size < 0 {
		return "", Entry{}, fmt.Errorf("bad size %q", fields[2])
	}
	if fields[3] != "-" {
		if len(fields[3]) != 64 || strings.Trim(fields[3], "0123456789abcdef") != "" {
			return "", Entry{}, fmt.Errorf("bad sha256 %q", fields[3])
		}
		e.SHA256 = fields[3]
	}
	rest := fields[4]
	rel, tail, err := unquotePrefix(rest)
	if err != nil {
		return "", Entry{}, fmt.Errorf("bad path: %v", err)
	}
	if err := checkRel(rel); err != nil {
		return "", Entry{}, err
	}
	switch e.Type {
	case 'f':
		if e.SHA256 == "" || tail != "" {
			return "", Entry{}, fmt.Errorf("malformed file entry")
		}
	case 'd':
		if tail != "" {
			return "", Entry{}, fmt.Errorf("malformed directory entry")
		}
	case 'l':
		tail = strings.TrimPrefix(tail, " ")
		link, more, err := unquotePrefix(tail)
		if err != nil || more != "" {
			return "", Entry{}, fmt.Errorf("bad link target")
		}
		e.Link = link
	default:
		return "", Entry{}, fmt.Errorf("unknown type %q", e.Type)
	}
	return rel, e, nil
}

// unquotePrefix reads one Go-quoted string at the start of s.
func unquotePrefix(s string) (string, string, error) {
	q, err := strconv.QuotedPrefix(s)
	if err != nil {
		return "", "", err
	}
	v, err := strconv.Unquote(q)
	return v, s[len(q):], err
}

// checkRel refuses paths a manifest must never hold: they would make a
// delta delete or write outside the release.
func checkRel(rel string) error {
	if rel == "" || strings.HasPrefix(rel, "/") || strings.IndexByte(rel, 0) >= 0 {
		return fmt.Errorf("path %q is not inside the release", rel)
	}
	for _, part := range strings.Split(rel, "/") {
		if part == ".." || part == "." || part == "" {
			return fmt.Errorf("path %q is not inside the release", rel)
		}
	}
	return nil
}

// Delta builds the new release from the live one on a host: entries that
// did not change are copied from the live release (cheap, and nothing goes
// over the network), the rest is sent. Directories are always sent (they
// are small), so their modes are exact. Entries under keep-out paths
// (shared links in the live release) are always sent, never copied, so no
// copy ever reads or writes through a link.
type Delta struct {
	Copy []string // unchanged files and symlinks, copied from the live release
	// CopyTree is Copy with the unchanged directories, in tree order
	// (every directory before what it holds): the list for a copier that
	// does not make parent directories itself.
	CopyTree []string
	Send     []File // entries to write from the upload stream
	Removed  int    // entries of the live release the new one no longer has
	Bytes    int64  // content bytes of Send
}

// Diff compares the tree with the live release's manifest; keepOut lists
// release paths that must not be copied (shared paths).
func (t *Tree) Diff(live map[string]Entry, keepOut []string) Delta {
	var d Delta
	// Parents of copied entries are made by the copy, with the live
	// release's modes; a directory is sent only when it is new, changed,
	// or would otherwise not exist (nothing copied inside it).
	madeByCopy := map[string]bool{}
	var dirs []File
	for _, f := range t.Files {
		have, ok := live[f.Rel]
		unchanged := ok && have == f.entry() && !under(f.Rel, keepOut)
		switch {
		case f.Mode.IsDir() && unchanged:
			dirs = append(dirs, f)
			d.CopyTree = append(d.CopyTree, f.Rel)
		case unchanged:
			d.Copy = append(d.Copy, f.Rel)
			d.CopyTree = append(d.CopyTree, f.Rel)
			for dir := path.Dir(f.Rel); dir != "."; dir = path.Dir(dir) {
				madeByCopy[dir] = true
			}
		default:
			d.Send = append(d.Send, f)
			d.Bytes += f.Size
		}
	}
	for _, dir := range dirs {
		if !madeByCopy[dir.Rel] {
			d.Send = append(d.Send, dir)
		}
	}
	for rel := range live {
		if _, ok := t.index()[rel]; !ok {
			d.Removed++
		}
	}
	return d
}

// index maps each path of the tree to its manifest entry.
// Hosts diff concurrently: the index is built once.
func (t *Tree) index() map[string]Entry {
	t.indexOnce.Do(func() {
		t.byRel = make(map[string]Entry, len(t.Files))
		for _, f := range t.Files {
			t.byRel[f.Rel] = f.entry()
		}
	})
	return t.byRel
}

// under reports whether rel is one of paths or inside one of them.
func under(rel string, paths []string) bool {
	for _, p := range paths {
		if rel == p || strings.HasPrefix(rel, p+"/") {
			return true
		}
	}
	return false
}

// Checklist is the input of `sha256sum -c` for the regular files among
// files, in its own escaping: a name with a backslash, newline or carriage
// return gets a leading backslash and those characters escaped.
func Checklist(files []File) []byte {
	var b bytes.Buffer
	for _, f := range files {
		if !f.Mode.IsRegular() {
			continue
		}
		name := f.Rel
		if strings.ContainsAny(name, "\\\n\r") {
			name = strings.NewReplacer("\\", "\\\\", "\n", "\\n", "\r", "\\r").Replace(name)
			b.WriteByte('\\')
		}
		fmt.Fprintf(&b, "%s  %s\n", f.SHA256, name)
	}
	return b.Bytes()
}
