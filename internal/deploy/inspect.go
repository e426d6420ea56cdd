package deploy

import (
	"context"
	"errors"

	"fmt"
	"strings"
	"time"

	"github.com/slipway-deploy/slipway/internal/config"

	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/layout"
	"github.com/slipway-deploy/slipway/internal/shell"
)

// inspectStep reads each host's deploy directory: its releases and their
// history, what current points at, the lock's holder, missing shared
// files and, for a delta upload, the live manifest's checksum. After a
// lock step it parses what was read with the lock.
type inspectStep struct {
	releaseHosts
	r           *run
	sharedFiles []string
	// sharedDirs are asked whether they still need seeding (missing or
	// empty): only those hosts are sent the release's copy.
	sharedDirs []string
	// forSwitch refuses a host whose current is a real directory or whose
	// shared files are missing: a run that would switch it must stop
	// before changing anything.
	forSwitch bool
	// manifest also reads the live release's manifest's checksum, for a
	// delta upload.
	manifest bool
	// sums also reads the SHA-256 of each of these shared files (status,
	// slipway shared): hosts whose copies differ are told apart without
	// reading the files themselves.
	sums []string
	// fetcher also asks which download tool the host has (curl, wget),
	// for a deploy through the artifact store.
	fetcher bool
	// flavour also asks which tar the host has and whether it has zstd,
	// for a run that makes a release (a rollback makes none).
	flavour bool
}

func (inspectStep) Name() string { return "inspect" }

func (s inspectStep) script() string {
	var tools []string
	if s.forSwitch {
		for _, t := range needsOf(s.r.opts.Config).tools {
			tools = append(tools, t.name)
		}
	}
	return inspectScript(s.r.layout, inspectAsk{sharedFiles: s.sharedFiles, seedDirs: s.sharedDirs, manifest: s.manifest,
		tools: tools, flavour: s.flavour, fetcher: s.fetcher}) + sharedSumsScript(s.r.layout, s.sums)
}

// sharedSumsScript prints a record `shared-sum NAME SHA` for each of
// names: the SHA-256 of the shared file, - when it is not there (or not a
// regular file), ? when it could not be read. It runs after inspectScript,
// in the deploy directory.
func sharedSumsScript(l layout.Layout, names []string) string {
	var b strings.Builder
	for _, name := range names {
		b.WriteString(shell.Script(`if [ -f {{path}} ]; then if { s=$(sha256sum < {{path}}); } 2>/dev/null; then printf 'shared-sum %s %s\n' {{name}} "${s%% *}"; else printf 'shared-sum %s ?\n' {{name}}; fi; else printf 'shared-sum %s -\n' {{name}}; fi`+"\n",
			shell.Args{"path": l.SharedPath(name), "name": name}))
	}
	return b.String()
}

func (s inspectStep) read(ctx context.Context, t *Target) error {
	raw := t.prefetched
	t.prefetched = nil
	if raw == nil {
		res, err := t.Exec.Query(ctx, host.Command{Script: s.script()})
		if err != nil {
			return err
		}
		raw = res.Stdout
	}
	st, err := parseState(s.r.layout, raw)
	if err != nil {
		return err
	}
	st.Previous = st.Current
	t.State = st
	return nil
}

