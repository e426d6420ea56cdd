package testutil

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func readModuleFile(t *testing.T, rel string) string {
	t.Helper()
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// expectLines compares config, line by line, to the example with want
// applied to each of its lines (which returns the lines it becomes: none
// to drop it, more to add some).
func expectLines(t *testing.T, example, config string, want func(line string) []string) {
	t.Helper()
	var expected []string
	for line := range strings.Lines(example) {
		expected = append(expected, want(line)...)
	}
	if got := strings.Join(expected, ""); got != config {
		wantLines, gotLines := strings.Split(got, "\n"), strings.Split(config, "\n")
		for i := range min(len(wantLines), len(gotLines)) {
			if wantLines[i] != gotLines[i] {
				t.Fatalf("line %d = %q, want %q", i+1, gotLines[i], wantLines[i])
			}
		}
		t.Fatalf("%d lines, want %d", len(gotLines), len(wantLines))
	}
}

// TestApacheConfigIsTheExample holds what the Apache stacks serve to the
// shipped examples: the same lines, but for the port, the deploy directory
// and the socket, and, with LinkPaths, without the four Rewrite lines.
func TestApacheConfigIsTheExample(t *testing.T) {
	for _, rel := range []string{ApacheFPMExample, ApacheModPHPExample} {
		example := readModuleFile(t, rel)
		socket := "/tmp/w/php-fpm.sock"
		if rel == ApacheModPHPExample {
			socket = ""
		}
		for _, paths := range []Paths{ResolvedPaths, LinkPaths} {
			t.Run(rel+" "+paths.String(), func(t *testing.T) {
				config, err := ApacheConfig(example, 8080, "/srv/app", socket, paths)
				if err != nil {
					t.Fatal(err)
				}
				expectLines(t, example, config, func(line string) []string {
					if paths == LinkPaths && isApacheResolver(line) {
						return nil
					}
					line = strings.ReplaceAll(line, "<VirtualHost *:80>", "<VirtualHost *:8080>")
					if socket != "" {
						line = strings.ReplaceAll(line, ExampleFPMSocket, socket)
					}
					return []string{strings.ReplaceAll(line, ExampleDeployTo, "/srv/app")}
				})
			})
		}
	}
	example := readModuleFile(t, ApacheFPMExample)
	broken := strings.Replace(example, "RewriteRule", "# RewriteRule", 1)
	if _, err := ApacheConfig(broken, 8080, "/srv/app", "/tmp/s", ResolvedPaths); err == nil || !strings.Contains(err.Error(), "RewriteRule") {
		t.Errorf("an example without its RewriteRule: %v", err)
	}
}

// TestCaddyConfigIsTheExample: the same for Caddy, where the test adds
// flush_interval -1 to php_fastcgi and LinkPaths drops resolve_root_symlink.
func TestCaddyConfigIsTheExample(t *testing.T) {
	example := readModuleFile(t, CaddyExample)
	for _, paths := range []Paths{ResolvedPaths, LinkPaths} {
		t.Run(paths.String(), func(t *testing.T) {
			config, err := CaddyConfig(example, "http://127.0.0.1:8080", "/srv/app", "/tmp/w/php-fpm.sock", paths)
			if err != nil {
				t.Fatal(err)
			}
			expectLines(t, example, config, func(line string) []string {
				switch directiveName(line) {
				case "resolve_root_symlink":
					if paths == LinkPaths {
						return nil
					}
				case "php_fastcgi":
					line = strings.ReplaceAll(line, ExampleFPMSocket, "/tmp/w/php-fpm.sock")
					return []string{line, "\t\tflush_interval -1\n"}
				}
				line = strings.ReplaceAll(line, "shop.example.com {", "http://127.0.0.1:8080 {")
				return []string{strings.ReplaceAll(line, ExampleDeployTo, "/srv/app")}
			})
		})
	}
	if _, err := CaddyConfig(strings.Replace(example, "\t\tresolve_root_symlink\n", "", 1), "http://x", "/srv/app", "/tmp/s", ResolvedPaths); err == nil {
		t.Error("an example without resolve_root_symlink was accepted")
	}
}
