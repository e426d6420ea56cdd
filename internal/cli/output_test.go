package cli

import (
	"bytes"
	"testing"
)

func TestWriteJSONIndentsByTwoSpacesAndEndsWithANewline(t *testing.T) {
	var b bytes.Buffer
	if err := writeJSON(&b, map[string]any{"hosts": []string{"web1"}, "ok": true}); err != nil {
		t.Fatal(err)
	}
	want := "{\n  \"hosts\": [\n    \"web1\"\n  ],\n  \"ok\": true\n}\n"
	if b.String() != want {
		t.Errorf("writeJSON wrote %q, want %q", b.String(), want)
	}
}
