package deploy

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/shell"
)

// ReleaseRow is one release as `slipway releases` shows it, across hosts.
type ReleaseRow struct {
	ID       string    `json:"id"`
	State    string    `json:"state"` // live, previous, deployed, failed, rolled back, preparing, adopted; or per host when hosts differ
	Time     time.Time `json:"time,omitzero"`
	User     string    `json:"user,omitempty"`
	Revision string    `json:"revision,omitempty"`
	Branch   string    `json:"branch,omitempty"`
	Digest   string    `json:"digest,omitempty"`
	Dirty    bool      `json:"dirty,omitempty"`
	Hosts    []string  `json:"hosts"`              // hosts that have the release directory
	States   []string  `json:"host_states"`        // state on each host of Hosts, in the same order
	Missing  []string  `json:"missing,omitempty"`  // hosts without the release directory
	Removed  bool      `json:"removed,omitempty"`  // only history is left (a failed release)
	Failure  string    `json:"failure,omitempty"`  // why a failed release failed
	Adopted  bool      `json:"adopted,omitempty"`  // made by another tool (Capistrano)
	Warnings []string  `json:"warnings,omitempty"` // unreadable metadata and such
}

// Releases reads every selected host and lists their releases, newest first.
func Releases(ctx context.Context, opts Options) ([]ReleaseRow, error) {
	r := newRun(opts)
	steps := []any{connectStep{r}, inspectStep{r: r}}
	if err := r.runner.Run(ctx, steps, r.targets); err != nil {
		return nil, err
	}
	return releaseRows(r.targets), nil
}

// hostReleaseState is the state of release id on one host, as shown.
func hostReleaseState(s *State, id string) string {
	switch {
	case id == s.Current:
		return "live"
	case id == s.RollbackTarget():
		return "previous"
	}
	m, ok := s.Meta[id]
	if !ok {
		return "adopted"
	}
	return strings.ReplaceAll(m.State, "_", " ")
}

func releaseRows(targets []*Target) []ReleaseRow {
	rows := map[string]*ReleaseRow{}
	get := func(id string) *ReleaseRow {
		if rows[id] == nil {
			rows[id] = &ReleaseRow{ID: id}
		}
		return rows[id]
	}
	for _, t := range withState(targets) {
		s := t.State
		for _, id := range s.Releases {
			row := get(id)
			row.Hosts = append(row.Hosts, t.Name())
			row.States = append(row.States, hostReleaseState(s, id))
			if m, ok := s.Meta[id]; ok {
				fillFromMeta(row, m)
			} else {
				row.Adopted = true
			}
		}
		for id, m := range s.Meta {
			if !s.HasRelease(id) {
				fillFromMeta(get(id), m)
			}
		}
		for _, f := range s.BadMeta {
			row := get(strings.TrimSuffix(f, ".json"))
			row.Warnings = append(row.Warnings, fmt.Sprintf("%s: metadata unreadable, not trusted", t.Name()))
		}
	}
	var out []ReleaseRow
	for _, row := range rows {
		if len(row.Hosts) == 0 {
			row.Removed = true
		}
		for _, t := range targets {
			if !slices.Contains(row.Hosts, t.Name()) && len(row.Hosts) > 0 {
				row.Missing = append(row.Missing, t.Name())
			}
		}
		row.State = summarizeStates(row)
		if row.Time.IsZero() && row.Adopted {
			row.Time, _ = time.Parse("20060102150405", row.ID)
		}
		out = append(out, *row)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID > out[j].ID })
	return out
}

func fillFromMeta(row *ReleaseRow, m *ReleaseMeta) {
	row.User, row.Revision, row.Branch, row.Digest, row.Dirty = m.User, m.Revision, m.Branch, m.Digest, m.Dirty
	row.Time = m.CreatedAt
	if !m.LiveAt.IsZero() {
		row.Time = m.LiveAt
	}
	if m.State == StateFailed {
		row.Failure = m.Error
	}
	if len(row.Hosts) == 0 {
		row.State = strings.ReplaceAll(m.State, "_", " ")
	}
}

func summarizeStates(row *ReleaseRow) string {
	if len(row.Hosts) == 0 {
		return row.State + " (removed)"
	}
	same := true
	for _, s := range row.States {
		if s != row.States[0] {
			same = false
		}
	}
	if same {
		return row.States[0]
	}
	var parts []string
	for i, h := range row.Hosts {
		parts = append(parts, row.States[i]+" on "+h)
	}
	return strings.Join(parts, ", ")
}

