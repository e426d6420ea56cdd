package deploy

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/layout"
	"github.com/slipway-deploy/slipway/internal/shell"
)

// CheckReport is what `slipway check` found on one host. What it could
// not measure stays unknown: a host that was not reached (Reached false)
// or not read (Read false) has no user, releases, space or lock to show,
// and Err says why.
type CheckReport struct {
	Host      string
	Reached   bool
	Read      bool
	Err       error  // why the host was not reached, or not read
	NoRelease bool   // a no_release host: only reached, it takes no release
	User      string // the deploy user, as the host names it (id -un)
	Switch    string // how the switch renames there: sftp, exec (no SFTP) or local
	Current   string
	Releases  int
	FreeKB    int64 // free space where releases go; -1 when unknown
	Lock      *LockOwner
	Problems  []Problem // the host cannot take a deploy
	Warnings  []string  // it can, but something will hurt (a php-fpm restart hook)
}

// Problem is something on a host a deploy of this configuration would
// fail on, and how to fix it there.
type Problem struct {
	What string
	Fix  string
}

func (p *Problem) Error() string { return p.What + "\nfix: " + p.Fix }

// Check verifies every selected host can take a deploy of this
// configuration: reachable, the deploy directory there and writable, the
// shared files present, every tool the configured modes run, disk space.
// Every host is checked to the end, whatever the others do; the error
// joins a *HostError per host that is unreachable (a *ConnectError),
// could not be read, or has problems. It changes nothing.
func Check(ctx context.Context, opts Options) ([]CheckReport, error) {
	r := newRun(ctx, opts)
	reports := make([]CheckReport, len(r.targets))
	for i, t := range r.targets {
		reports[i] = CheckReport{Host: t.Name(), NoRelease: t.Host.NoRelease, FreeKB: -1}
	}
	// One step: a pipeline stops after the first step any host fails, and
	// a preflight must go through every check on every host.
	check := stepFunc{name: "check", allHosts: true, fn: func(ctx context.Context, t *Target) error {
		rep := &reports[t.Index]
		err := r.checkHost(ctx, t, rep)
		if err != nil && !rep.Read {
			rep.Err = err
		}
		return err
	}}
	err := r.pipeline([]Step{perHost(check)})
	return reports, err
}

// checkHost fills rep for t, and returns an error when t cannot take a
// deploy: a *ConnectError, a failed read, or its problems joined.
func (r *run) checkHost(ctx context.Context, t *Target, rep *CheckReport) error {
	ex, err := r.opts.Dial(ctx, t.Host)
	if err != nil {
		return &ConnectError{Host: t.Name(), Err: err}
	}
	defer ex.Close()
	t.Exec = ex
	rep.Reached = true
	rep.Switch = ex.RenamePath()
	if t.Host.NoRelease {
		return nil
	}
	inspect := inspectStep{r: r, forSwitch: true, flavour: true}
	if err := inspect.read(ctx, t); err != nil {
		return fmt.Errorf("reading %s: %w", r.layout.DeployTo, err)
	}
	facts, err := r.probe(ctx, t)
	if err != nil {
		return fmt.Errorf("checking %s: %w", r.layout.DeployTo, err)
	}
	rep.Read = true
	rep.User, rep.FreeKB = facts.user, facts.freeKB
	rep.Current, rep.Releases, rep.Lock = t.State.Current, len(t.State.Releases), t.State.Lock
	rep.Problems = append(r.problems(t, facts), flavourProblems(r.opts.Config, t.State)...)
	if facts.absent && facts.canCreate && r.setupNeed() == "" {
		rep.Warnings = append(rep.Warnings, fmt.Sprintf("%s does not exist yet; the first deploy creates it (slipway setup %s creates it now)", r.layout.DeployTo, r.opts.Stage.Name))
	}
	rep.Warnings = append(rep.Warnings, fpmWarnings(ctx, t, FPMHooks(r.opts.Config.Hooks))...)
	rep.Warnings = append(rep.Warnings, r.webServerWarnings(ctx, t)...)
	rep.Problems = append(rep.Problems, r.opcacheProblems(ctx, t, facts.user)...)
	for _, w := range rep.Warnings {
		r.warn(t, "%s", w)
	}
	var errs []error
	for i := range rep.Problems {
		errs = append(errs, &rep.Problems[i])
	}
	return errors.Join(errs...)
}