func (s inspectStep) Run(ctx context.Context, t *Target) error {
	if err := s.read(ctx, t); err != nil {
		return err
	}
	st := t.State
	if s.forSwitch {
		if err := s.refusal(t); err != nil {
			return err
		}
	}
	if m := st.Meta[st.Current]; m != nil && (m.State == StatePreparing || m.State == StateRolledBack) && s.r.lock.Holds(t) {
		// The live release went live, so it counts as deployed: the
		// rollback target once a newer release is live, never a leftover
		// to delete. A run that died after its switch left it preparing; a
		// rollback from it that died before its switch, rolled back.
		why := "the run that switched to it did not record it (it died, or lost its lock and may be switching back)"
		if m.State == StateRolledBack {
			why = "it is recorded as rolled back from (a rollback from it stopped before its switch)"
		}
		m.State, m.RolledBack = StateDeployed, time.Time{}
		if _, err := t.Exec.Exec(ctx, host.Command{Script: writeMetaScript(s.r.layout, m)}); err != nil {
			return fmt.Errorf("recording live release %s as deployed: %w", m.ID, err)
		}
		s.r.warn(t, "release %s is live, but %s; recorded as deployed now", m.ID, why)
	}
	for _, f := range st.BadMeta {
		s.r.warn(t, "release metadata %s/%s is malformed and is ignored (not trusted); delete it if the release is gone", s.r.layout.HistoryDir(), f)
	}
	return nil
}

// Plan reads the host and notes in the plan what would stop a deploy
// there, instead of stopping.
func (s inspectStep) Plan(ctx context.Context, t *Target) error {
	if err := s.read(ctx, t); err != nil {
		return err
	}
	hp := s.r.plan.host(t)
	hp.Live = t.State.Current
	if lock := t.State.Lock; lock != nil {
		hp.Locked = lock.String()
		if why := lock.stale(s.r.owner.Machine, s.r.opts.Now(), processAlive); why != "" {
			hp.Warnings = append(hp.Warnings, "the lock would be taken over: "+why)
			hp.Locked = ""
		}
	}
	if t.State.CurrentIsDir {
		hp.Warnings = append(hp.Warnings, s.currentIsDir().Error())
	}
	for _, p := range s.toolProblems(t) {
		hp.Warnings = append(hp.Warnings, "the deploy would stop before any change: "+p.Error())
	}
	for _, missing := range t.State.MissingShared {
		hp.Warnings = append(hp.Warnings, fmt.Sprintf("shared file %s is missing: the deploy would stop before any change", s.r.layout.SharedPath(missing)))
	}
	if bad := t.State.BadShared; len(bad) > 0 {
		hp.Warnings = append(hp.Warnings, badShared(t, s.r.layout, bad).Error()+" (the deploy would stop before any change)")
	}
	return nil
}

// refusal says why a run that switches must not touch t.
func (s inspectStep) refusal(t *Target) error {
	if t.State.CurrentIsDir {
		return s.currentIsDir()
	}
	if problems := s.toolProblems(t); len(problems) > 0 {
		errs := make([]error, len(problems))
		for i := range problems {
			errs[i] = &problems[i]
		}
		return errors.Join(errs...)
	}
	if missing := t.State.MissingShared; len(missing) > 0 {
		return missingShared(t, s.r.layout, missing)
	}
	if bad := t.State.BadShared; len(bad) > 0 {
		return badShared(t, s.r.layout, bad)
	}
	return nil
}

// toolProblems are the tools a deploy of this config needs that t lacks,
// or has only in a flavour that cannot do the job.
func (s inspectStep) toolProblems(t *Target) []Problem {
	cfg := s.r.opts.Config
	return append(toolProblems(t.State.MissingTools, needsOf(cfg).tools), flavourProblems(cfg, t.State)...)
}

// flavourProblems are the tools a host has only in a flavour that cannot
// do what cfg asks of them.
func flavourProblems(cfg *config.Config, st *State) []Problem {
	if cfg.Source.Compress == "zstd" && cfg.Source.Strategy == "upload" && st.Tar != "" && st.Tar != tarGNU {
		return []Problem{{
			What: "source.compress: zstd extracts with GNU tar (tar -I zstd), and this host's tar is " + st.Tar + "'s",
			Fix:  installCommand("tar") + "; or set source.compress: auto",
		}}
	}
	if cfg.Source.Hardlink && st.Tar == tarBusyBox {
		return []Problem{{
			What: "source.hardlink copies with GNU cp (cp -a -l --parents), and this host has BusyBox's",
			Fix:  installCommand("coreutils") + "; or set source.hardlink: false",
		}}
	}
	return nil
}

