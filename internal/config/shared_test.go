package config

import (
	"fmt"
	"io/fs"
	"reflect"
	"strings"
	"testing"
)

const sharedHead = "app: shop\ndeploy_to: /var/www/shop\n"

func TestSharedFilesMode(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want fs.FileMode
	}{
		{"shared: {files: [.env]}\n", 0o640},
		{"shared: {files: [.env], files_mode: 0640}\n", 0o640},
		{"shared: {files: [.env], files_mode: 0600}\n", 0o600},
		{"shared: {files: [.env], files_mode: 640}\n", 0o640},
		{"shared: {files: [.env], files_mode: 0o644}\n", 0o644},
		{"shared: {files: [.env], files_mode: \"0440\"}\n", 0o440},
		{"shared:\n  files_mode: 0660\n  files: [.env]\n", 0o660},
	} {
		cfg, err := env(nil).Parse("slipway.yml", []byte(sharedHead+tc.yaml+validStages))
		if err != nil {
			t.Errorf("%q: %v", tc.yaml, err)
			continue
		}
		if got := cfg.Shared.Mode(); got != tc.want {
			t.Errorf("%q: mode %#o, want %#o", tc.yaml, got, tc.want)
		}
	}
}

func TestSharedFilesModeErrors(t *testing.T) {
	for _, tc := range []struct {
		value, at, msg, fix string
	}{
		{"abc", "3:37", `shared.files_mode must be an octal file mode such as 0640, not "abc"`, "files_mode: 0640"},
		{"0680", "3:37", `not "0680"`, "octal"},
		{"4750", "3:37", `not "4750"`, "octal"},
		{"06400", "3:37", `not "06400"`, "octal"},
		{"\"\"", "3:37", "not empty", "octal"},
		{"0240", "3:37", "shared.files_mode 0240 does not let the deploy user read the file", "read access"},
		{"0646", "3:37", "shared.files_mode 0646 makes the file world-writable", "nothing slipway writes is world-writable"},
		{"[0640]", "3:37", "shared.files_mode must be a single value, not a list", "single value"},
	} {
		yaml := sharedHead + "shared: {files: [.env], files_mode: " + tc.value + "}\n" + validStages
		_, err := env(nil).Parse("slipway.yml", []byte(yaml))
		if err == nil {
			t.Errorf("files_mode %s: no error", tc.value)
			continue
		}
		got := configErrors(t, err)[0]
		if at := fmt.Sprintf("%d:%d", got.Line, got.Col); at != tc.at || !strings.Contains(got.Msg, tc.msg) || !strings.Contains(got.Fix, tc.fix) {
			t.Errorf("files_mode %s: got %s %q (fix %q); want %s %q (fix with %q)", tc.value, at, got.Msg, got.Fix, tc.at, tc.msg, tc.fix)
		}
	}
	// A near miss is pointed at the right key.
	_, err := env(nil).Parse("slipway.yml", []byte(sharedHead+"shared: {files: [.env], file_mode: 0640}\n"+validStages))
	if err == nil || !strings.Contains(err.Error(), `did you mean "files_mode"?`) {
		t.Errorf("file_mode: %v", err)
	}
}

func TestAfterSharedPushHooks(t *testing.T) {
	yaml := sharedHead + "shared: {files: [.env]}\nhooks:\n  after_shared_push:\n    - php artisan config:cache\n    - {run: sudo systemctl reload php-fpm, roles: [web], once: true}\n" + validStages
	cfg, err := env(nil).Parse("slipway.yml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	want := []Hook{
		{Run: "php artisan config:cache", Where: "slipway.yml:6:7"},
		{Run: "sudo systemctl reload php-fpm", Roles: []string{"web"}, Once: true, Where: "slipway.yml:7:7"},
	}
	if !reflect.DeepEqual(cfg.Hooks.AfterSharedPush, want) {
		t.Errorf("after_shared_push = %+v, want %+v", cfg.Hooks.AfterSharedPush, want)
	}
	// Checked as every hook list is.
	_, err = env(nil).Parse("slipway.yml", []byte(sharedHead+"hooks:\n  after_shared_push: [\"\"]\n"+validStages))
	if err == nil || !strings.Contains(err.Error(), "slipway.yml:4:23: hooks.after_shared_push: hook has an empty run") {
		t.Errorf("empty after_shared_push hook: %v", err)
	}
	_, err = env(nil).Parse("slipway.yml", []byte(sharedHead+"hooks:\n  after_share_push: [true]\n"+validStages))
	if err == nil || !strings.Contains(err.Error(), `did you mean "after_shared_push"?`) {
		t.Errorf("after_share_push: %v", err)
	}
}

func TestSharedHasFile(t *testing.T) {
	s := Shared{Files: []string{".env", "config/app.yml"}}
	if !s.HasFile(".env") || !s.HasFile("config/app.yml") || s.HasFile("app.yml") || s.HasFile("") {
		t.Error("HasFile")
	}
}