// hostTool is a program the deploy's scripts run on a host, the package
// that has it (the same name on Debian, Alpine and RHEL), and why.
type hostTool struct{ name, pkg, usedBy string }

// baseTools are what every deploy's scripts run: the release copy and
// upload (tar, gzip, cp, xargs), the manifest and its checks (sha256sum,
// awk, sort, wc), the lock (grep), the switch, cleanup (find) and check.
var baseTools = func() []hostTool {
	var tools []hostTool
	for _, pkg := range []struct {
		name  string
		tools []string
	}{
		{"coreutils", []string{"cp", "sha256sum", "sort", "wc", "cat", "readlink", "mkdir", "ln", "mv", "rm", "head", "tr", "sync", "env", "df", "du", "chmod", "ls", "dirname", "id", "sleep"}},
		{"tar", []string{"tar"}},
		{"gzip", []string{"gzip"}},
		{"gawk", []string{"awk"}},
		{"grep", []string{"grep"}},
		{"findutils", []string{"find", "xargs"}},
	} {
		for _, name := range pkg.tools {
			tools = append(tools, hostTool{name, pkg.name, "every deploy runs it"})
		}
	}
	return tools
}()

// checkNeeds is what a deploy of a configuration needs on each host,
// beyond the layout: the tools its modes run, sudo, the web server's user.
type checkNeeds struct {
	tools       []hostTool
	sudo        bool     // cleanup.sudo: sudo -n rm must work
	webUser     string   // writable.mode acl: the user granted access must exist
	sharedFiles []string // must exist before a deploy
	sharedDirs  []string // must be directories where they exist
	liveSize    bool     // a new release costs about the live one's size (no hard links)
	repo        bool     // strategy git: the mirror is a layout directory too
}

func needsOf(cfg *config.Config) checkNeeds {
	n := checkNeeds{
		tools:       baseTools,
		sudo:        cfg.Cleanup.Sudo,
		sharedFiles: cfg.Shared.Files,
		sharedDirs:  cfg.Shared.Dirs,
		liveSize:    !cfg.Source.Hardlink,
		repo:        cfg.Source.Strategy == "git",
	}
	if cfg.Writable.Mode == "acl" && len(cfg.Writable.Dirs) > 0 {
		n.tools = append(n.tools, hostTool{"setfacl", "acl", "writable.mode: acl runs it"})
		n.webUser = cfg.Writable.User
	}
	if n.repo {
		n.tools = append(n.tools, hostTool{"git", "git", "strategy: git runs it on the host"})
	}
	if n.sudo {
		n.tools = append(n.tools, hostTool{"sudo", "sudo", "cleanup.sudo runs it"})
	}
	if cfg.Source.Compress == "zstd" && cfg.Source.Strategy == "upload" {
		n.tools = append(n.tools, hostTool{"zstd", "zstd", "source.compress: zstd runs it"})
	}
	return n
}

// layoutDirs are the directories a deploy writes in, when they exist.
func layoutDirs(l layout.Layout, n checkNeeds) []string {
	dirs := []string{l.DeployTo, l.ReleasesDir(), l.SharedDir(), l.MetaDir(), l.HistoryDir(), l.ManifestsDir()}
	if n.repo {
		dirs = append(dirs, l.RepoDir())
	}
	return dirs
}

