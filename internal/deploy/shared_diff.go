package deploy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/shell"
)

// slipway shared diff and pull, and the comparison shared push shows
// before it writes: each host's copy of a shared file is known by its
// SHA-256 (read with the host's state, see sharedSumsScript), the hosts
// holding the same copy are grouped, and each distinct copy is fetched
// once, from one of them, to be diffed against the local file. Every line
// shown passes through a masker first: a diff never prints a secret.

// SharedLocal is a local file compared with a shared file of the hosts.
type SharedLocal struct {
	Name string // the shared file, as shared.files lists it
	Path string // the local file
}

// SharedDiff compares a local file with every host's copy of a shared
// file.
type SharedDiff struct {
	Name     string `json:"name"`
	Path     string `json:"path"`  // the shared file on the hosts
	Local    string `json:"local"` // the local file
	LocalSum string `json:"local_sha256"`
	// Copies are the hosts grouped by their copy, in the stage order of
	// each group's first host.
	Copies []SharedCopy `json:"copies"`
}

// SharedCopy is the hosts that hold one copy of a shared file.
type SharedCopy struct {
	Hosts []string `json:"hosts"`
	// Sum is the copy's SHA-256; "" where the hosts have no such file,
	// "?" where they could not read it.
	Sum  string `json:"sha256"`
	Same bool   `json:"same"` // identical to the local file
	// Diff is the unified diff from the hosts' copy to the local file,
	// secrets masked, without the --- and +++ lines; nil when Same or when
	// Note says why it is not shown.
	Diff []string `json:"diff,omitempty"`
	Note string   `json:"note,omitempty"`
}

// Differs reports whether some host's copy is not the local file.
func (d *SharedDiff) Differs() bool { return len(d.Differing()) > 0 }

// Differing are the hosts whose copy is not the local file, in stage order
// of the groups.
func (d *SharedDiff) Differing() []string {
	var hosts []string
	for _, c := range d.Copies {
		if !c.Same {
			hosts = append(hosts, c.Hosts...)
		}
	}
	return hosts
}

// errNoSharedFiles refuses a selection of hosts that take no releases
// (no_release), so hold no shared files.
var errNoSharedFiles = errors.New("none of the selected hosts takes releases, so none has shared files")

// maxSharedDiff is the largest file a diff shows: a larger one is said to
// differ, not shown. Shared files are configuration, a few KB.
const maxSharedDiff = 1 << 20

// diffContext is how many unchanged lines a hunk shows around a change.
const diffContext = 3

// DiffShared compares each local file with every selected host's copy of
// its shared file. It takes no lock and changes nothing.
func DiffShared(ctx context.Context, opts Options, locals []SharedLocal) ([]*SharedDiff, error) {
	r := newRun(ctx, opts)
	if r.primary() == nil {
		return nil, errNoSharedFiles
	}
	var names []string
	for _, l := range locals {
		names = append(names, l.Name)
	}
	compare := &compareSharedStep{r: r, locals: locals}
	steps := []Step{perHost(connectStep{r: r}), perHost(inspectStep{r: r, sums: names}), fleetWide(compare)}
	if err := r.pipeline(steps); err != nil {
		return nil, err
	}
	return compare.diffs, nil
}

// compareSharedStep builds the SharedDiff of each local file against the
// hosts' copies.
type compareSharedStep struct {
	r      *run
	locals []SharedLocal
	diffs  []*SharedDiff
}

func (compareSharedStep) Name() string { return "compare" }

func (s *compareSharedStep) RunFleet(ctx context.Context, targets []*Target) error {
	m := newMasker(s.r.opts.Config)
	s.diffs = nil
	for _, local := range s.locals {
		lc, err := readLocalCopy(local.Path)
		if err != nil {
			return err
		}
		var copies []hostCopy
		byName := map[string]*Target{}
		for _, t := range withState(targets) {
			copies = append(copies, hostCopy{host: t.Name(), sum: t.State.SharedSums[local.Name]})
			byName[t.Name()] = t
		}
		fetch := func(hostName string) ([]byte, error) {
			return fetchShared(ctx, byName[hostName], s.r.layout.SharedPath(local.Name), maxSharedDiff+1, nil)
		}
		d, err := diffShared(local, s.r.layout.SharedPath(local.Name), lc, copies, fetch, m)
		if err != nil {
			return err
		}
		s.diffs = append(s.diffs, d)
	}
	return nil
}