func (s inspectStep) currentIsDir() error {
	cur := s.r.layout.CurrentLink()
	return fmt.Errorf("%s is a real directory, not a symlink, so it cannot be switched atomically; move it aside (mv %s %s.old), then deploy again", cur, cur, cur)
}

// missingShared refuses a release whose shared files do not exist: the app
// would start without its .env.
func missingShared(t *Target, l layout.Layout, missing []string) error {
	paths := sharedPaths(l, missing)
	return fmt.Errorf("shared file %s does not exist; create it on the host (for example: scp .env.production %s:%s), then deploy again",
		strings.Join(paths, ", "), t.Name(), paths[0])
}

// sharedDirStateScript reports a shared directory that needs seeding
// (seed-shared: missing, or empty) or that is there but no directory
// (bad-shared: a link to what does not exist, a volume not mounted, a
// file). One the user cannot list is not empty as far as a deploy knows:
// it is never seeded over.
const sharedDirStateScript = `if [ ! -e {{path}} ] && [ ! -L {{path}} ]; then printf 'seed-shared %s\n' {{name}}
elif [ ! -d {{path}} ]; then printf 'bad-shared %s\n' {{name}}
elif [ -r {{path}} ] && slipway_ls=$(ls -A -- {{path}} 2>/dev/null) && [ -z "$slipway_ls" ]; then printf 'seed-shared %s\n' {{name}}; fi`

// badShared refuses a release whose shared directories are there but are
// no directories: its links would lead nowhere, and the app would start
// without its data.
func badShared(t *Target, l layout.Layout, bad []string) error {
	paths := sharedPaths(l, bad)
	return fmt.Errorf("shared directory %s on %s is not a directory (a symlink to a path that does not exist, such as a volume not mounted, or a file); mount or create what it stands for (ls -ld %s shows what is there), then deploy again",
		strings.Join(paths, ", "), t.Name(), paths[0])
}

// sharedPaths are the paths on a host of the shared entries names.
func sharedPaths(l layout.Layout, names []string) []string {
	paths := make([]string, len(names))
	for i, name := range names {
		paths[i] = l.SharedPath(name)
	}
	return paths
}

// inspectAsk is what an inspection asks beyond the deploy directory
// itself.
type inspectAsk struct {
	sharedFiles []string // which are missing
	seedDirs    []string // which shared directories are missing or empty
	manifest    bool     // the live manifest's checksum and size
	tools       []string // which are missing
	flavour     bool     // which tar (GNU, BusyBox, another), and whether zstd is there
	fetcher     bool     // curl, else wget, else none: what downloads from the artifact store
}

// recordsAwk prints a record line for each file it is given: a release's
// metadata ("meta NAME ..."), the lock's owner ("lock ...") or a refreshed
// expiry ("lock-expires TOKEN ..."), with the file's beginning on the
// line (maxRecordFile, the awk's max), its newlines made spaces, so no
// file can start a record of its own. One awk for all of them, where a head and a tr per file cost a
// host two processes for each release it keeps; a host without awk
// reads them that way.
const recordsAwk = `BEGIN {
  for (i = 1; i < ARGC; i++) {
    f = ARGV[i]; s = ""
    while (length(s) < max && (getline line < f) > 0) s = s line " "
    close(f)
    n = f; sub(/.*\//, "", n)
    if (f ~ /\/lock\/owner\.json$/) printf "lock "
    else if (f ~ /\/lock\/expires\./) { sub(/^expires\./, "", n); printf "lock-expires %s ", n }
    else printf "meta %s ", n
    print substr(s, 1, max)
  }
}`