// checkScript reports, one record per line, the deploy user, missing
// tools, whether the deploy directory exists (else its nearest existing
// ancestor and whether that is writable), the layout directories the user
// cannot write, missing shared files, the free space where releases go and
// the live release's size, and what sudo and the web server's user need.
func checkScript(l layout.Layout, n checkNeeds) string {
	var tools []string
	for _, t := range n.tools {
		tools = append(tools, t.name)
	}
	script := shell.Script(`printf 'user %s\n' "$(id -un 2>/dev/null)"
for t in {{tools}}; do command -v "$t" >/dev/null 2>&1 || echo "missing-tool $t"; done
d={{deploy_to}}
if [ -e "$d" ] || [ -L "$d" ]; then
  for p in {{dirs}}; do
    if [ -e "$p" ] || [ -L "$p" ]; then
      if [ ! -d "$p" ]; then echo "not-dir $p"; elif [ ! -w "$p" ] || [ ! -x "$p" ]; then echo "not-writable $p"; fi
    fi
  done
else
  while [ ! -e "$d" ]; do d=$(dirname -- "$d"); done
  if [ -w "$d" ] && [ -x "$d" ]; then echo "absent-under-writable $d"; else echo "absent-under $d"; fi
fi
f={{releases}}; [ -d "$f" ] || f=$d
df -Pk -- "$f" 2>/dev/null | awk 'NR==2 {print "free-kb " $4}'
`, shell.Args{"tools": tools, "deploy_to": l.DeployTo, "dirs": layoutDirs(l, n), "releases": l.ReleasesDir()})
	if n.liveSize {
		script += shell.Script(`[ -d {{current}}/ ] && du -sk -- {{current}}/ 2>/dev/null | awk '{print "live-kb " $1}'`+"\n", shell.Args{"current": l.CurrentLink()})
	}
	for _, f := range n.sharedFiles {
		script += shell.Script(`[ -e {{path}} ] || printf 'missing-shared %s\n' {{name}}`+"\n", shell.Args{"path": l.SharedPath(f), "name": f})
	}
	// Inspect's own test: its seed-shared lines mean nothing here.
	for _, d := range n.sharedDirs {
		script += shell.Script(sharedDirStateScript+"\n", shell.Args{"path": l.SharedPath(d), "name": d})
	}
	if n.sudo {
		script += `if command -v sudo >/dev/null 2>&1 && ! why=$(sudo -n rm --version 2>&1 >/dev/null); then printf 'sudo-refused %s %s\n' "$(command -v rm)" "$(printf '%s' "$why" | head -n 1)"; fi` + "\n"
	}
	if n.webUser != "" {
		script += shell.Script(`id -u -- {{user}} >/dev/null 2>&1 || echo no-web-user`+"\n", shell.Args{"user": n.webUser})
	}
	return script + "true\n"
}

// hostFacts is what checkScript found on one host.
type hostFacts struct {
	user           string // the deploy user, as the host names it
	missingTools   []string
	absent         bool   // the deploy directory does not exist
	ancestor       string // then, its nearest existing ancestor
	canCreate      bool   // and whether the user may create it there
	notWritable    []string
	notDir         []string
	missingShared  []string
	badShared      []string // shared directories there but no directories
	freeKB, liveKB int64    // -1 when unknown
	sudoRm         string   // the rm sudo refused to run (cleanup.sudo)
	sudoRefused    string   // and what sudo said
	noWebUser      bool
}

func parseFacts(out []byte) *hostFacts {
	f := &hostFacts{freeKB: -1, liveKB: -1}
	for _, line := range strings.Split(string(out), "\n") {
		kind, rest, _ := strings.Cut(line, " ")
		switch kind {
		case "user":
			f.user = strings.TrimSpace(rest)
		case "missing-tool":
			f.missingTools = append(f.missingTools, rest)
		case "absent-under-writable", "absent-under":
			f.absent, f.ancestor, f.canCreate = true, rest, kind == "absent-under-writable"
		case "not-writable":
			f.notWritable = append(f.notWritable, rest)
		case "not-dir":
			f.notDir = append(f.notDir, rest)
		case "missing-shared":
			f.missingShared = append(f.missingShared, rest)
		case "bad-shared":
			f.badShared = append(f.badShared, rest)
		case "free-kb":
			f.freeKB = parseKB(rest)
		case "live-kb":
			f.liveKB = parseKB(rest)
		case "sudo-refused":
			f.sudoRm, f.sudoRefused, _ = strings.Cut(rest, " ")
		case "no-web-user":
			f.noWebUser = true
		}
	}
	return f
}

