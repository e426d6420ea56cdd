package deploy

import (
	"context"
	"fmt"

	"github.com/slipway-deploy/slipway/internal/layout"
	"github.com/slipway-deploy/slipway/internal/shell"
)

// recordStep marks the release live in history and appends Capistrano's
// revisions.log line.
type recordStep struct {
	releaseHosts
	d *deployRun
}

func (recordStep) Name() string { return "record" }

func (s recordStep) Run(ctx context.Context, t *Target) error { return runScripted(ctx, s, t) }

func (recordStep) done(context.Context, *Target) error { return nil }

// script notes the release live in t's state, for cleanup to decide on.
func (s recordStep) script(_ context.Context, t *Target) (string, error) {
	m := s.d.meta(StateDeployed)
	m.LiveAt = s.d.opts.Now().UTC()
	t.State.Meta[m.ID] = m
	t.State.Releases = append(t.State.Releases, m.ID)
	branch := s.d.src.Branch
	if branch == "" {
		branch = "-"
	}
	line := fmt.Sprintf("Branch %s (at %s) deployed as release %s by %s", branch, s.d.src.Revision, m.ID, m.User)
	return writeMetaScript(s.d.layout, m) + " && " + appendLogScript(s.d.layout, line), nil
}

func (recordStep) Plan(context.Context, *Target) error { return nil }

// appendLogScript appends line to revisions.log.
func appendLogScript(l layout.Layout, line string) string {
	return shell.Script(`printf '%s\n' {{line}} | cat >> {{log}}`, shell.Args{"line": line, "log": l.RevisionsLog()})
}
