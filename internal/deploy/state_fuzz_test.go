package deploy

import (
	"testing"

	"github.com/slipway-deploy/slipway/internal/layout"
)

// FuzzParseState feeds hostile host output to the state parser: whatever a
// host prints, only well-formed release ids and metadata may come out of
// it, since cleanup deletes by those ids.
func FuzzParseState(f *testing.F) {
	f.Add([]byte("exists\ncurrent releases/20261122103015\nrelease 20261122103015\nmeta 20261122103015.json {\"id\":\"20261122103015\",\"state\":\"deployed\"}\nlock {\"user\":\"a\"}\n"))
	f.Add([]byte("exists\nmeta ../../etc.json {\"id\":\"../../etc\",\"state\":\"deployed\"}\nrelease ../x\n"))
	f.Add([]byte("exists\nmanifest-begin\nslipway-manifest 1\nf 644 1 - \"../x\"\nend\n"))
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
		if s.Current != "" && !layout.IsReleaseID(s.Current) {
			t.Fatalf("current %q is not a release id", s.Current)
		}
	})
}
