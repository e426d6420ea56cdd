package deploy

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway-deploy/slipway/internal/source"
)

// TestVerifyScript runs the verify of an upload in a release: openssl's
// digests decide where they can, and every other case, including any
// damage, is decided and named by sha256sum -c.
func TestVerifyScript(t *testing.T) {
	for _, tool := range []string{"sh", "grep", "cut", "sed", "tr", "xargs", "awk", "sha256sum", "openssl", "head", "rm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s: %v", tool, err)
		}
	}
	plain := map[string]string{"index.php": "<?php echo 1;", "a dir/with space.txt": "x", "-dash": "y", "empty": "", "deep/er/file": strings.Repeat("z", 100000)}
	odd := map[string]string{"back\\slash": "b", "new\nline": "n"}
	// More names than one command line holds: xargs runs openssl again.
	many := map[string]string{}
	for i := range 4000 {
		many[fmt.Sprintf("vendor/package-with-a-long-name/src/%04d-SomeClassNameThatIsLong.php", i)] = fmt.Sprint(i)
	}
	for _, c := range []struct {
		name     string
		files    map[string]string
		damage   string // a file changed after the checklist was made
		remove   string // a file removed
		noSSL    bool   // openssl is not on PATH
		wantOK   bool
		wantUsed string // the tools that ran, in order
	}{
		{name: "intact, openssl decides", files: plain, wantOK: true, wantUsed: "openssl "},
		{name: "more names than one command line holds", files: many, wantOK: true, wantUsed: "openssl "},
		{name: "more names than one command line holds, one damaged", files: many, damage: "vendor/package-with-a-long-name/src/3999-SomeClassNameThatIsLong.php", wantUsed: "openssl sha256sum "},
		{name: "a damaged file", files: plain, damage: "deep/er/file", wantUsed: "openssl sha256sum "},
		{name: "a removed file", files: plain, remove: "-dash", wantUsed: "openssl sha256sum "},
		{name: "intact, no openssl", files: plain, noSSL: true, wantOK: true, wantUsed: "sha256sum "},
		{name: "damaged, no openssl", files: plain, damage: "index.php", noSSL: true, wantUsed: "sha256sum "},
		{name: "names the checklist escapes", files: merge(plain, odd), wantOK: true, wantUsed: "sha256sum "},
		{name: "names the checklist escapes, damaged", files: merge(plain, odd), damage: "back\\slash", wantUsed: "sha256sum "},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			release := filepath.Join(dir, "release")
			for name, body := range c.files {
				writeFile(t, filepath.Join(release, name), body)
			}
			tree, err := source.Scan(release, nil)
			if err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(release, ".slipway-check"), string(source.Checklist(tree.Files)))
			if c.damage != "" {
				writeFile(t, filepath.Join(release, c.damage), "damaged")
			}
			if c.remove != "" {
				if err := os.Remove(filepath.Join(release, c.remove)); err != nil {
					t.Fatal(err)
				}
			}
			// PATH: every tool the script needs, each logging its use
			// where it is openssl or sha256sum.
			bin, used := filepath.Join(dir, "bin"), filepath.Join(dir, "used")
			for _, tool := range []string{"sh", "grep", "cut", "sed", "tr", "xargs", "awk", "head", "rm", "sha256sum", "openssl"} {
				real, _ := exec.LookPath(tool)
				switch {
				case tool == "openssl" && c.noSSL:
				case tool == "openssl" || tool == "sha256sum":
					writeFile(t, filepath.Join(bin, tool), "#!/bin/sh\nprintf '%s ' "+tool+" >> '"+used+"'\nexec "+real+" \"$@\"\n")
					if err := os.Chmod(filepath.Join(bin, tool), 0o755); err != nil {
						t.Fatal(err)
					}
				default:
					if err := os.MkdirAll(bin, 0o755); err != nil {
						t.Fatal(err)
					}
					if err := os.Symlink(real, filepath.Join(bin, tool)); err != nil {
						t.Fatal(err)
					}
				}
			}
			cmd := exec.Command("/bin/sh", "-c", verifyScript)
			cmd.Dir, cmd.Env = release, []string{"PATH=" + bin, "LC_ALL=C"}
			out, err := cmd.CombinedOutput()
			if (err == nil) != c.wantOK {
				t.Errorf("verify: %v, want ok %v\n%s", err, c.wantOK, out)
			}
			if !c.wantOK && !strings.Contains(string(out), "does not match its manifest") {
				t.Errorf("the damage is not named:\n%s", out)
			}
			if c.damage != "" && !strings.Contains(string(out), ": FAILED") {
				t.Errorf("sha256sum's report of the damaged file is missing:\n%s", out)
			}
			got, _ := os.ReadFile(used)
			// xargs may run openssl more than once for a long list.
			if len(c.files) == len(many) && strings.Count(string(got), "openssl") < 2 {
				t.Errorf("openssl ran once (%q): the list did not need a second command line", got)
			}
			g := string(got)
			for strings.Contains(g, "openssl openssl ") {
				g = strings.ReplaceAll(g, "openssl openssl ", "openssl ")
			}
			if g != c.wantUsed {
				t.Errorf("tools run: %q, want %q", got, c.wantUsed)
			}
			if c.wantOK {
				if _, err := os.Stat(filepath.Join(release, ".slipway-check")); !os.IsNotExist(err) {
					t.Errorf("the checklist was left in the release: %v", err)
				}
			}
		})
	}
}

func merge(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		out[k] = v
	}
	return out
}