// Unlock removes the deploy lock on every selected host and returns who held
// it, per host.
func Unlock(ctx context.Context, opts Options) (map[string]*LockOwner, error) {
	r := newRun(opts)
	holders := make([]*LockOwner, len(r.targets))
	unlock := stepFunc{"unlock", func(ctx context.Context, t *Target) error {
		holders[t.Index] = t.State.Lock
		return Release(ctx, t.Exec, r.layout)
	}}
	err := r.runner.Run(ctx, []any{connectStep{r}, inspectStep{r: r}, unlock}, r.targets)
	out := map[string]*LockOwner{}
	for _, t := range r.targets {
		out[t.Name()] = holders[t.Index]
	}
	return out, err
}

// Cleanup prunes old releases on every selected host, under the lock.
func Cleanup(ctx context.Context, opts Options) (map[string]PruneResult, error) {
	r := newRun(opts)
	results := make([]PruneResult, len(r.targets))
	prune := stepFunc{"cleanup", func(ctx context.Context, t *Target) error {
		res, err := Prune(ctx, t, r.layout, opts.Config.KeepReleases, opts.Config.Cleanup.Sudo)
		results[t.Index] = res
		r.reportPrune(t, res, nil)
		return err
	}}
	inspect := inspectStep{r: r}
	err := r.runner.Run(ctx, append(append([]any{connectStep{r}}, lockSteps(r, &inspect)...), inspect, prune), r.targets)
	out := map[string]PruneResult{}
	for _, t := range r.targets {
		out[t.Name()] = results[t.Index]
	}
	return out, err
}

// reportPrune warns about releases cleanup kept or could not delete.
func (r *run) reportPrune(t *Target, res PruneResult, err error) {
	if err != nil {
		r.warn(t, "cleanup failed, old releases stay until the next cleanup: %v", err)
	}
	if len(res.InUse) > 0 {
		r.warn(t, "kept %s: a running process still uses it (its working directory, executable or open files); cleanup deletes it once that process is gone", strings.Join(res.InUse, ", "))
	}
	if len(res.Failed) > 0 {
		r.warn(t, "could not delete %s: it holds files the deploy user cannot remove (made by the web server's user?). Set cleanup: {sudo: true} to delete with sudo -n, or give the deploy user rights with a default ACL (setfacl -d -m u:DEPLOY_USER:rwX on the writable directories)", strings.Join(res.Failed, ", "))
	}
}

// Setup creates the deploy directory layout and the shared directories on
// every selected host. Shared files are not created (their content is the
// user's), but missing ones are reported with how to create them.
func Setup(ctx context.Context, opts Options) error {
	r := newRun(opts)
	l := r.layout
	shared := opts.Config.Shared
	setup := stepFunc{"setup", func(ctx context.Context, t *Target) error {
		dirs := []string{l.ReleasesDir(), l.SharedDir(), l.HistoryDir()}
		for _, d := range shared.Dirs {
			dirs = append(dirs, l.SharedPath(d))
		}
		for _, f := range shared.Files {
			dirs = append(dirs, parentDir(l.SharedPath(f)))
		}
		script := fmt.Sprintf("umask 022 && mkdir -p -- %s && test -w %s", shell.Join(dirs...), shell.Quote(l.DeployTo))
		if sharedWritable, _ := splitWritable(opts.Config); len(sharedWritable) > 0 {
			var paths []string
			for _, d := range sharedWritable {
				paths = append(paths, l.SharedPath(d))
			}
			script += "\n" + writableScript(opts.Config.Writable.Mode, opts.Config.Writable.User, paths)
		}
		if _, err := t.Exec.Exec(ctx, host.Command{Script: script}); err != nil {
			return fmt.Errorf("creating the layout under %s: %w (the deploy user needs write access: sudo mkdir -p %s && sudo chown USER %s)", l.DeployTo, err, l.DeployTo, l.DeployTo)
		}
		return nil
	}}
	check := stepFunc{"check shared", func(ctx context.Context, t *Target) error {
		for _, f := range t.State.MissingShared {
			r.warn(t, "shared file %s does not exist yet; create it before deploying (for example: scp .env.production %s:%s)", l.SharedPath(f), t.Name(), l.SharedPath(f))
		}
		return nil
	}}
	return r.runner.Run(ctx, []any{connectStep{r}, setup, inspectStep{r: r, sharedFiles: shared.Files}, check}, r.targets)
}

// CheckReport is what `slipway check` found on one host.
type CheckReport struct {
	Host     string
	Current  string
	Releases int
	FreeKB   int64
	Lock     *LockOwner
	Problems []string // the host cannot take a deploy
	Warnings []string // it can, but something will hurt (a php-fpm restart hook)
}

