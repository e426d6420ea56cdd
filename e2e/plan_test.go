package e2e

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/slipway-deploy/slipway/internal/testutil"
)

// snapshot records everything under a host's /srv: names, types, modes,
// sizes, times, link targets and contents, locks and history included.
func snapshot(t *testing.T, h *testutil.Host) map[string]string {
	t.Helper()
	out := map[string]string{}
	root := h.Path("/srv")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		entry := fmt.Sprintf("%v %d %d", info.Mode(), info.Size(), info.ModTime().UnixNano())
		if d.Type()&fs.ModeSymlink != 0 {
			target, _ := os.Readlink(p)
			entry += " -> " + target
		} else if d.Type().IsRegular() {
			b, _ := os.ReadFile(p)
			entry += " " + string(b)
		}
		out[p] = entry
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestPlanChangesNothingAndSaysWhatADeployWouldDo(t *testing.T) {
	p := newProject(t, 3, testutil.Options{})
	p.config("keep_releases: 1\nhooks:\n  before_switch:\n    - run: echo migrate-db\n      once: true\n    - echo cache\n  after_switch: [echo reload]\n")
	p.mustRun("deploy", "production")
	p.writeApp("v2")
	p.mustRun("deploy", "production")
	first := releases(t, p.fleet.Hosts[0])[0]
	p.writeApp("v3")
	p.write("app/public/new.php", "<?php // new\n")
	// A lock held by someone else: the plan reports it and leaves it.
	p.fleet.Hosts[2].Run(t, "mkdir -p "+deployTo+"/.slipway/lock && echo '{\"user\":\"bob\",\"machine\":\"ci-9\",\"pid\":1}' > "+deployTo+"/.slipway/lock/owner.json")

	before := map[string]map[string]string{}
	for _, h := range p.fleet.Hosts {
		before[h.Name] = snapshot(t, h)
	}
	plan := p.mustRun("plan", "production")
	dry := p.mustRun("deploy", "production", "--dry-run")
	for _, h := range p.fleet.Hosts {
		after := snapshot(t, h)
		if len(after) != len(before[h.Name]) {
			t.Errorf("%s: %d entries before the plan, %d after", h.Name, len(before[h.Name]), len(after))
		}
		for path, entry := range before[h.Name] {
			if after[path] != entry {
				t.Errorf("%s: %s changed during plan", h.Name, path)
			}
		}
	}
	upload := []string{"upload: delta: ", "+ public/new.php", "+ VERSION"}
	if os.Getenv("SLIPWAY_E2E_UPLOAD") == "full" {
		upload = []string{"upload: full: "}
	}
	for _, want := range append(upload,
		"plan for stage production: release ",
		"hook before_switch: echo migrate-db", "hook before_switch: echo cache", "hook after_switch: echo reload",
		"cleanup would delete: "+first,
		"deploy would stop: locked by bob@ci-9",
	) {
		if !strings.Contains(plan.stdout, want) {
			t.Errorf("plan lacks %q:\n%s", want, plan.stdout)
		}
	}
	// once: migrate only on the primary host.
	if strings.Count(plan.stdout, "migrate-db") != 1 {
		t.Errorf("the once hook is planned on more than one host:\n%s", plan.stdout)
	}
	// The release id is the time of the run: the two may be a second apart.
	ids := regexp.MustCompile(`\d{14}`)
	if ids.ReplaceAllString(dry.stdout, "ID") != ids.ReplaceAllString(plan.stdout, "ID") {
		t.Errorf("deploy --dry-run differs from plan:\n%s\n---\n%s", dry.stdout, plan.stdout)
	}
}
