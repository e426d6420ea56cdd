package testutil

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readExample(t *testing.T) string {
	t.Helper()
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	example, err := os.ReadFile(filepath.Join(root, NginxExample))
	if err != nil {
		t.Fatal(err)
	}
	return string(example)
}

// TestNginxConfigIsTheExample holds the configuration the end-to-end tests
// serve to the shipped example: line by line the same, but for the three
// directives that say where things are on the test machine, and, in the
// broken variant, the two parameters that pass the script's path.
func TestNginxConfigIsTheExample(t *testing.T) {
	example := readExample(t)
	for _, variant := range []DocRoot{RealpathRoot, DocumentRoot} {
		t.Run(variant.String(), func(t *testing.T) {
			config, err := NginxConfig(example, "127.0.0.1:8080", "/tmp/x/srv/app/current/public", "unix:/tmp/x/fpm.sock", variant)
			if err != nil {
				t.Fatal(err)
			}
			want := strings.Split(example, "\n")
			got := strings.Split(config, "\n")
			if len(got) != len(want) {
				t.Fatalf("%d lines, the example has %d:\n%s", len(got), len(want), config)
			}
			replaced := map[string]string{
				"listen":                        "listen 127.0.0.1:8080;",
				"root":                          "root /tmp/x/srv/app/current/public;",
				"fastcgi_pass":                  "fastcgi_pass unix:/tmp/x/fpm.sock;",
				"fastcgi_param SCRIPT_FILENAME": "fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;",
				"fastcgi_param DOCUMENT_ROOT":   "fastcgi_param DOCUMENT_ROOT $realpath_root;",
			}
			if variant == DocumentRoot {
				replaced["fastcgi_param SCRIPT_FILENAME"] = "fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;"
				replaced["fastcgi_param DOCUMENT_ROOT"] = "fastcgi_param DOCUMENT_ROOT $document_root;"
			}
			seen := map[string]int{}
			for i := range want {
				directive := directiveOf(want[i])
				wantLine, ok := replaced[directive]
				if !ok {
					if got[i] != want[i] {
						t.Errorf("line %d changed: %q, the example has %q", i+1, got[i], want[i])
					}
					continue
				}
				seen[directive]++
				if strings.TrimSpace(got[i]) != wantLine || !strings.HasPrefix(got[i], leadingSpace(want[i])) {
					t.Errorf("line %d = %q, want %q indented as %q", i+1, got[i], wantLine, want[i])
				}
			}
			for directive := range replaced {
				if seen[directive] != 1 {
					t.Errorf("the example has %d %q lines, want 1", seen[directive], directive)
				}
			}
		})
	}
}

// directiveOf returns the directive name of an nginx line, with the
// parameter name for fastcgi_param; "" for comments and blank lines.
func directiveOf(line string) string {
	fields := strings.Fields(line)
	switch {
	case len(fields) == 0 || strings.HasPrefix(fields[0], "#"):
		return ""
	case fields[0] == "fastcgi_param" && len(fields) > 1:
		return "fastcgi_param " + fields[1]
	}
	return fields[0]
}

func leadingSpace(line string) string { return line[:len(line)-len(strings.TrimLeft(line, " \t"))] }

func TestNginxConfigRefusesAnExampleItCannotProve(t *testing.T) {
	example := readExample(t)
	for name, broken := range map[string]string{
		"no $realpath_root": strings.ReplaceAll(example, "$realpath_root", "$document_root"),
		"two roots":         strings.Replace(example, "    index ", "    root /elsewhere;\n    index ", 1),
		"no fastcgi_pass":   strings.Replace(example, "    fastcgi_pass ", "    # fastcgi_pass ", 1),
	} {
		if _, err := NginxConfig(broken, "127.0.0.1:1", "/r", "unix:/s", RealpathRoot); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

// TestStartWebServesThroughCurrent serves a tiny deploy directory with both
// variants and checks what PHP is told, and that it runs as in production:
// OPcache on, the realpath cache at its defaults.
func TestStartWebServesThroughCurrent(t *testing.T) {
	deployTo := t.TempDir()
	public := filepath.Join(deployTo, "releases", "20260101000001", "public")
	if err := os.MkdirAll(public, 0o755); err != nil {
		t.Fatal(err)
	}
	info := `<?php
$status = opcache_get_status(false);
echo json_encode([
	'script' => $_SERVER['SCRIPT_FILENAME'],
	'document_root' => $_SERVER['DOCUMENT_ROOT'],
	'opcache' => $status !== false && $status['opcache_enabled'],
	'validate_timestamps' => ini_get('opcache.validate_timestamps'),
	'realpath_cache_ttl' => ini_get('realpath_cache_ttl'),
]);
`
	if err := os.WriteFile(filepath.Join(public, "info.php"), []byte(info), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("releases/20260101000001", filepath.Join(deployTo, "current")); err != nil {
		t.Fatal(err)
	}
	for _, variant := range []DocRoot{RealpathRoot, DocumentRoot} {
		t.Run(strings.TrimPrefix(variant.String(), "$"), func(t *testing.T) {
			t.Parallel()
			web := StartWeb(t, WebOptions{Root: filepath.Join(deployTo, "current", "public"), DocRoot: variant, Workers: 2})
			resp, err := http.Get(web.URL + "/info.php")
			if err != nil {
				t.Fatalf("GET /info.php: %v", err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("GET /info.php: %s %v\n%s", resp.Status, err, body)
			}
			var got struct {
				Script             string `json:"script"`
				DocumentRoot       string `json:"document_root"`
				Opcache            bool   `json:"opcache"`
				ValidateTimestamps string `json:"validate_timestamps"`
				RealpathCacheTTL   string `json:"realpath_cache_ttl"`
			}
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("GET /info.php: %v: %s", err, body)
			}
			wantRoot := filepath.Join(deployTo, "current", "public")
			if variant == RealpathRoot {
				wantRoot = public
			}
			if got.Script != wantRoot+"/info.php" || got.DocumentRoot != wantRoot {
				t.Errorf("SCRIPT_FILENAME = %q, DOCUMENT_ROOT = %q; want %q under %q", got.Script, got.DocumentRoot, wantRoot+"/info.php", wantRoot)
			}
			// The production defaults the end-to-end tests rely on.
			if !got.Opcache || got.ValidateTimestamps != "1" || got.RealpathCacheTTL != "120" {
				t.Errorf("php-fpm does not run with the production defaults (OPcache on, validate_timestamps 1, realpath_cache_ttl 120): %s", body)
			}
			if err := web.Running(); err != nil {
				t.Error(err)
			}
		})
	}
}