// Check verifies every selected host can take a deploy: reachable, tools
// present, deploy directory writable, shared files present, disk space.
// It changes nothing.
func Check(ctx context.Context, opts Options) ([]CheckReport, error) {
	r := newRun(opts)
	l := r.layout
	reports := make([]CheckReport, len(r.targets))
	fpmHooks := FPMHooks(opts.Config.Hooks)
	probe := stepFunc{"check", func(ctx context.Context, t *Target) error {
		rep := &reports[t.Index]
		rep.Host = t.Name()
		rep.Current, rep.Releases, rep.Lock = t.State.Current, len(t.State.Releases), t.State.Lock
		// What the deploy's scripts run: the release copy and upload (tar,
		// gzip, cp), the manifest and its checks (sha256sum, awk, sort, wc,
		// cat), the switch and cleanup.
		tools := []string{"tar", "gzip", "cp", "sha256sum", "awk", "sort", "wc", "cat", "readlink", "mkdir", "ln", "mv", "rm", "head", "tr", "sync", "env", "df"}
		// The nearest existing ancestor must be writable for a first deploy.
		script := fmt.Sprintf(`for t in %s; do command -v "$t" >/dev/null 2>&1 || echo "missing-tool $t"; done
d=%s; while [ ! -e "$d" ]; do d=$(dirname -- "$d"); done
[ -w "$d" ] || echo "not-writable $d"
df -Pk -- "$d" | awk 'NR==2 {print "free-kb " $4}'`, strings.Join(tools, " "), shell.Quote(l.DeployTo))
		res, err := t.Exec.Query(ctx, host.Command{Script: script})
		if err != nil {
			return err
		}
		for _, line := range strings.Split(strings.TrimSpace(string(res.Stdout)), "\n") {
			kind, rest, _ := strings.Cut(line, " ")
			switch kind {
			case "missing-tool":
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s is not installed (slipway needs it on the host)", rest))
			case "not-writable":
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s is not writable by the deploy user; run: sudo mkdir -p %s && sudo chown $USER %s", rest, l.DeployTo, l.DeployTo))
			case "free-kb":
				rep.FreeKB, _ = strconv.ParseInt(rest, 10, 64)
			}
		}
		rep.Warnings = fpmWarnings(ctx, t, fpmHooks)
		for _, w := range rep.Warnings {
			r.warn(t, "%s", w)
		}
		if t.State.CurrentIsDir {
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s is a real directory, not a symlink; move it aside before deploying", l.CurrentLink()))
		}
		for _, f := range t.State.MissingShared {
			rep.Problems = append(rep.Problems, fmt.Sprintf("shared file %s does not exist; create it before deploying", l.SharedPath(f)))
		}
		for _, f := range t.State.BadMeta {
			rep.Problems = append(rep.Problems, fmt.Sprintf("release metadata %s/%s is malformed", l.HistoryDir(), f))
		}
		if len(rep.Problems) > 0 {
			return fmt.Errorf("%s", strings.Join(rep.Problems, "; "))
		}
		return nil
	}}
	err := r.runner.Run(ctx, []any{connectStep{r}, inspectStep{r: r, sharedFiles: opts.Config.Shared.Files}, probe}, r.targets)
	for i := range reports {
		reports[i].Host = r.targets[i].Name()
	}
	return reports, err
}

// stepFunc is a step made of a function, for the short pipelines of the
// maintenance commands.
type stepFunc struct {
	name string
	fn   func(context.Context, *Target) error
}

func (s stepFunc) Name() string                             { return s.name }
func (s stepFunc) Run(ctx context.Context, t *Target) error { return s.fn(ctx, t) }

func parentDir(p string) string {
	i := strings.LastIndexByte(p, '/')
	if i <= 0 {
		return "/"
	}
	return p[:i]
}

// fpmWarnings explains the hooks that would kill requests in flight on t.
// A reload is only harmful while process_control_timeout is 0, which is
// read from the host's own php-fpm configuration.
func fpmWarnings(ctx context.Context, t *Target, hooks []FPMHook) []string {
	var out []string
	var zeroTimeout []string
	readTimeouts := true
	for _, h := range hooks {
		switch h.Action {
		case FPMRestart:
			out = append(out, fpmRestartWarning(h))
		case FPMReload:
			if readTimeouts {
				readTimeouts = false
				res, err := t.Exec.Query(ctx, host.Command{Script: fpmTimeoutScript})
				if err != nil {
					out = append(out, fmt.Sprintf("could not read php-fpm's process_control_timeout: %v", err))
					continue
				}
				zeroTimeout = parseFPMTimeouts(string(res.Stdout))
			}
			if len(zeroTimeout) > 0 {
				out = append(out, fpmReloadWarning(h, zeroTimeout))
			}
		}
	}
	return out
}
