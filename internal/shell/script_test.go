package shell

import (
	"os/exec"
	"strings"
	"testing"
)

func TestScriptQuotesEveryValue(t *testing.T) {
	for _, word := range hostile {
		script := Script(`printf '%s\n' {{word}} {{words}}; exit {{code}}`, Args{
			"word":  word,
			"words": []string{word, "x"},
			"code":  Raw("0"),
		})
		out, err := exec.Command("/bin/sh", "-c", script).Output()
		if err != nil {
			t.Fatalf("%q: %v (script %s)", word, err, script)
		}
		if want := word + "\n" + word + "\nx\n"; string(out) != want {
			t.Errorf("%q: sh printed %q, want %q (script %s)", word, out, want, script)
		}
	}
}

func TestScriptFillsRawAndNumbers(t *testing.T) {
	got := Script("head -c {{n}} {{big}} {{cond}}", Args{"n": 64, "big": int64(1) << 40, "cond": Raw("NR>1")})
	if got != "head -c 64 1099511627776 NR>1" {
		t.Errorf("got %q", got)
	}
	// Shell braces and ${} expansions are not placeholders.
	tmpl := `{ echo "${x}"; } || { s=$?; exit $s; }`
	if got := Script(tmpl, nil); got != tmpl {
		t.Errorf("got %q, want the template unchanged", got)
	}
}

func TestScriptPanicsOnProgramMistakes(t *testing.T) {
	for name, call := range map[string]func(){
		"missing value":  func() { Script("rm -- {{path}}", Args{}) },
		"unclosed":       func() { Script("rm -- {{path", Args{"path": "/x"}) },
		"unsupported":    func() { Script("echo {{v}}", Args{"v": 1.5}) },
		"NUL in a value": func() { Script("echo {{v}}", Args{"v": "a\x00"}) },
	} {
		func() {
			defer func() {
				if r := recover(); r == nil || !strings.Contains(r.(string), "shell.") {
					t.Errorf("%s: want a panic, got %v", name, r)
				}
			}()
			call()
		}()
	}
}
