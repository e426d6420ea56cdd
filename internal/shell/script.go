package shell

import (
	"fmt"
	"strconv"
	"strings"
)

// Args are the values a Script template names. A string becomes one
// quoted word, a []string the words quoted and joined, an int its decimal
// digits, and Raw its text as it is: the only way to put unquoted text into
// a script, for fragments the program itself wrote (another script, an awk
// condition of line numbers).
type Args map[string]any

// Raw is script text that goes into a template unquoted.
type Raw string

// Script fills the {{name}} placeholders of tmpl with args, each quoted
// (see Args), so a script reads as the shell it becomes and no value can
// reach it unquoted. A placeholder without a value is a mistake in the
// program, not in its input: Script panics, and the tests that build every
// script find it. Values a template does not use are allowed (one set of
// values may serve the variants of a script).
func Script(tmpl string, args Args) string {
	var b strings.Builder
	rest := tmpl
	for {
		open := strings.Index(rest, "{{")
		if open < 0 {
			b.WriteString(rest)
			break
		}
		end := strings.Index(rest[open:], "}}")
		if end < 0 {
			panic(fmt.Sprintf("shell.Script: unclosed placeholder in %q", tmpl))
		}
		name := rest[open+2 : open+end]
		value, ok := args[name]
		if !ok {
			panic(fmt.Sprintf("shell.Script: no value for {{%s}}", name))
		}
		b.WriteString(rest[:open])
		b.WriteString(word(name, value))
		rest = rest[open+end+2:]
	}
	return b.String()
}

func word(name string, value any) string {
	switch v := value.(type) {
	case string:
		return Quote(v)
	case []string:
		return Join(v...)
	case Raw:
		return string(v)
	case int:
		return strconv.Itoa(v)
	case int64:
		return strconv.FormatInt(v, 10)
	}
	panic(fmt.Sprintf("shell.Script: {{%s}} is a %T; give a string, []string, int or Raw", name, value))
}