// inspectScript reads everything a run needs to know about a host in one
// round trip. It prints one record per line; release names are filtered to
// release ids by the shell, so odd directory names cannot fake records.
// With tools, it also says which of them are missing; with flavour,
// which tar the host has (GNU, BusyBox or another): the scripts that
// follow use the flags that one knows; and whether it has zstd, for the
// upload's stream.
func inspectScript(l layout.Layout, ask inspectAsk) string {
	args := shell.Args{
		"deploy_to": l.DeployTo, "current": l.Current, "releases": l.Releases, "meta": layout.MetaDir,
		"id_glob": shell.Raw(strings.Repeat("[0-9]", len(layout.ReleaseIDFormat))),
		"records": recordsAwk, "max": maxRecordFile,
	}
	// What the host has comes first: it holds for a host without the
	// deploy directory too (a plan of a first deploy).
	var script string
	if len(ask.tools) > 0 {
		script += shell.Script(`for t in {{tools}}; do command -v "$t" >/dev/null 2>&1 || echo "missing-tool $t"; done
`, shell.Args{"tools": ask.tools})
	}
	if ask.flavour {
		script += `case $(tar --version 2>&1 | head -n 1) in *GNU*) echo 'tar gnu';; *busybox*|*BusyBox*) echo 'tar busybox';; *) echo 'tar other';; esac
if command -v zstd >/dev/null 2>&1; then echo zstd; fi
`
	}
	if ask.fetcher {
		script += "if command -v curl >/dev/null 2>&1; then echo 'fetch curl'; elif command -v wget >/dev/null 2>&1; then echo 'fetch wget'; else echo 'fetch none'; fi\n"
	}
	script += shell.Script(`cd -- {{deploy_to}} 2>/dev/null || { echo absent; exit 0; }
cur=; if [ -L {{current}} ]; then cur=$(readlink -- {{current}}); printf 'current %s\n' "$cur"; elif [ -e {{current}} ]; then echo current-not-link; fi
for r in {{releases}}/*; do [ -d "$r" ] && [ ! -L "$r" ] || continue; n=${r##*/}; case $n in {{id_glob}}) echo "release $n";; esac; done
set --
for f in {{meta}}/releases/*.json; do [ -f "$f" ] && set -- "$@" "$f"; done
if [ -f {{meta}}/lock/owner.json ]; then set -- "$@" {{meta}}/lock/owner.json; elif [ -d {{meta}}/lock ]; then echo 'lock {}'; fi
for f in {{meta}}/lock/expires.*; do case $f in *.tmp) ;; *) [ -f "$f" ] && set -- "$@" "$f";; esac; done
if [ $# -eq 0 ]; then :; elif command -v awk >/dev/null 2>&1; then awk -v max={{max}} {{records}} "$@"
else for f; do case $f in */lock/owner.json) printf 'lock ';; */lock/expires.*) printf 'lock-expires %s ' "${f##*/expires.}";; *) printf 'meta %s ' "${f##*/}";; esac; head -c {{max}} -- "$f" | tr '\n' ' '; echo; done; fi
`, args)
	for _, f := range ask.sharedFiles {
		script += shell.Script(`[ -e {{path}} ] || printf 'missing-shared %s\n' {{name}}`+"\n", shell.Args{"path": l.Shared + "/" + f, "name": f})
	}
	for _, dir := range ask.seedDirs {
		script += shell.Script(sharedDirStateScript+"\n", shell.Args{"path": l.Shared + "/" + dir, "name": dir})
	}
	if ask.manifest {
		// The live release's manifest by its checksum and size only: the
		// hosts of a fleet normally hold the same one, which manifestStep
		// then fetches from one of them. cur is current's target, read above.
		script += shell.Script(`if [ -n "$cur" ]; then id=${cur##*/}; case $id in {{id_glob}}) m={{meta}}/manifests/$id; if [ -f "$m" ] && sum=$(sha256sum < "$m") && size=$(wc -c < "$m"); then printf 'manifest %s %s\n' "${sum%% *}" $size; fi;; esac; fi`+"\n",
			shell.Args{"meta": layout.MetaDir, "id_glob": args["id_glob"]})
	}
	return script
}
