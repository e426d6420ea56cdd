package shell

import (
	"bytes"
	"os/exec"
	"testing"
)

// hostile holds words that would run, split, glob or expand if they reached
// a shell unquoted.
var hostile = []string{
	"", " ", "plain", "with space", "it's", `"double"`, "$(touch /tmp/pwned)", "`id`",
	"$HOME", "${PATH}", "a;b", "a|b", "a&&b", "a\nb", "\ttab", "*", "?", "[a]", "~", "~root",
	"-rf", "--", "a=b", "\\", "'", "''", "'\\''", "!", "#comment", "\xff\xfe", "é",
	"{a,b}", "a>b", "<in", "$'\\x41'",
}

func TestQuoteRoundTripsThroughSh(t *testing.T) {
	for _, word := range hostile {
		got := echoThroughSh(t, word)
		if got != word {
			t.Errorf("Quote(%q) = %s: sh read it back as %q", word, Quote(word), got)
		}
	}
}

func TestJoinKeepsWordsApart(t *testing.T) {
	script := "printf '%s\\0' " + Join("a b", "$(x)", "", "-n")
	out, err := exec.Command("sh", "-c", script).Output()
	if err != nil {
		t.Fatal(err)
	}
	want := "a b\x00$(x)\x00\x00-n\x00"
	if string(out) != want {
		t.Fatalf("got %q, want %q", out, want)
	}
}

func TestQuoteLeavesSafeWordsReadable(t *testing.T) {
	for _, word := range []string{"releases/20261122103015", "/var/www/shop", "a-b_c.d", "user@host:22"} {
		if Quote(word) != word {
			t.Errorf("Quote(%q) = %s, want it unchanged", word, Quote(word))
		}
	}
	for _, word := range []string{"a=b", "~", "x y"} {
		if Quote(word) == word {
			t.Errorf("Quote(%q) left it unquoted", word)
		}
	}
}

func TestQuotePanicsOnNUL(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Quote accepted a NUL byte")
		}
	}()
	Quote("a\x00b")
}

func TestCheck(t *testing.T) {
	if Check("fine $(x)") != nil {
		t.Error("Check refused a string without NUL")
	}
	if Check("a\x00") == nil {
		t.Error("Check accepted a NUL byte")
	}
}

// FuzzQuote proves that for any input without NUL, sh reads Quote's output
// back as the input and nothing else runs.
func FuzzQuote(f *testing.F) {
	for _, word := range hostile {
		f.Add(word)
	}
	f.Fuzz(func(t *testing.T, word string) {
		if Check(word) != nil {
			return
		}
		if got := echoThroughSh(t, word); got != word {
			t.Fatalf("Quote(%q) = %s: sh read it back as %q", word, Quote(word), got)
		}
	})
}

// echoThroughSh has sh print the quoted word between markers, so anything
// that executed or split would show in the output.
func echoThroughSh(t *testing.T, word string) string {
	t.Helper()
	cmd := exec.Command("sh", "-c", "printf '<%s>' "+Quote(word))
	var stdout bytes.Buffer
	cmd.Stdout = &stdout
	if err := cmd.Run(); err != nil {
		t.Fatalf("sh failed on Quote(%q) = %s: %v", word, Quote(word), err)
	}
	out := stdout.String()
	if len(out) < 2 || out[0] != '<' || out[len(out)-1] != '>' {
		t.Fatalf("sh printed %q for Quote(%q): more than one word", out, word)
	}
	return out[1 : len(out)-1]
}
