package config

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Error is a configuration error at a place in the file.
//
// Messages quote every value taken from the file with %q and are clipped
// to a few lines, and the snippet replaces control characters, so printing
// an Error cannot let a hostile slipway.yml drive or flood the user's
// terminal.
type Error struct {
	File      string
	Line, Col int    // 1-based, in characters; 0 when the error is about the whole file
	Msg       string // what is wrong
	Fix       string // what to do
	// Snippet is the offending line and the one before it, with a caret
	// under Col, ready to print; "" when there is no line to show.
	Snippet string
	// Err is the underlying cause (an I/O error), so errors.Is(err,
	// fs.ErrNotExist) works through an Error.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Col)
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	if e.Fix != "" {
		b.WriteString("\n  fix: ")
		b.WriteString(e.Fix)
	}
	if e.Snippet != "" {
		b.WriteString("\n")
		b.WriteString(e.Snippet)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// maxErrors bounds how many problems one Load reports: enough to fix a file
// in one pass, not so many that the first scrolls away.
const maxErrors = 10

// problem is an Error before it gets its snippet; snippets are only rendered
// for the problems that are reported.
type problem struct {
	at       pos
	msg, fix string
}

// pos is a place in the file, 1-based, counted in characters as go-yaml
// counts them.
type pos struct{ line, col int }

// report turns the problems into the error Load returns: the first ones in
// file order, each with its snippet.
func report(file string, src []byte, problems []problem) error {
	if len(problems) == 0 {
		return nil
	}
	slices.SortStableFunc(problems, func(a, b problem) int {
		return cmp.Or(cmp.Compare(a.at.line, b.at.line), cmp.Compare(a.at.col, b.at.col))
	})
	problems = problems[:min(len(problems), maxErrors)]
	lines := strings.Split(string(src), "\n")
	errs := make([]error, len(problems))
	for i, p := range problems {
		errs[i] = &Error{
			File: file, Line: p.at.line, Col: p.at.col,
			Msg: clip(p.msg), Fix: clip(p.fix),
			Snippet: snippet(lines, p.at),
		}
	}
	return joinErrors(errs)
}

// maxMessage bounds a message or fix: they quote values from the file,
// and a key a megabyte long must not make a megabyte of message.
const maxMessage = 300

func clip(s string) string {
	if utf8.RuneCountInString(s) <= maxMessage {
		return s
	}
	return string([]rune(s)[:maxMessage]) + "..."
}

// snippetWidth is how much of a long line the snippet shows around the
// caret; a minified one-line file must not print a megabyte.
const snippetWidth = 100

// snippet renders the line at p and the one before it, go-task style:
//
//	   11 |   production:
//	>  12 |     kep_releases: 3
//	      |     ^
func snippet(lines []string, p pos) string {
	if p.line < 1 || p.line > len(lines) {
		return ""
	}
	width := len(strconv.Itoa(p.line))
	var b strings.Builder
	if p.line > 1 {
		text, _ := window(lines[p.line-2], p.col)
		fmt.Fprintf(&b, "   %*d | %s\n", width, p.line-1, text)
	}
	text, caret := window(lines[p.line-1], p.col)
	fmt.Fprintf(&b, " > %*d | %s\n", width, p.line, text)
	fmt.Fprintf(&b, "   %*s | %s^", width, "", strings.Repeat(" ", caret))
	return b.String()
}

// window returns the printable part of line around column col and how many
// characters precede col in it. Tabs become one space, as go-yaml counts a
// tab as one column; other control and format characters become '?'.
func window(line string, col int) (string, int) {
	runes := []rune(strings.TrimSuffix(line, "\r"))
	for i, r := range runes {
		switch {
		case r == '\t':
			runes[i] = ' '
		case !unicode.IsPrint(r) && r != ' ':
			runes[i] = '?'
		}
	}
	caret := min(max(col-1, 0), len(runes))
	if len(runes) <= snippetWidth {
		return string(runes), caret
	}
	start := max(0, min(caret-snippetWidth/2, len(runes)-snippetWidth))
	end := start + snippetWidth
	text := string(runes[start:end])
	caret -= start
	if start > 0 {
		text = "..." + text
		caret += 3
	}
	if end < len(runes) {
		text += "..."
	}
	return text, caret
}

// joinErrors returns the only error as itself, so callers printing one
// problem see exactly that Error, and several with errors.Join.
func joinErrors(errs []error) error {
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

// suggest picks the candidate closest to word, if one is close enough to be
// a typo of it: a different case, '-' for '_', or a couple of slips.
func suggest(word string, candidates []string) (string, bool) {
	const longest = 64 // longer than any key plus slips; spares measuring a huge word
	if len(word) > longest {
		return "", false
	}
	norm := normalizeKey(word)
	best, bestDist := "", 0
	for _, c := range candidates {
		d := editDistance(norm, c)
		if best == "" || d < bestDist {
			best, bestDist = c, d
		}
	}
	if best == "" || bestDist > max(1, min(3, utf8.RuneCountInString(best)/3)) {
		return "", false
	}
	return best, true
}

func normalizeKey(s string) string {
	return strings.NewReplacer("-", "_", " ", "_").Replace(strings.ToLower(s))
}

// editDistance is the Levenshtein distance.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}
