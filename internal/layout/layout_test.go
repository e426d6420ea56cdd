package layout

import (
	"testing"
	"time"
)

func testLayout(abs bool) Layout {
	return Layout{DeployTo: "/var/www/shop", Releases: "releases", Shared: "shared", Current: "current", Repo: "repo", AbsoluteLinks: abs}
}

func TestNewReleaseID(t *testing.T) {
	now := time.Date(2026, 11, 22, 10, 30, 15, 0, time.UTC)
	tests := []struct {
		name     string
		existing []string
		want     string
	}{
		{"empty", nil, "20261122103015"},
		{"older releases", []string{"20261122103014", "20250101000000"}, "20261122103015"},
		{"same second", []string{"20261122103015"}, "20261122103016"},
		{"clock behind", []string{"20261122103020"}, "20261122103021"},
		{"ignores other names", []string{"99999999999999x", "notes"}, "20261122103015"},
		{"minute rollover", []string{"20261122103059"}, "20261122103100"},
	}
	for _, tt := range tests {
		got, err := NewReleaseID(now, tt.existing)
		if err != nil || got != tt.want {
			t.Errorf("%s: NewReleaseID = %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}

func TestNewReleaseIDUsesUTC(t *testing.T) {
	tokyo := time.FixedZone("JST", 9*3600)
	got, _ := NewReleaseID(time.Date(2026, 11, 22, 19, 0, 0, 0, tokyo), nil)
	if got != "20261122100000" {
		t.Errorf("got %s, want the UTC time 20261122100000", got)
	}
}

func TestLinkTargets(t *testing.T) {
	rel, abs := testLayout(false), testLayout(true)
	if got := rel.CurrentTarget("20261122103015"); got != "releases/20261122103015" {
		t.Errorf("relative current target = %s", got)
	}
	if got := abs.CurrentTarget("20261122103015"); got != "/var/www/shop/releases/20261122103015" {
		t.Errorf("absolute current target = %s", got)
	}
	for rel2, want := range map[string]string{
		".env":           "../../shared/.env",
		"storage":        "../../shared/storage",
		"public/uploads": "../../../shared/public/uploads",
		"a/b/c":          "../../../../shared/a/b/c",
	} {
		if got := rel.SharedLinkTarget(rel2); got != want {
			t.Errorf("SharedLinkTarget(%s) = %s, want %s", rel2, got, want)
		}
	}
	if got := abs.SharedLinkTarget("public/uploads"); got != "/var/www/shop/shared/public/uploads" {
		t.Errorf("absolute shared target = %s", got)
	}
}

func TestReleaseOfTarget(t *testing.T) {
	l := testLayout(false)
	for target, want := range map[string]string{
		"releases/20261122103015":               "20261122103015",
		"/var/www/shop/releases/20261122103015": "20261122103015", // Capistrano's absolute link
		"./releases/20261122103015/":            "20261122103015",
		"/elsewhere/releases/20261122103015":    "",
		"releases/latest":                       "",
		"releases":                              "",
	} {
		if got := l.ReleaseOfTarget(target); got != want {
			t.Errorf("ReleaseOfTarget(%q) = %q, want %q", target, got, want)
		}
	}
}

// TestSharedLinkTargetOfAnAbsolutePathEnds: config refuses absolute shared
// paths, but the walk up from one must still end (FuzzScripts found it
// looping at "/").
func TestSharedLinkTargetOfAnAbsolutePathEnds(t *testing.T) {
	l := Layout{DeployTo: "/srv/app", Releases: "releases", Shared: "shared", Current: "current"}
	if got := l.SharedLinkTarget("/etc/x"); got == "" {
		t.Errorf("SharedLinkTarget(/etc/x) = %q", got)
	}
}