func parseKB(s string) int64 {
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 {
		return -1
	}
	return n
}

// probe runs checkScript on t: it only reads, so dry runs may call it too.
func (r *run) probe(ctx context.Context, t *Target) (*hostFacts, error) {
	res, err := t.Exec.Query(ctx, host.Command{Script: checkScript(r.layout, needsOf(r.opts.Config))})
	if err != nil {
		return nil, err
	}
	f := parseFacts(res.Stdout)
	if f.user == "" {
		f.user = t.Host.User
	}
	if f.user == "" {
		f.user = "the deploy user"
	}
	return f, nil
}

// minFreeKB is the free space below which a host is refused even without a
// live release to measure a new one by: a release, its upload and its
// metadata need room.
const minFreeKB = 100 << 10

// setupNeed says what of the configuration only setup prepares, so that
// a deploy directory that does not exist yet must be set up before a
// deploy; "" when the first deploy can create it (releases/ and shared/
// are made by every deploy that lacks them).
func (r *run) setupNeed() string {
	cfg := r.opts.Config
	if shared, _ := splitWritable(cfg); len(shared) > 0 {
		return "setup prepares the writable directories inside shared ones, which a deploy never changes"
	}
	if len(cfg.Shared.Files) > 0 {
		return "its shared files must be put in place before a deploy"
	}
	return ""
}

// problems is what would make a deploy fail on t, each with its fix.
func (r *run) problems(t *Target, f *hostFacts) []Problem {
	l := r.layout
	var out []Problem
	if need := r.setupNeed(); f.absent && f.canCreate && need != "" {
		out = append(out, Problem{What: l.DeployTo + " does not exist yet, and " + need, Fix: "slipway setup " + r.opts.Stage.Name})
	}
	out = append(out, r.accessProblems(f)...)
	out = append(out, toolProblems(f.missingTools, needsOf(r.opts.Config).tools)...)
	if f.noWebUser {
		out = append(out, r.webUserProblem())
	}
	for _, name := range f.missingShared {
		p := l.SharedPath(name)
		fix := "copy it there: " + copyCommand(t.Host, p)
		if f.absent {
			fix = "slipway setup " + r.opts.Stage.Name + " (which creates its directory), then " + fix
		}
		out = append(out, Problem{What: fmt.Sprintf("shared file %s does not exist (every release links it)", p), Fix: fix})
	}
	for _, name := range f.badShared {
		p := l.SharedPath(name)
		out = append(out, Problem{What: fmt.Sprintf("shared directory %s is not a directory (a symlink to a path that does not exist, such as a volume not mounted, or a file): every release links it", p),
			Fix: "mount or create what it stands for; ls -ld " + p + " shows what is there"})
	}
	if t.State.CurrentIsDir {
		cur := l.CurrentLink()
		out = append(out, Problem{What: cur + " is a real directory, not a symlink, so it cannot be switched atomically", Fix: fmt.Sprintf("move it aside: mv %s %s.old", cur, cur)})
	}
	for _, name := range t.State.BadMeta {
		file := path.Join(l.HistoryDir(), name)
		out = append(out, Problem{What: "release metadata " + file + " is malformed", Fix: "if its release is gone, delete it: rm " + file})
	}
	if f.sudoRefused != "" {
		out = append(out, Problem{
			What: fmt.Sprintf("sudo -n rm does not work for %s (cleanup.sudo deletes old releases with it): %s", f.user, f.sudoRefused),
			Fix:  fmt.Sprintf("allow it without a password: echo '%s ALL=(root) NOPASSWD: %s' | sudo tee /etc/sudoers.d/slipway; or set cleanup.sudo: false", f.user, cmp.Or(f.sudoRm, "/usr/bin/rm")),
		})
	}
	if need := max(f.liveKB, minFreeKB); f.freeKB >= 0 && f.freeKB < need {
		what := fmt.Sprintf("only %s free on the file system of %s", humanKB(f.freeKB), r.releasesFS(f))
		if f.liveKB >= minFreeKB {
			what += fmt.Sprintf(", and a new release takes about as much as the live one: %s", humanKB(f.liveKB))
		}
		out = append(out, r.spaceProblem(f, what))
	}
	return out
}