// localCopy is what a diff needs of a local file.
type localCopy struct {
	sum  string
	size int64
	head []byte // its first maxSharedDiff+1 bytes
}

func readLocalCopy(path string) (localCopy, error) {
	f, err := os.Open(path)
	if err != nil {
		return localCopy{}, err
	}
	defer f.Close()
	h := sha256.New()
	var head bytes.Buffer
	n, err := io.Copy(io.MultiWriter(h, &limitedBuffer{buf: &head, limit: maxSharedDiff + 1}), f)
	if err != nil {
		return localCopy{}, fmt.Errorf("reading %s: %w", path, err)
	}
	return localCopy{sum: hex.EncodeToString(h.Sum(nil)), size: n, head: head.Bytes()}, nil
}

// limitedBuffer keeps the first limit bytes written to it and takes (and
// drops) the rest.
type limitedBuffer struct {
	buf   *bytes.Buffer
	limit int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.limit - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

// hostCopy is one host's copy of a shared file, by its checksum.
type hostCopy struct {
	host string
	sum  string
}

// diffShared groups the hosts by their copy and diffs each distinct copy
// against the local one. fetch reads the first maxSharedDiff+1 bytes of a
// host's copy; it is called once per distinct copy that differs.
func diffShared(local SharedLocal, hostPath string, lc localCopy, hosts []hostCopy, fetch func(host string) ([]byte, error), m masker) (*SharedDiff, error) {
	d := &SharedDiff{Name: local.Name, Path: hostPath, Local: local.Path, LocalSum: lc.sum, Copies: []SharedCopy{}}
	index := map[string]int{}
	for _, h := range hosts {
		i, ok := index[h.sum]
		if !ok {
			i = len(d.Copies)
			index[h.sum] = i
			d.Copies = append(d.Copies, SharedCopy{Sum: h.sum, Same: h.sum == lc.sum})
		}
		d.Copies[i].Hosts = append(d.Copies[i].Hosts, h.host)
	}
	localText, localShown := showable(lc.head)
	for i := range d.Copies {
		c := &d.Copies[i]
		switch {
		case c.Same:
			continue
		case c.Sum == sumUnreadable:
			c.Note = "the host could not read its copy (permissions?)"
			continue
		case !localShown:
			c.Note = "binary or larger than 1 MiB: not shown"
			continue
		}
		var hostText string
		if c.Sum != "" {
			body, err := fetch(c.Hosts[0])
			if err != nil {
				return nil, fmt.Errorf("reading %s on %s: %w", hostPath, c.Hosts[0], err)
			}
			text, ok := showable(body)
			if !ok {
				c.Note = "the hosts' copy is binary or larger than 1 MiB: not shown"
				continue
			}
			hostText = text
		} else {
			c.Note = "no copy yet"
		}
		c.Diff = unifiedDiff(hostText, localText, m)
	}
	return d, nil
}

// showable is content as text, when a diff can show it: UTF-8 without NUL
// bytes, at most maxSharedDiff bytes.
func showable(b []byte) (string, bool) {
	if len(b) > maxSharedDiff || !utf8.Valid(b) || bytes.IndexByte(b, 0) >= 0 {
		return "", false
	}
	return string(b), true
}

// fetchShared reads up to limit bytes of path on t (all of it when limit
// is 0) into w, or returns them when w is nil. The content never goes
// through the Result, so -v, which shows what scripts print, cannot show
// it.
func fetchShared(ctx context.Context, t *Target, path string, limit int, w io.Writer) ([]byte, error) {
	var buf bytes.Buffer
	out := w
	if out == nil {
		out = &buf
	}
	script := shell.Script("cat -- {{path}}", shell.Args{"path": path})
	if limit > 0 {
		script = shell.Script("head -c {{limit}} -- {{path}}", shell.Args{"limit": limit, "path": path})
	}
	_, err := t.Exec.Query(ctx, host.Command{Script: script, Stdout: out})
	return buf.Bytes(), err
}

// PullShared writes the primary host's copy of the shared file name to w
// (the CLI selects the host). It takes no lock and changes nothing; the
// copy is checked against the checksum read with the host's state, so a
// file replaced while it was read is an error, not a mix.
func PullShared(ctx context.Context, opts Options, name string, w io.Writer) (host string, err error) {
	r := newRun(ctx, opts)
	primary := r.primary()
	if primary == nil {
		return "", errNoSharedFiles
	}
	pull := stepFunc{name: "pull", fn: func(ctx context.Context, t *Target) error {
		if t != primary {
			return nil
		}
		path := r.layout.SharedPath(name)
		switch want := t.State.SharedSums[name]; want {
		case "":
			return fmt.Errorf("%s does not exist (or is not a regular file) on %s", path, t.Name())
		case sumUnreadable:
			return fmt.Errorf("%s cannot be read on %s (permissions?)", path, t.Name())
		default:
			h := sha256.New()
			if _, err := fetchShared(ctx, t, path, 0, io.MultiWriter(w, h)); err != nil {
				return err
			}
			if got := hex.EncodeToString(h.Sum(nil)); got != want {
				return fmt.Errorf("%s changed on %s while it was read; pull again", path, t.Name())
			}
		}
		return nil
	}}
	steps := []Step{perHost(connectStep{r: r}), perHost(inspectStep{r: r, sums: []string{name}}), perHost(pull)}
	return primary.Name(), r.pipeline(steps)
}

// secretKeyWords make the value of a KEY=value (or key: value) line a
// secret when its key contains one of them, in any case.
var secretKeyWords = []string{"PASSWORD", "SECRET", "TOKEN", "KEY", "PRIVATE", "CREDENTIAL"}

// assignmentRE is a line that sets a value: KEY=value, export KEY=value,
// key: value, "key": value.
var assignmentRE = regexp.MustCompile(`^(\s*(?:export\s+)?["']?)([A-Za-z_][A-Za-z0-9_.-]*)(["']?\s*(?:=|:(?:\s|$))\s*)(.*)$`)

// masker hides secrets in the lines of a shared file before they are
// shown: the values of keys that name a secret (shown as KEY=***, so a
// diff still says the line changed), private keys in PEM blocks, and any
// value of a secret env variable of slipway.yml.
type masker struct {
	values []string // secret env values, longest first
}

func newMasker(cfg *config.Config) masker {
	var m masker
	for _, v := range cfg.Env {
		// As hook output is masked: shorter values would mask everything.
		if v.Secret && len(v.Value) >= 3 {
			m.values = append(m.values, v.Value)
		}
	}
	slices.SortFunc(m.values, func(a, b string) int { return len(b) - len(a) })
	return m
}

// lines returns each line of lines (with or without its newline) as it
// may be shown, without its line ending. A secret value that goes on over
// several lines (a quoted multi-line value, a PEM block) is masked whole.
func (m masker) lines(lines []string) []string {
	out := make([]string, len(lines))
	var closing string // what ends the secret block the line is in; "" outside one
	for i, raw := range lines {
		line := strings.TrimSuffix(strings.TrimSuffix(raw, "\n"), "\r")
		shown := line
		switch {
		case closing != "":
			shown = "***"
			if strings.Contains(line, closing) {
				if closing == "-----END" {
					shown = line
				}
				closing = ""
			}
		default:
			if sub := assignmentRE.FindStringSubmatch(line); sub != nil && secretKey(sub[2]) && strings.TrimSpace(sub[4]) != "" {
				shown = sub[1] + sub[2] + sub[3] + "***"
				value := sub[4]
				if q := value[:1]; (q == `"` || q == "'") && !strings.Contains(value[1:], q) {
					closing = q // the value goes on to the line with its closing quote
				}
			} else if strings.Contains(line, "-----BEGIN") && strings.Contains(line, "PRIVATE KEY") {
				closing = "-----END"
			}
		}
		for _, v := range m.values {
			shown = strings.ReplaceAll(shown, v, "***")
		}
		out[i] = shown
	}
	return out
}

func secretKey(key string) bool {
	upper := strings.ToUpper(key)
	for _, word := range secretKeyWords {
		if strings.Contains(upper, word) {
			return true
		}
	}
	return false
}

// splitLines splits text after each newline; the last line has none when
// the text does not end with one.
func splitLines(text string) []string {
	var lines []string
	for text != "" {
		i := strings.IndexByte(text, '\n')
		if i < 0 {
			lines = append(lines, text)
			break
		}
		lines = append(lines, text[:i+1])
		text = text[i+1:]
	}
	return lines
}

// unifiedDiff is the diff from old to new in unified form (hunks with
// diffContext lines around each change), every line masked by m.
func unifiedDiff(old, new string, m masker) []string {
	a, b := splitLines(old), splitLines(new)
	shownA, shownB := m.lines(a), m.lines(b)
	edits := lineEdits(a, b)
	var out []string
	for _, h := range hunks(edits) {
		first := edits[h.start]
		var countA, countB int
		for _, e := range edits[h.start:h.end] {
			if e.op != opInsert {
				countA++
			}
			if e.op != opDelete {
				countB++
			}
		}
		out = append(out, fmt.Sprintf("@@ -%s +%s @@", hunkRange(first.a, countA), hunkRange(first.b, countB)))
		for _, e := range edits[h.start:h.end] {
			raw, shown := a, shownA
			i := e.a
			if e.op == opInsert {
				raw, shown, i = b, shownB, e.b
			}
			out = append(out, string(e.op)+shown[i])
			if !strings.HasSuffix(raw[i], "\n") {
				out = append(out, `\ No newline at end of file`)
			}
		}
	}
	return out
}

// hunkRange is one side of a hunk header: its first line, 1-based, and
// its count; an empty side names the line before it, as diff -u does.
func hunkRange(start, count int) string {
	if count == 0 {
		return fmt.Sprintf("%d,0", start)
	}
	if count == 1 {
		return fmt.Sprintf("%d", start+1)
	}
	return fmt.Sprintf("%d,%d", start+1, count)
}

type diffOp byte

const (
	opEqual  diffOp = ' '
	opDelete diffOp = '-'
	opInsert diffOp = '+'
)

// diffEdit is one line of an edit script: a line of a kept (opEqual),
// removed (opDelete), or a line of b added (opInsert). a and b are where
// the edit is in each sequence.
type diffEdit struct {
	op   diffOp
	a, b int
}

type hunk struct{ start, end int } // edits[start:end]

// hunks groups the changes of edits with diffContext lines around them;
// changes closer than twice that share a hunk.
func hunks(edits []diffEdit) []hunk {
	var out []hunk
	for i := 0; i < len(edits); {
		if edits[i].op == opEqual {
			i++
			continue
		}
		start := max(0, i-diffContext)
		end := i
		for end < len(edits) {
			if edits[end].op != opEqual {
				end++
				continue
			}
			run := end
			for run < len(edits) && edits[run].op == opEqual {
				run++
			}
			if run == len(edits) || run-end > 2*diffContext {
				end = min(end+diffContext, len(edits))
				break
			}
			end = run
		}
		out = append(out, hunk{start, end})
		i = end
	}
	return out
}

// maxEditDistance bounds the search for the shortest edit script (and its
// memory, which grows with its square); two files further apart are shown
// as the differing middle removed, then added.
const maxEditDistance = 1000

// lineEdits is a shortest edit script from a to b (Myers' algorithm, after
// the common head and tail), with the removals of each change before its
// additions.
func lineEdits(a, b []string) []diffEdit {
	head := 0
	for head < len(a) && head < len(b) && a[head] == b[head] {
		head++
	}
	tail := 0
	for tail < len(a)-head && tail < len(b)-head && a[len(a)-1-tail] == b[len(b)-1-tail] {
		tail++
	}
	var out []diffEdit
	for i := range head {
		out = append(out, diffEdit{opEqual, i, i})
	}
	for _, e := range shortestEdits(a[head:len(a)-tail], b[head:len(b)-tail]) {
		out = append(out, diffEdit{e.op, e.a + head, e.b + head})
	}
	for i := range tail {
		out = append(out, diffEdit{opEqual, len(a) - tail + i, len(b) - tail + i})
	}
	return removalsFirst(out)
}

// shortestEdits is Myers' O((N+M)D) search, keeping each round's frontier
// to walk the path back.
func shortestEdits(a, b []string) []diffEdit {
	n, m := len(a), len(b)
	if n == 0 || m == 0 {
		return replaceAll(n, m)
	}
	limit := min(n+m, maxEditDistance)
	off := limit + 1
	v := make([]int, 2*limit+3) // v[off+k]: the furthest x reached on diagonal k
	var trace [][]int           // trace[d]: v[off-d-1 : off+d+2] before round d
	for d := 0; d <= limit; d++ {
		trace = append(trace, slices.Clone(v[off-d-1:off+d+2]))
		for k := -d; k <= d; k += 2 {
			var x int
			if k == -d || (k != d && v[off+k-1] < v[off+k+1]) {
				x = v[off+k+1]
			} else {
				x = v[off+k-1] + 1
			}
			y := x - k
			for x < n && y < m && a[x] == b[y] {
				x, y = x+1, y+1
			}
			v[off+k] = x
			if x >= n && y >= m {
				return walkBack(trace, n, m, d)
			}
		}
	}
	return replaceAll(n, m)
}

// walkBack follows the search of shortestEdits back from (n, m), which it
// reached in round end.
func walkBack(trace [][]int, n, m, end int) []diffEdit {
	var rev []diffEdit
	x, y := n, m
	for d := end; d > 0; d-- {
		at := func(k int) int { return trace[d][k+d+1] }
		k := x - y
		prevK := k - 1
		if k == -d || (k != d && at(k-1) < at(k+1)) {
			prevK = k + 1
		}
		prevX := at(prevK)
		prevY := prevX - prevK
		for x > prevX && y > prevY {
			x, y = x-1, y-1
			rev = append(rev, diffEdit{opEqual, x, y})
		}
		if x == prevX {
			y--
			rev = append(rev, diffEdit{opInsert, x, y})
		} else {
			x--
			rev = append(rev, diffEdit{opDelete, x, y})
		}
	}
	for x > 0 && y > 0 {
		x, y = x-1, y-1
		rev = append(rev, diffEdit{opEqual, x, y})
	}
	slices.Reverse(rev)
	return rev
}

// replaceAll removes all n lines of a, then adds all m lines of b.
func replaceAll(n, m int) []diffEdit {
	var out []diffEdit
	for i := range n {
		out = append(out, diffEdit{opDelete, i, 0})
	}
	for j := range m {
		out = append(out, diffEdit{opInsert, n, j})
	}
	return out
}

// removalsFirst orders each run of changes as diff -u shows it: the
// removed lines, then the added ones.
func removalsFirst(edits []diffEdit) []diffEdit {
	out := make([]diffEdit, 0, len(edits))
	for i := 0; i < len(edits); {
		if edits[i].op == opEqual {
			out = append(out, edits[i])
			i++
			continue
		}
		j := i
		for j < len(edits) && edits[j].op != opEqual {
			j++
		}
		for _, e := range edits[i:j] {
			if e.op == opDelete {
				out = append(out, e)
			}
		}
		for _, e := range edits[i:j] {
			if e.op == opInsert {
				out = append(out, e)
			}
		}
		i = j
	}
	return out
}
