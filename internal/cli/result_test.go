package cli

import (
	"errors"
	"strings"
	"testing"

	"github.com/slipway-deploy/slipway/internal/deploy"
)

// TestPrintDeployResultSaysWhichHostsMovedOn: a deploy that lost its lock
// mid-switch and found a host switched on by another run does not claim
// that every host it reached was switched back.
func TestPrintDeployResultSaysWhichHostsMovedOn(t *testing.T) {
	res := &deploy.Result{ReleaseID: "20261130000002", Hosts: []deploy.HostResult{
		{Host: "host1", Known: true, Live: "20261130000001", Previous: "20261130000001", RolledBack: true},
		{Host: "host2", Known: true, Live: "20261130000003", Previous: "20261130000001", MovedOn: true},
	}}
	for _, c := range []struct {
		name string
		err  error
		want []string
		not  string
	}{
		{"deploy", &deploy.RolledBackError{ReleaseID: res.ReleaseID, Cause: errors.New("lock lost"), MovedOn: []string{"host2"}},
			[]string{"switched, then back", "switched, then on by another run", "live on no host", "except on 1 host(s) another run switched on"},
			"every host it reached was switched back"},
		{"rollback", errors.New("lock lost"),
			[]string{"switched, then on by another run", "except those another run switched on"},
			"every host stays on its previous release"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var b strings.Builder
			printDeployResult(&b, c.name, res, c.err)
			out := b.String()
			for _, w := range c.want {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, c.not) {
				t.Errorf("output claims %q:\n%s", c.not, out)
			}
		})
	}
}