func (r *run) webUserProblem() Problem {
	return Problem{
		What: fmt.Sprintf("writable.user %s does not exist on the host (writable.mode: acl grants it the writable directories)", r.opts.Config.Writable.User),
		Fix:  "set writable.user to the user the web server runs as there",
	}
}

// releasesFS is the directory whose file system holds new releases.
func (r *run) releasesFS(f *hostFacts) string {
	if f.absent {
		return f.ancestor
	}
	return r.layout.ReleasesDir()
}

func (r *run) spaceProblem(f *hostFacts, what string) Problem {
	where := r.releasesFS(f)
	return Problem{What: what, Fix: fmt.Sprintf("free space there (df -h %s), or lower keep_releases and run: slipway cleanup %s", where, r.opts.Stage.Name)}
}

// explainFailure turns the failure of a script that writes the layout on
// t into its cause, as check finds it on the host, where the script's
// stderr points at one: on "Permission denied", the layout directory the
// deploy user may not write, named with the user and the fix; on a
// missing tool, its package; on a full disk, where. Only when the host
// shows no such cause is err returned as it is, with the user it ran as:
// never a guess.
func (r *run) explainFailure(ctx context.Context, t *Target, what string, err error) error {
	var exitErr *host.ExitError
	if !errors.As(err, &exitErr) {
		return fmt.Errorf("%s: %w", what, err)
	}
	f, perr := r.probe(ctx, t)
	if perr != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	said := string(exitErr.Stderr)
	// The evidence shown is the command's last line of stderr, or, for a
	// cause found in an earlier line, the last line that shows it (tar
	// ends with "Exiting with failure status due to previous errors").
	evidence := host.Tail(exitErr.Stderr, 1)
	var found []Problem
	if deniedWrite(exitErr.Stderr) {
		found = append(found, r.accessProblems(f)...)
		evidence = lastLineWith(said, evidence, "Permission denied", "Operation not permitted")
	}
	var named []string
	for _, tool := range f.missingTools {
		if regexp.MustCompile(`\b` + regexp.QuoteMeta(tool) + `\b`).MatchString(said) {
			named = append(named, tool)
		}
	}
	found = append(found, toolProblems(named, needsOf(r.opts.Config).tools)...)
	if f.noWebUser && strings.Contains(said, "setfacl") {
		found = append(found, r.webUserProblem())
	}
	if strings.Contains(said, "No space left on device") || strings.Contains(said, "Disk quota exceeded") {
		evidence = lastLineWith(said, evidence, "No space left on device", "Disk quota exceeded")
		free := "no"
		if f.freeKB > 0 {
			free = "only " + humanKB(f.freeKB)
		}
		found = append(found, r.spaceProblem(f, fmt.Sprintf("%s space left on the file system of %s", free, r.releasesFS(f))))
	}
	if len(found) == 0 {
		return fmt.Errorf("%s (as %s): %w", what, f.user, err)
	}
	return &CauseError{What: what, Causes: found, Said: evidence, Err: err}
}

// lastLineWith is the last line of out that holds one of phrases, trimmed,
// or otherwise.
func lastLineWith(out, otherwise string, phrases ...string) string {
	lines := strings.Split(out, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		for _, p := range phrases {
			if strings.Contains(lines[i], p) {
				return strings.TrimSpace(lines[i])
			}
		}
	}
	return otherwise
}

