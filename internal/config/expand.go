package config

import (
	"fmt"
	"regexp"
	"strings"
)

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// expand replaces each ${NAME} in s with the environment's value; an unset
// NAME is an error so a missing secret never deploys as "". $${ stands for
// a literal ${, and a bare $NAME is left as written, because hooks carry
// shell variables that are meant for the remote shell.
//
// A returned problem has no position: the caller knows where s came from.
func expand(s string, lookup func(string) (string, bool)) (string, *problem) {
	if !strings.Contains(s, "${") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		rest := s[i:]
		switch {
		case strings.HasPrefix(rest, "$${"):
			b.WriteString("${")
			i += len("$${")
		case strings.HasPrefix(rest, "${"):
			end := strings.IndexByte(rest, '}')
			if end < 0 {
				return "", &problem{msg: fmt.Sprintf("%q has a ${ without its closing }", s),
					fix: "write ${NAME} to use an environment variable, or $${ for a literal ${"}
			}
			name := rest[len("${"):end]
			if !envNameRE.MatchString(name) {
				return "", &problem{msg: fmt.Sprintf("%q is not an environment variable reference slipway can expand", rest[:end+1]),
					fix: "write ${NAME} with a NAME of letters, digits and _ (no defaults or other shell forms), or $${ for a literal ${"}
			}
			value, ok := lookup(name)
			if !ok {
				return "", &problem{msg: fmt.Sprintf("environment variable %s is not set", name),
					fix: fmt.Sprintf("export %s=... before running slipway, or write $${%s} for a literal ${%s}", name, name, name)}
			}
			b.WriteString(value)
			i += end + 1
		default:
			b.WriteByte(s[i])
			i++
		}
	}
	return b.String(), nil
}
