package config

import (
	"strings"
	"testing"
	"time"
)

func TestShapes(t *testing.T) {
	M := maxFileSize - 100
	var nest strings.Builder
	for nest.Len() < M {
		for i := 0; i < 120 && nest.Len() < M; i++ {
			nest.WriteString(strings.Repeat(" ", i*2) + "a" + "" + ":\n")
		}
	}
	var nestSeq strings.Builder
	for nestSeq.Len() < M {
		nestSeq.WriteString(strings.Repeat("- ", 120) + "x\n")
	}
	for name, src := range map[string]string{
		"long plain":   "app: " + strings.Repeat("x", M),
		"long dq":      "app: \"" + strings.Repeat("\\t", M/2-5) + "\"",
		"multiline":    "app: x\n" + strings.Repeat("  y\n", M/4),
		"literal":      "app: |\n" + strings.Repeat("  y\n", M/4),
		"comments":     strings.Repeat("# c\n", M/4),
		"docs":         strings.Repeat("---\n", M/4),
		"docs2":        strings.Repeat("a: 1\n---\n", M/9),
		"keys":         strings.Repeat("a: 1\n", M/5),
		"uniq keys":    func() string { var b strings.Builder; for i := 0; b.Len() < M; i++ { b.WriteString("k" + strings.Repeat("x", i%50) + string(rune('a'+i%26)) + ": 1\n") }; return b.String() }(),
		"block nest":   nest.String(),
		"seq nest":     nestSeq.String(),
		"hosts":        "app: x\ndeploy_to: /x\nstages:\n  p:\n    hosts:\n" + strings.Repeat("      - web1\n", M/13),
		"flow hosts":   "app: x\ndeploy_to: /x\nstages:\n  p:\n    hosts: [" + strings.Repeat("w, ", M/3) + "]\n",
		"shared":       "app: x\nshared:\n  dirs:\n" + strings.Repeat("    - a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q/r/s/t/u/v/w/x/y/z\n", M/60),
		"flow map":     "{" + strings.Repeat("a: b, ", M/6) + "}",
		"quotes":       strings.Repeat("'a': 'b'\n", M/9),
		"colons":       "app: " + strings.Repeat("a:", M/2),
		"dashes":       strings.Repeat("-", M),
		"question":     strings.Repeat("? ", M/2),
		"env":          "app: " + strings.Repeat("${A}", M/4),
		"env2":         "app: \"" + strings.Repeat("$${", M/3) + "\"",
		"bracket":      "app: [" + strings.Repeat("[]", M/2) + "]",
	} {
		start := time.Now()
		_, err := env(map[string]string{"A": "x"}).Parse("slipway.yml", []byte(src))
		es := "<nil>"
		if err != nil {
			es = strings.SplitN(err.Error(), "\n", 2)[0]
		}
		if len(es) > 100 {
			es = es[:100]
		}
		t.Logf("%-12s %8v %s", name, time.Since(start).Round(time.Millisecond), es)
	}
}
