package deploy

import (
	"slices"
	"strings"
	"testing"
)

func TestMigrationsAhead(t *testing.T) {
	list := func(names ...string) *[]string { return &names }
	rel := func(id string, m *[]string) *ReleaseMeta { return &ReleaseMeta{ID: id, Migrations: m} }
	ahead, err := migrationsAhead(rel("2", list("a", "b", "c")), rel("1", list("a")))
	if err != nil || !slices.Equal(ahead, []string{"c", "b"}) {
		t.Errorf("ahead = %v, %v; want [c b] (newest first)", ahead, err)
	}
	if ahead, err := migrationsAhead(rel("2", list("a")), rel("1", list("a"))); err != nil || len(ahead) != 0 {
		t.Errorf("same migrations: %v, %v; want none", ahead, err)
	}
	for name, tc := range map[string]struct {
		from, to *ReleaseMeta
		want     string
	}{
		"live unrecorded":   {rel("2", nil), rel("1", list("a")), "live release has no record"},
		"target unrecorded": {rel("2", list("a")), rel("1", nil), "release 1 has no record"},
		"adopted target":    {rel("2", list("a")), nil, "has no record"},
		"diverged":          {rel("2", list("a", "c")), rel("1", list("a", "b")), "not the oldest"},
		"target ahead":      {rel("2", list("a")), rel("1", list("a", "b")), "not the oldest"},
	} {
		if _, err := migrationsAhead(tc.from, tc.to); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want one saying %q", name, err, tc.want)
		}
	}
}
