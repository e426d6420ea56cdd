package config

import (
	"slices"
	"strings"
	"testing"
)

func parseRecipe(t *testing.T, body string) *Config {
	t.Helper()
	cfg, err := Loader{LookupEnv: func(string) (string, bool) { return "", false }}.Parse("slipway.yml",
		[]byte("app: shop\ndeploy_to: /var/www/shop\n"+body+"stages:\n  production:\n    hosts: [web1]\n"))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestLaravelRecipeSuppliesDefaults(t *testing.T) {
	cfg := parseRecipe(t, "recipe: laravel\n")
	if !slices.Equal(cfg.Shared.Dirs, []string{"storage"}) || !slices.Equal(cfg.Shared.Files, []string{".env"}) {
		t.Errorf("shared = %+v", cfg.Shared)
	}
	if len(cfg.Hooks.BeforeSwitch) != 4 || cfg.Hooks.BeforeSwitch[0].Run != "php artisan migrate --force" || !cfg.Hooks.BeforeSwitch[0].Once {
		t.Errorf("before_switch = %+v", cfg.Hooks.BeforeSwitch)
	}
	if len(cfg.Hooks.AfterSwitch) != 1 || cfg.Hooks.AfterSwitch[0].Run != "php artisan queue:restart" {
		t.Errorf("after_switch = %+v", cfg.Hooks.AfterSwitch)
	}
	if !slices.Equal(cfg.Writable.Dirs, []string{"bootstrap/cache", "storage"}) || cfg.Writable.Mode != "group" {
		t.Errorf("writable = %+v", cfg.Writable)
	}
	if !slices.Contains(cfg.Source.Exclude, "tests/") {
		t.Errorf("exclude = %v", cfg.Source.Exclude)
	}
}

func TestRecipeDefaultsGiveWayToTheFile(t *testing.T) {
	cfg := parseRecipe(t, `recipe: laravel
shared:
  dirs: [storage, public/uploads]
hooks:
  before_switch: [php artisan migrate --force --isolated]
  after_rollback: [php artisan queue:restart]
writable:
  dirs: [bootstrap/cache, public/media]
  mode: acl
`)
	if !slices.Equal(cfg.Shared.Dirs, []string{"storage", "public/uploads"}) {
		t.Errorf("shared.dirs = %v, want the file's", cfg.Shared.Dirs)
	}
	if !slices.Equal(cfg.Shared.Files, []string{".env"}) {
		t.Errorf("shared.files = %v, want the recipe's (not given in the file)", cfg.Shared.Files)
	}
	if len(cfg.Hooks.BeforeSwitch) != 1 || !strings.Contains(cfg.Hooks.BeforeSwitch[0].Run, "--isolated") {
		t.Errorf("before_switch = %+v, want only the file's", cfg.Hooks.BeforeSwitch)
	}
	if len(cfg.Hooks.AfterSwitch) != 1 {
		t.Errorf("after_switch = %+v, want the recipe's", cfg.Hooks.AfterSwitch)
	}
	if cfg.Writable.Mode != "acl" || cfg.Writable.User != "www-data" || len(cfg.Writable.Dirs) != 2 {
		t.Errorf("writable = %+v", cfg.Writable)
	}
}

func TestStaticAndSymfonyRecipes(t *testing.T) {
	static := parseRecipe(t, "recipe: static\n")
	if len(static.Hooks.BeforeSwitch) != 0 || len(static.Shared.Dirs) != 0 || !slices.Contains(static.Source.Exclude, ".git") {
		t.Errorf("static = %+v", static)
	}
	symfony := parseRecipe(t, "recipe: symfony\n")
	if !slices.Equal(symfony.Shared.Files, []string{".env.local"}) || len(symfony.Hooks.BeforeSwitch) != 1 {
		t.Errorf("symfony = %+v %+v", symfony.Shared, symfony.Hooks)
	}
}

func TestUnknownRecipe(t *testing.T) {
	_, err := Parse("slipway.yml", []byte("app: shop\nrecipe: rails\ndeploy_to: /x\nstages:\n  p:\n    hosts: [web1]\n"))
	if err == nil || !strings.Contains(err.Error(), "slipway.yml:2:9") || !strings.Contains(err.Error(), "laravel") {
		t.Fatalf("err = %v", err)
	}
}
