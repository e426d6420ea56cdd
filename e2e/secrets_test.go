package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway-deploy/slipway/internal/testutil"
)

// TestSecretsReachHooksAndNothingElse: a secret env value is in the hook's
// environment, and in no output, --json event, history file or command line.
func TestSecretsReachHooksAndNothingElse(t *testing.T) {
	p := newProject(t, 2, testutil.Options{})
	const secret = "s3cr3t-Tok3n-'quoted' $(not run)"
	p.config(`env:
  APP_ENV: production
  API_TOKEN: {value: "${DEPLOY_TOKEN}", secret: true}
hooks:
  before_switch:
    - echo "token is $API_TOKEN"; printf '%s' "$API_TOKEN" > /srv/seen; tr '\0' ' ' < /proc/$$/cmdline > /srv/cmdline; echo "$APP_ENV" > /srv/app-env
`)
	withSecret := p.withEnv("DEPLOY_TOKEN=" + secret)
	res := withSecret.mustRun("deploy", "production", "--json")
	if strings.Contains(res.stdout+res.stderr, "s3cr3t") {
		t.Errorf("the secret appears in slipway's output:\n%s\n%s", res.stdout, res.stderr)
	}
	if !strings.Contains(res.stdout, "token is ***") {
		t.Errorf("the hook's output line is not masked:\n%s", res.stdout)
	}
	for _, h := range p.fleet.Hosts {
		if got := readFile(t, h.Path("/srv/seen")); got != secret {
			t.Errorf("%s: the hook saw %q", h.Name, got)
		}
		if got := readFile(t, h.Path("/srv/app-env")); got != "production\n" {
			t.Errorf("%s: APP_ENV = %q", h.Name, got)
		}
		if strings.Contains(readFile(t, h.Path("/srv/cmdline")), "s3cr3t") {
			t.Errorf("%s: the secret was on a command line", h.Name)
		}
		_ = filepath.WalkDir(h.Path(deployTo), func(path string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && (strings.Contains(path, ".slipway") || strings.HasSuffix(path, "revisions.log")) {
				if b, _ := os.ReadFile(path); strings.Contains(string(b), "s3cr3t") {
					t.Errorf("%s: the secret is in %s", h.Name, path)
				}
			}
			return nil
		})
	}
	// A failing hook that prints the secret: the error shows it masked.
	p.writeApp("v2")
	p.config("env:\n  API_TOKEN: {value: \"${DEPLOY_TOKEN}\", secret: true}\nhooks:\n  before_switch:\n    - echo \"bad token $API_TOKEN\" >&2; exit 1\n")
	res = withSecret.expectCode(1, "deploy", "production")
	if strings.Contains(res.stderr, "s3cr3t") || !strings.Contains(res.stderr, "bad token ***") {
		t.Errorf("failure output:\n%s", res.stderr)
	}
	// An unset secret is a config error, never an empty value.
	res = p.expectCode(2, "deploy", "production")
	if !strings.Contains(res.stderr, "DEPLOY_TOKEN") {
		t.Errorf("unset secret:\n%s", res.stderr)
	}
}