// deniedWrite reports a file system refusal in a command's stderr, not an
// SSH server's refusal of a key ("Permission denied (publickey)").
func deniedWrite(stderr []byte) bool {
	for _, line := range strings.Split(string(stderr), "\n") {
		if line = strings.TrimSpace(line); strings.HasSuffix(line, "Permission denied") || strings.HasSuffix(line, "Operation not permitted") {
			return true
		}
	}
	return false
}

// CauseError is a failed step explained by what the host shows: Causes,
// each with its fix. Said is the failed command's last line of stderr,
// the evidence.
type CauseError struct {
	What   string
	Causes []Problem
	Said   string
	Err    error
}

func (e *CauseError) Error() string {
	var b strings.Builder
	b.WriteString(e.What + " failed")
	if e.Said != "" {
		b.WriteString(" (" + e.Said + ")")
	}
	for _, c := range e.Causes {
		b.WriteString("\n" + c.What + "\nfix: " + c.Fix)
	}
	return b.String()
}

func (e *CauseError) Unwrap() error { return e.Err }

// accessProblems are the layout's: the deploy directory missing where
// the deploy user may not create it, or directories it cannot write.
func (r *run) accessProblems(f *hostFacts) []Problem {
	l := r.layout
	var out []Problem
	if f.absent && !f.canCreate {
		out = append(out, Problem{
			What: fmt.Sprintf("%s does not exist, and %s may not create it: %s is not writable", l.DeployTo, f.user, f.ancestor),
			Fix:  fmt.Sprintf("on the host: sudo mkdir -p %s && sudo chown %s %s; then: slipway setup %s", l.DeployTo, f.user, l.DeployTo, r.opts.Stage.Name),
		})
	}
	for _, d := range f.notDir {
		out = append(out, Problem{What: d + " is not a directory", Fix: fmt.Sprintf("move it aside: mv %s %s.old", d, d)})
	}
	for _, d := range f.notWritable {
		out = append(out, Problem{What: fmt.Sprintf("%s is not writable by %s", d, f.user), Fix: fmt.Sprintf("on the host: sudo chown %s %s", f.user, d)})
	}
	return out
}

// toolProblems are the missing tools, one problem per package.
func toolProblems(missing []string, tools []hostTool) []Problem {
	var pkgs []hostTool
	names := map[string][]string{}
	for _, t := range tools {
		if !slices.Contains(missing, t.name) {
			continue
		}
		if names[t.pkg] == nil {
			pkgs = append(pkgs, t)
		}
		names[t.pkg] = append(names[t.pkg], t.name)
	}
	var out []Problem
	for _, t := range pkgs {
		what := t.name + " is not installed"
		if n := names[t.pkg]; len(n) > 1 {
			what = strings.Join(n, ", ") + " are not installed"
		}
		fix := installCommand(t.pkg)
		if t.pkg == "acl" {
			fix += "; or set writable.mode: group"
		}
		out = append(out, Problem{What: fmt.Sprintf("%s (%s)", what, t.usedBy), Fix: fix})
	}
	return out
}

// installCommand installs pkg on the usual systems.
func installCommand(pkg string) string {
	return fmt.Sprintf("apt-get install %s (Debian/Ubuntu), apk add %s (Alpine), dnf install %s (RHEL)", pkg, pkg, pkg)
}

// copyCommand copies a file of the user's to p on h.
func copyCommand(h config.Host, p string) string {
	if h.Local {
		return "cp FILE " + p
	}
	target := h.Host
	if strings.Contains(target, ":") {
		target = "[" + target + "]" // an IPv6 address
	}
	if h.User != "" {
		target = h.User + "@" + target
	}
	if h.Port != 0 {
		return fmt.Sprintf("scp -P %d FILE %s:%s", h.Port, target, p)
	}
	return fmt.Sprintf("scp FILE %s:%s", target, p)
}

func humanKB(kb int64) string {
	switch {
	case kb >= 1<<20:
		return fmt.Sprintf("%.1f GB", float64(kb)/(1<<20))
	case kb >= 1<<10:
		return fmt.Sprintf("%.1f MB", float64(kb)/(1<<10))
	}
	return fmt.Sprintf("%d KB", kb)
}
