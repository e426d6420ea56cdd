package scaffold

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway-deploy/slipway/internal/config"
)

func project(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "My Shop!")
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestDetectAndRenderEveryKind(t *testing.T) {
	tests := []struct {
		files  map[string]string
		kind   Kind
		recipe string
	}{
		{map[string]string{"composer.json": `{"require": {"laravel/framework": "^11.0"}}`}, Laravel, "laravel"},
		{map[string]string{"composer.json": `{"require": {"symfony/framework-bundle": "7.*"}}`}, Symfony, "symfony"},
		{map[string]string{"package.json": `{}`}, Node, ""},
		{map[string]string{"go.mod": "module x\n"}, Go, ""},
		{map[string]string{"public/index.html": "<h1>hi</h1>"}, Static, "static"},
		{map[string]string{"README": "?"}, Generic, ""},
	}
	for _, tt := range tests {
		dir := project(t, tt.files)
		p := Detect(dir)
		if p.Kind != tt.kind || p.App != "My-Shop" {
			t.Errorf("%v: detected %+v", tt.files, p)
			continue
		}
		yml := Render(p)
		if err := os.WriteFile(filepath.Join(dir, "slipway.yml"), yml, 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := config.Load(filepath.Join(dir, "slipway.yml"))
		if err != nil {
			t.Errorf("%s: the starter config does not load:\n%v\n%s", tt.kind, err, yml)
			continue
		}
		if cfg.Recipe != tt.recipe {
			t.Errorf("%s: recipe %q, want %q", tt.kind, cfg.Recipe, tt.recipe)
		}
		if _, err := cfg.Stage("demo"); err != nil || !strings.Contains(string(yml), "# ") {
			t.Errorf("%s: no demo stage or no comments", tt.kind)
		}
	}
}
