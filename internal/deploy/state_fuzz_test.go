package deploy

import (
	"strings"
	"testing"

	"github.com/slipway-deploy/slipway/internal/layout"
)

// FuzzParseState feeds hostile host output to the state parser: whatever a
// host prints, only well-formed release ids and metadata may come out of
// it, since cleanup deletes by those ids.
func FuzzParseState(f *testing.F) {
	f.Add([]byte("exists\ncurrent releases/20261122103015\nrelease 20261122103015\nmeta 20261122103015.json {\"id\":\"20261122103015\",\"state\":\"deployed\"}\nlock {\"user\":\"a\"}\n"))
	f.Add([]byte("exists\nmeta ../../etc.json {\"id\":\"../../etc\",\"state\":\"deployed\"}\nrelease ../x\n"))
	f.Add([]byte("exists\nmanifest 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef 12\nmanifest zz 1\n"))
	l := layout.Layout{DeployTo: "/srv/app", Releases: "releases", Shared: "shared", Current: "current"}
	f.Fuzz(func(t *testing.T, out []byte) {
		s, err := parseState(l, out)
		if err != nil {
			return
		}
		for _, id := range s.Releases {
			if !layout.IsReleaseID(id) {
				t.Fatalf("release %q is not a release id", id)
			}
		}
		for id, m := range s.Meta {
			if !layout.IsReleaseID(id) || m.ID != id {
				t.Fatalf("metadata %q (id %q) accepted", id, m.ID)
			}
		}
		// The manifest's checksum names a file to fetch and compare: hex
		// only, never text the host chose.
		if s.manifestSum != "" && (len(s.manifestSum) != 64 || strings.Trim(s.manifestSum, "0123456789abcdef") != "" || s.manifestSize < 0) {
			t.Fatalf("manifest %q of %d bytes accepted", s.manifestSum, s.manifestSize)
		}
		if s.Current != "" && !layout.IsReleaseID(s.Current) {
			t.Fatalf("current %q is not a release id", s.Current)
		}
	})
}
