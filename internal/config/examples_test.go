package config

import (
	"os"
	"path/filepath"
	"testing"
)

// TestExamplesLoad keeps every example configuration in the repository
// valid, so the documentation never shows a config slipway refuses.
func TestExamplesLoad(t *testing.T) {
	files, err := filepath.Glob("../../examples/*/slipway.yml")
	if err != nil || len(files) < 4 {
		t.Fatalf("examples: %v %v", files, err)
	}
	files = append(files, "../../slipway.yml")
	env := map[string]string{"SLACK_WEBHOOK": "https://hooks.slack.com/services/T0/B0/X"}
	for _, f := range files {
		loader := Loader{LookupEnv: func(name string) (string, bool) { v, ok := env[name]; return v, ok }}
		if _, err := loader.Load(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	if _, err := os.Stat("../../examples/site/index.html"); err != nil {
		t.Error("the demo site is missing")
	}
}
