package cli

import (
	"bytes"
	"context"
	"runtime/debug"
	"strings"
	"testing"
)

func TestVersionFlagAndCommandPrintTheStampedVersion(t *testing.T) {
	stamped := Version
	Version = "v9.8.7-test"
	t.Cleanup(func() { Version = stamped })
	var outputs []string
	for _, args := range [][]string{{"--version"}, {"version"}} {
		var out, errOut bytes.Buffer
		if code := Main(context.Background(), args, IO{In: strings.NewReader(""), Out: &out, Err: &errOut}); code != ExitOK {
			t.Fatalf("slipway %s: exit %d\n%s", args[0], code, errOut.String())
		}
		if !strings.HasPrefix(out.String(), "slipway v9.8.7-test") || !strings.HasSuffix(out.String(), "\n") || strings.Count(out.String(), "\n") != 1 {
			t.Errorf("slipway %s printed %q", args[0], out.String())
		}
		outputs = append(outputs, out.String())
	}
	if outputs[0] != outputs[1] {
		t.Errorf("--version printed %q, version %q", outputs[0], outputs[1])
	}
	// -v stays --verbose.
	var out, errOut bytes.Buffer
	if code := Main(context.Background(), []string{"-v", "version"}, IO{In: strings.NewReader(""), Out: &out, Err: &errOut}); code != ExitOK || out.String() != outputs[1] {
		t.Errorf("slipway -v version: exit %d, %q", code, out.String())
	}
}

func TestVersionWithoutAStamp(t *testing.T) {
	module := func(v string) *debug.BuildInfo {
		return &debug.BuildInfo{Main: debug.Module{Path: "github.com/slipway-deploy/slipway", Version: v}}
	}
	for _, tc := range []struct {
		stamped string
		info    *debug.BuildInfo
		want    string
	}{
		{"v1.2.3", module("v1.0.0"), "v1.2.3"}, // make build, make dist
		{"", module("v1.0.0"), "v1.0.0"},       // go install ...@v1.0.0
		{"", module("v0.0.0-20261129102207-2cf0789cf22a"), "v0.0.0-20261129102207-2cf0789cf22a"}, // go build in a checkout
		{"", module("(devel)"), "dev"}, // -buildvcs=false, or outside git
		{"", nil, "dev"},
	} {
		if got := version(tc.stamped, tc.info); got != tc.want {
			t.Errorf("version(%q, %v) = %q, want %q", tc.stamped, tc.info, got, tc.want)
		}
	}
}
