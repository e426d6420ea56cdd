package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/lexer"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"
)

// maxFileSize bounds the input before any parsing: a deploy configuration
// is a few kilobytes, so a megabyte is a wrong file or an attack.
const maxFileSize = 1 << 20

// go-yaml's parser takes time quadratic in nesting depth (100 000 nested
// "[" take over a minute), in the number of keys of one block mapping
// (200 000 "a: 1" lines take as long), in the number of documents, and in
// the number of empty values, for each of which it inserts a token into
// the middle of the token slice (half a million "-" lines take 90 s). So
// the token stream is checked against bounds far above what slipway.yml
// needs before the parser sees it; a slipway.yml for a thousand hosts has
// some 20 000 tokens.
//
// Flow collections ([...] and {...}) are counted exactly. Block nesting
// cannot be deeper than the column its innermost "-", "?" or key starts
// at, since each block level is indented further than its parent, so a
// column bound is a depth bound. Keys are counted per column, and a token
// at a smaller column closes the mappings to its right: an overcount, never
// an undercount, of the keys of each mapping.
const (
	maxFlowDepth   = 64
	maxBlockColumn = 256
	maxMappingKeys = 1000
	maxTokens      = 100_000
	// A document may start with --- and end with ...; more markers mean
	// more documents.
	maxDocumentMarkers = 2
)

// syntaxFix is the advice for a file go-yaml cannot read.
const syntaxFix = "check the indentation (spaces, not tabs) and quote values that contain \": \", \" #\" or start with a YAML character such as [ { * & ! | >"

// parseYAML turns the file into the body of its single YAML document, or
// into the problem that stops it being read. A nil node is an empty file.
//
// Anchors and aliases are refused outright rather than expanded under a
// budget: a "billion laughs" file then fails at its first '&' before any
// expansion happens, and every error position points at text the user
// wrote for that very setting. slipway.yml has little to repeat anyway,
// since deploy_to is inherited by stages. Tags and "<<" merge keys go with
// them, as they only make sense with aliases or change a value's type
// behind the reader's back.
func parseYAML(src []byte) (ast.Node, *problem) {
	if p := checkText(src); p != nil {
		return nil, p
	}
	tokens := lexer.Tokenize(string(src))
	if p := checkTokens(tokens); p != nil {
		return nil, p
	}
	file, err := parser.Parse(tokens, 0, parser.AllowDuplicateMapKey())
	if err != nil {
		// go-yaml's errors carry the token they are about.
		var yamlErr interface {
			GetMessage() string
			GetToken() *token.Token
		}
		if errors.As(err, &yamlErr) {
			return nil, &problem{at: tokenPos(yamlErr.GetToken()), msg: "invalid YAML: " + printable(yamlErr.GetMessage()), fix: syntaxFix}
		}
		return nil, &problem{at: pos{1, 1}, msg: "invalid YAML: " + printable(err.Error()), fix: syntaxFix}
	}
	var body ast.Node
	for _, doc := range file.Docs {
		if _, directive := doc.Body.(*ast.DirectiveNode); doc.Body == nil || directive {
			continue // go-yaml gives a %YAML line a document of its own
		}
		if body != nil {
			at := posOf(doc.Body)
			if doc.Start != nil {
				at = tokenPos(doc.Start)
			}
			return nil, &problem{at: at, msg: "a second YAML document: slipway.yml holds one document",
				fix: "remove this --- and everything after it, or merge it into the first document"}
		}
		body = doc.Body
	}
	return body, nil
}

// checkText refuses what is not text before the lexer sees it: invalid
// UTF-8, NUL bytes, and control characters that would garble a terminal
// when a line of the file is shown in an error. Tabs and CR are let
// through for YAML to judge.
func checkText(src []byte) *problem {
	line, col := 1, 1
	for i := 0; i < len(src); {
		r, size := utf8.DecodeRune(src[i:])
		at := pos{line, col}
		switch {
		case r == utf8.RuneError && size == 1:
			return &problem{at: at, msg: "the file is not valid UTF-8", fix: "save slipway.yml as UTF-8 text"}
		case r == 0:
			return &problem{at: at, msg: "the file contains a NUL byte", fix: "remove it; slipway.yml must be a text file"}
		case r == '\n':
			line, col = line+1, 0
		case r == '\t' || r == '\r':
		case unicode.IsControl(r):
			return &problem{at: at, msg: fmt.Sprintf("the file contains the control character %U", r),
				fix: "remove it; inside double quotes an escape such as \\t writes a special character"}
		}
		i += size
		col++
	}
	return nil
}

