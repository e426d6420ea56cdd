package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestClientBuildsForEveryReleaseTarget cross-compiles slipway for the six
// platforms a release ships (make dist, tools/dist/main.go's
// releaseTargets): the client must build wherever people deploy from,
// even where a part of it (the local host, on Windows) only says it cannot
// work there.
func TestClientBuildsForEveryReleaseTarget(t *testing.T) {
	if testing.Short() {
		t.Skip("cross-compiling takes a while; not in -short runs")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool on PATH")
	}
	for _, goos := range []string{"linux", "darwin", "windows"} {
		for _, goarch := range []string{"amd64", "arm64"} {
			t.Run(goos+"/"+goarch, func(t *testing.T) {
				cmd := exec.Command(goTool, "build", "-o", os.DevNull, ".")
				cmd.Env = append(os.Environ(), "GOOS="+goos, "GOARCH="+goarch, "CGO_ENABLED=0")
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Errorf("GOOS=%s GOARCH=%s go build ./cmd/slipway: %v\n%s", goos, goarch, err, strings.TrimSpace(string(out)))
				}
			})
		}
	}
}
