package deploy

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/slipway-deploy/slipway/internal/shell"
	"github.com/slipway-deploy/slipway/internal/source"
)

// Database migrations: each release records the names of the files in
// migrations.path it shipped (ReleaseMeta.Migrations). A rollback compares
// the release it leaves with its target: the migrations the one has and
// the other does not are ahead of the target's code in the schema.

// treeMigrations lists the migration files of tree in dir, sorted.
func treeMigrations(tree *source.Tree, dir string) []string {
	names := []string{}
	for _, f := range tree.Files {
		if path.Dir(f.Rel) == dir && f.Mode.IsRegular() {
			names = append(names, path.Base(f.Rel))
		}
	}
	slices.Sort(names)
	return names
}

// listMigrationsScript prints the names of the files in the migrations
// directory dir of release, one a line; nothing without dir.
func listMigrationsScript(release, dir string) shell.Raw {
	if dir == "" {
		return ""
	}
	return shell.Raw(shell.Script(`for f in {{dir}}/*; do [ -f "$f" ] && printf '%s\n' "${f##*/}"; done; true`, shell.Args{"dir": path.Join(release, dir)}))
}

// parseMigrations reads a listing of the migrations directory (one name a
// line), as the git strategy's export prints it.
func parseMigrations(out string) []string {
	names := []string{}
	for _, line := range strings.Split(out, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			names = append(names, line)
		}
	}
	slices.Sort(names)
	return names
}

// migrationsAhead are the migrations release from has that release to
// does not, newest first: what reverses the schema to's code expects. It
// fails when the count cannot be established safely: a release without a
// record of its migrations, or a target whose migrations are not the
// oldest ones of from's (the releases do not descend from each other).
func migrationsAhead(from, to *ReleaseMeta) ([]string, error) {
	switch {
	case from == nil || from.Migrations == nil:
		return nil, fmt.Errorf("the live release has no record of its migrations (deployed before migrations.path was set, or by another tool)")
	case to == nil || to.Migrations == nil:
		return nil, fmt.Errorf("release %s has no record of its migrations (deployed before migrations.path was set, or by another tool)", idOf(to))
	}
	have, want := *from.Migrations, *to.Migrations
	if len(want) > len(have) || !slices.Equal(have[:len(want)], want) {
		return nil, fmt.Errorf("the migrations of release %s are not the oldest of %s's (%s has %s), so which ones to reverse is not known", to.ID, from.ID, to.ID, listOrNone(missingFrom(want, have)))
	}
	ahead := slices.Clone(have[len(want):])
	slices.Reverse(ahead)
	return ahead, nil
}

func missingFrom(want, have []string) []string {
	var out []string
	for _, w := range want {
		if !slices.Contains(have, w) {
			out = append(out, w)
		}
	}
	return out
}

func idOf(m *ReleaseMeta) string {
	if m == nil {
		return "(unknown)"
	}
	return m.ID
}

func listOrNone(names []string) string {
	if len(names) == 0 {
		return "none of its own"
	}
	return strings.Join(names, ", ")
}

// migrationsStep compares, on every host, the migrations of the release
// being left with its target's. Without --with-migrations it warns when
// the schema stays ahead; with it, it decides what to reverse, and
// refuses (before any change) when that is not known for sure or hosts
// disagree.
type migrationsStep struct{ rb *rollbackRun }

func (migrationsStep) Name() string { return "compare migrations" }

func (s migrationsStep) RunFleet(_ context.Context, targets []*Target) error {
	ahead, err := s.ahead(targets)
	if !s.rb.WithMigrations {
		switch {
		case err != nil:
			s.rb.warn(nil, "which migrations the rollback leaves behind is not known: %v", err)
		case len(ahead) > 0:
			s.rb.warn(nil, "the release being left has %d migration(s) its target does not: %s; the database schema stays ahead of the code rolled back to unless something reverses them (rollback --with-migrations runs migrations.rollback for them)", len(ahead), strings.Join(ahead, ", "))
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("--with-migrations: %w; nothing was changed (roll back without it, and reverse the schema by hand if needed)", err)
	}
	if s.rb.opts.Config.Migrations.Rollback == "" {
		return fmt.Errorf("--with-migrations: migrations.rollback is not set (the command that reverses migrations, with $SLIPWAY_MIGRATION_STEPS); nothing was changed")
	}
	s.rb.ahead = ahead
	return nil
}

// PlanFleet notes the migrations in the plan.
func (s migrationsStep) PlanFleet(_ context.Context, targets []*Target) error {
	ahead, err := s.ahead(targets)
	p := s.rb.plan
	p.MigrationsAhead = ahead
	if err != nil {
		p.Warnings = append(p.Warnings, "which migrations the rollback leaves behind is not known: "+err.Error())
	}
	if s.rb.WithMigrations && err == nil && len(ahead) > 0 {
		p.Migrations = fmt.Sprintf("%s (SLIPWAY_MIGRATION_STEPS=%d), once, in the release being left, before any host switches", s.rb.opts.Config.Migrations.Rollback, len(ahead))
	}
	return nil
}

// ahead is the migrations every host's live release has and its target
// does not; hosts must agree.
func (s migrationsStep) ahead(targets []*Target) ([]string, error) {
	var ahead []string
	for i, t := range withState(targets) {
		st := t.State
		a, err := migrationsAhead(st.Meta[st.Current], st.Meta[st.SwitchTo])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t.Name(), err)
		}
		if i > 0 && !slices.Equal(a, ahead) {
			return nil, fmt.Errorf("hosts disagree on the migrations to reverse (%s: %s; others: %s)", t.Name(), listOrNone(a), listOrNone(ahead))
		}
		ahead = a
	}
	return ahead, nil
}

// reverseMigrationsStep runs migrations.rollback once, on the primary
// host, in the release being left (its code knows how to reverse its own
// migrations), before any host switches back.
type reverseMigrationsStep struct{ rb *rollbackRun }

func (reverseMigrationsStep) Name() string { return "reverse migrations" }

func (s reverseMigrationsStep) Where(t *Target) Selection {
	switch {
	case t.Host.NoRelease:
		return NotHere
	case len(s.rb.ahead) == 0 || t != s.rb.primary():
		return SkipHere
	}
	return RunHere
}

func (s reverseMigrationsStep) Run(ctx context.Context, t *Target) error {
	env := []string{
		"SLIPWAY_MIGRATION_STEPS=" + strconv.Itoa(len(s.rb.ahead)),
		"SLIPWAY_MIGRATIONS=" + strings.Join(s.rb.ahead, " "),
	}
	if err := runHook(ctx, s.rb.run, t, s.rb.opts.Config.Migrations.Rollback, t.State.Current, env...); err != nil {
		return fmt.Errorf("reversing %d migration(s) (%s) failed, so no host was switched; the schema may be partly reversed: check it before you go on: %w", len(s.rb.ahead), strings.Join(s.rb.ahead, ", "), err)
	}
	return nil
}

// Plan lists the reversal among the hooks.
func (s reverseMigrationsStep) Plan(_ context.Context, t *Target) error {
	hp := s.rb.plan.host(t)
	hp.Hooks = append(hp.Hooks, fmt.Sprintf("reverse migrations: %s (SLIPWAY_MIGRATION_STEPS=%d)", s.rb.opts.Config.Migrations.Rollback, len(s.rb.ahead)))
	return nil
}
