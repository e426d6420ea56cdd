package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestClientBuildsForWindowsAndMacOS cross-compiles slipway: the client
// must build wherever people deploy from, even where a part of it (the
// local host, on Windows) only says it cannot work there.
func TestClientBuildsForWindowsAndMacOS(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiling takes a while; not in -short runs")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH")
	}
	for _, target := range []struct{ goos, goarch string }{{"windows", "amd64"}, {"darwin", "arm64"}} {
		t.Run(target.goos+"/"+target.goarch, func(t *testing.T) {
			cmd := exec.Command(goTool, "build", "-o", os.DevNull, ".")
			cmd.Env = append(os.Environ(), "GOOS="+target.goos, "GOARCH="+target.goarch, "CGO_ENABLED=0")
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("GOOS=%s GOARCH=%s go build ./cmd/slipway: %v\n%s", target.goos, target.goarch, err, strings.TrimSpace(string(out)))
			}
		})
	}
}