// checkTokens applies the anchor and tag rules of parseYAML and the bounds
// that keep go-yaml's parser fast.
func checkTokens(tokens token.Tokens) *problem {
	depth, markers, counted := 0, 0, 0
	type mapping struct{ col, keys int }
	var open []mapping // block mappings that may still get keys, innermost last
	for _, tk := range tokens {
		at := tokenPos(tk)
		if tk.Type != token.CommentType { // comments do not reach the parser
			counted++
		}
		if counted > maxTokens {
			return &problem{at: at, msg: fmt.Sprintf("more than %d YAML tokens (keys, values, dashes, brackets)", maxTokens),
				fix: "a slipway.yml is much smaller; check that this is the right file"}
		}
		switch tk.Type {
		case token.InvalidType:
			return &problem{at: at, msg: "invalid YAML: " + printable(tk.Error), fix: syntaxFix}
		case token.AnchorType:
			return &problem{at: at, msg: "YAML anchors (&name) are not supported in slipway.yml",
				fix: "write the value out in full; a value that starts with & must be quoted"}
		case token.AliasType:
			return &problem{at: at, msg: "YAML aliases (*name) are not supported in slipway.yml",
				fix: "write the value out in full; a value that starts with *, such as the pattern *.log, must be quoted: \"*.log\""}
		case token.TagType:
			return &problem{at: at, msg: "YAML tags (!name) are not supported in slipway.yml",
				fix: "remove the tag; quote the value if it must be text, and quote any value that starts with !"}
		case token.MergeKeyType:
			return &problem{at: at, msg: "YAML merge keys (<<) are not supported in slipway.yml",
				fix: "write the keys out in full; stages inherit the top-level deploy_to without merging"}
		case token.SequenceStartType, token.MappingStartType:
			depth++
			if depth > maxFlowDepth {
				return &problem{at: at, msg: fmt.Sprintf("brackets nested more than %d deep", maxFlowDepth),
					fix: "slipway.yml needs only a few levels; check for unclosed [ or {"}
			}
		case token.SequenceEndType, token.MappingEndType:
			depth = max(depth-1, 0)
		case token.DocumentHeaderType, token.DocumentEndType:
			markers++
			if markers > maxDocumentMarkers {
				return &problem{at: at, msg: "more than one YAML document: slipway.yml holds one document",
					fix: "remove the extra --- or ... and what follows it"}
			}
		case token.SequenceEntryType, token.MappingKeyType, token.MappingValueType:
			if depth > 0 {
				break
			}
			start := at
			if tk.Type == token.MappingValueType && tk.Prev != nil && tokenPos(tk.Prev).line == at.line {
				start = tokenPos(tk.Prev) // the key, not its colon
			}
			if start.col > maxBlockColumn {
				return &problem{at: start, msg: fmt.Sprintf("indented more than %d columns", maxBlockColumn),
					fix: "slipway.yml needs only a few levels of indentation; check the indentation"}
			}
			for len(open) > 0 && open[len(open)-1].col > start.col {
				open = open[:len(open)-1]
			}
			if tk.Type != token.MappingValueType {
				break
			}
			if len(open) == 0 || open[len(open)-1].col != start.col {
				open = append(open, mapping{col: start.col})
			}
			open[len(open)-1].keys++
			if open[len(open)-1].keys > maxMappingKeys {
				return &problem{at: start, msg: fmt.Sprintf("more than %d keys in one mapping", maxMappingKeys),
					fix: "slipway.yml needs far fewer; check the indentation"}
			}
		}
	}
	return nil
}

func tokenPos(tk *token.Token) pos {
	if tk == nil || tk.Position == nil {
		return pos{1, 1}
	}
	return pos{tk.Position.Line, tk.Position.Column}
}

// posOf is where a node starts in the file. A block mapping's own token is
// its first colon, so a block mapping is placed at its first key instead.
func posOf(n ast.Node) pos {
	if n == nil {
		return pos{1, 1}
	}
	if m, ok := n.(*ast.MappingNode); ok && !m.IsFlowStyle && len(m.Values) > 0 {
		return tokenPos(m.Values[0].Key.GetToken())
	}
	return tokenPos(n.GetToken())
}

// printable escapes the control characters go-yaml quotes verbatim in its
// messages ("found character '\t' ..."), so an error prints as one clean
// line.
func printable(s string) string {
	var b strings.Builder
	for _, r := range s {
		if unicode.IsPrint(r) || r == ' ' {
			b.WriteRune(r)
			continue
		}
		q := strconv.QuoteRuneToASCII(r)
		b.WriteString(q[1 : len(q)-1])
	}
	return b.String()
}
