package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDiffListsWhatDiffersBetweenTwoStages(t *testing.T) {
	p := newPromoteProject(t)
	p.write("site/old.txt", "old")
	p.write("site/same/kept.txt", "kept")
	p.write("site/odd\tname.txt", "odd")
	p.mustRun("deploy", "staging")
	p.mustRun("deploy", "production", "--from", "staging")
	stdout, _ := p.mustRun("diff", "production", "staging")
	if !strings.Contains(stdout, "the live releases of production and staging ship the same files") {
		t.Fatalf("diff of a promotion:\n%s", stdout)
	}

	p.write("site/index.html", "v2")
	p.write("site/new/added.js", "added")
	if err := os.Remove(filepath.Join(p.dir, "site/old.txt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(p.dir, "site/odd\tname.txt")); err != nil {
		t.Fatal(err)
	}
	p.mustRun("deploy", "staging")
	stdout, _ = p.mustRun("diff", "production", "staging")
	// stamp.txt is written by every build.
	for _, want := range []string{"+ new/\n", "+ new/added.js\n", "- \"odd\\tname.txt\"\n", "- old.txt\n", "~ index.html\n", "~ stamp.txt\n",
		"6 entries differ from production's release to staging's: 2 added, 2 removed, 2 changed"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("diff lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "kept.txt") {
		t.Errorf("diff lists an unchanged file:\n%s", stdout)
	}

	stdout, _ = p.mustRun("diff", "production", "staging", "--json")
	var res struct {
		From, To struct {
			Stage, Release, Digest string
			PromotedFrom           string `json:"promoted_from"`
		}
		Added, Removed, Changed []struct{ Path, Type string }
	}
	if err := json.Unmarshal([]byte(stdout), &res); err != nil {
		t.Fatal(err)
	}
	paths := func(cs []struct{ Path, Type string }) string {
		var out []string
		for _, c := range cs {
			out = append(out, c.Path+":"+c.Type)
		}
		return strings.Join(out, " ")
	}
	if res.From.Stage != "production" || res.To.Stage != "staging" || res.From.Digest == res.To.Digest || res.From.PromotedFrom == "" ||
		paths(res.Added) != "new:dir new/added.js:file" || paths(res.Removed) != "odd\tname.txt:file old.txt:file" ||
		paths(res.Changed) != "index.html:file stamp.txt:file" {
		t.Errorf("diff --json:\n%s", stdout)
	}
	if _, stderr, code := p.run("--hosts", "local", "diff", "production", "staging"); code != ExitUsage || !strings.Contains(stderr, "do not apply to diff") {
		t.Errorf("diff --hosts: exit %d\n%s", code, stderr)
	}
}
