package source

import (
	"fmt"
	"path"
	"strings"
)

// Excluder decides which paths of the app stay behind. Patterns follow
// .gitignore's rules, the ones deploy configs are written in:
//
//   - a pattern without a slash matches a name at any depth ("*.log", ".git");
//   - a pattern with a slash in it, or a leading one, is anchored to the root
//     of the shipped directory ("/config/local.php", "docs/internal");
//   - a trailing slash matches directories only ("tests/");
//   - "*", "?" and "[...]" match within one path element, "**" across any
//     number of them ("**/cache", "assets/**/*.map");
//   - an excluded directory is skipped with everything below it.
type Excluder struct {
	patterns []excludePattern
}

type excludePattern struct {
	raw      string
	elems    []string // pattern split on "/"
	anchored bool
	dirOnly  bool
}

// NewExcluder compiles patterns, refusing ones that can never match so a
// typo does not silently ship what was meant to stay behind.
func NewExcluder(patterns []string) (*Excluder, error) {
	e := &Excluder{}
	for _, raw := range patterns {
		p := excludePattern{raw: raw}
		s := raw
		if strings.HasSuffix(s, "/") {
			p.dirOnly = true
			s = strings.TrimRight(s, "/")
		}
		if strings.HasPrefix(s, "/") {
			p.anchored = true
			s = strings.TrimLeft(s, "/")
		}
		if s == "" || s == "." || s == ".." || strings.HasPrefix(s, "../") {
			return nil, fmt.Errorf("exclude pattern %q matches nothing; write a path inside the shipped directory, e.g. tests/ or *.log", raw)
		}
		if strings.Contains(s, "/") {
			p.anchored = true
		}
		p.elems = strings.Split(s, "/")
		for _, el := range p.elems {
			if _, err := path.Match(el, ""); err != nil {
				return nil, fmt.Errorf("exclude pattern %q: %v", raw, err)
			}
		}
		e.patterns = append(e.patterns, p)
	}
	return e, nil
}

// Excluded reports whether the path rel (slash-separated, relative to the
// shipped root) is excluded.
func (e *Excluder) Excluded(rel string, isDir bool) bool {
	elems := strings.Split(rel, "/")
	for _, p := range e.patterns {
		if p.dirOnly && !isDir {
			continue
		}
		if p.anchored {
			if matchElems(p.elems, elems) {
				return true
			}
			continue
		}
		// Unanchored: match the pattern against every suffix of the path,
		// that is, at any depth.
		for i := range elems {
			if matchElems(p.elems, elems[i:]) {
				return true
			}
		}
	}
	return false
}

// matchElems matches whole path elements, "**" standing for zero or more.
func matchElems(pattern, name []string) bool {
	if len(pattern) == 0 {
		return len(name) == 0
	}
	if pattern[0] == "**" {
		for i := 0; i <= len(name); i++ {
			if matchElems(pattern[1:], name[i:]) {
				return true
			}
		}
		return false
	}
	if len(name) == 0 {
		return false
	}
	ok, _ := path.Match(pattern[0], name[0])
	return ok && matchElems(pattern[1:], name[1:])
}
