package config

import (
	"cmp"
	"fmt"
	"io/fs"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/goccy/go-yaml/ast"
)

// section is the set of keys one kind of mapping allows.
type section struct {
	keys    []string // nil allows any key (stage names)
	label   string   // where these keys belong, to point at a key written at the wrong level
	example string   // the mapping in flow style, for "must be a mapping" fixes
}

var (
	topSection        = &section{keys: []string{"app", "recipe", "deploy_to", "keep_releases", "lock_ttl", "symlink", "layout", "source", "forward_agent", "shared", "writable", "cleanup", "env", "notify", "hooks", "migrations", "health", "rollout", "opcache_reset", "artifacts", "stages"}, label: "at the top level"}
	notifySection     = &section{keys: []string{"url", "format", "on"}, label: "in a notify entry", example: "{url: https://hooks.slack.com/services/..., format: slack}"}
	envVarSection     = &section{keys: []string{"value", "secret"}, label: "in an env entry", example: "{value: ${DB_PASSWORD}, secret: true}"}
	rolloutSection    = &section{keys: []string{"strategy", "batch", "pause"}, label: "under rollout:", example: "{strategy: rolling, batch: 25%, pause: 10s}"}
	cleanupSection    = &section{keys: []string{"sudo"}, label: "under cleanup:", example: "{sudo: true}"}
	writableSection   = &section{keys: []string{"dirs", "files", "mode", "user"}, label: "under writable:", example: "{dirs: [bootstrap/cache], mode: group}"}
	layoutSection     = &section{keys: []string{"releases", "shared", "current", "repo"}, label: "under layout:", example: "{releases: releases, shared: shared, current: current}"}
	sourceSection     = &section{keys: []string{"strategy", "path", "repo", "branch", "subdir", "submodules", "exclude", "build", "remote_build", "git_parallel", "delta", "hardlink", "recycle", "verify", "compress"}, label: "under source:", example: "{strategy: upload, path: .}"}
	sharedSection     = &section{keys: []string{"dirs", "files", "files_mode"}, label: "under shared:", example: "{dirs: [storage], files: [.env]}"}
	hooksSection      = &section{keys: []string{"before_switch", "after_switch", "before_rollback", "after_rollback", "after_shared_push"}, label: "under hooks:", example: "{before_switch: [php artisan migrate --force]}"}
	migrationsSection = &section{keys: []string{"path", "rollback"}, label: "under migrations:", example: "{path: database/migrations, rollback: php artisan migrate:rollback --step=$SLIPWAY_MIGRATION_STEPS --force}"}
	hookSection       = &section{keys: []string{"run", "once", "roles"}, label: "in a hook"}
	healthSection     = &section{keys: []string{"url", "command", "expect_status", "body", "timeout", "retries", "interval"}, label: "under health:", example: "{url: http://127.0.0.1/health}"}
	stagesSection     = &section{example: "{production: {hosts: [web1.example.com]}}"}
	stageSection      = &section{keys: []string{"hosts", "deploy_to", "health", "rollout"}, label: "in a stage", example: "{hosts: [web1.example.com], deploy_to: /var/www/shop}"}
	hostSection       = &section{keys: []string{"host", "user", "port", "roles", "no_release"}, label: "in a host entry"}
	sectionsByRank    = []*section{topSection, stageSection, hostSection, hookSection, sourceSection, sharedSection, writableSection, cleanupSection, hooksSection, migrationsSection, healthSection, rolloutSection, layoutSection, opcacheSection, artifactsSection}
)

// nameRE is the alphabet of app, stage and role names: they appear in paths,
// lock files and command lines, and must not start like an option.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]*$`)

const nameFix = "use letters, digits, '.', '_' and '-', starting with a letter, digit or '_'"

// layoutNameRE is one plain path component that does not start like an option.
var layoutNameRE = regexp.MustCompile(`^[A-Za-z0-9._][A-Za-z0-9._-]*$`)

// decoder walks the YAML tree into a Config, collecting every problem
// instead of stopping at the first, so one run shows all that is wrong.
type decoder struct {
	writableFiles []located // writable.files, checked against shared.files once both are read
	file          string
	dir           string
	lookupEnv     func(string) (string, bool)
	problems      []problem
	// given records the dotted paths of every key written in the file, so
	// a recipe only fills in what the user left out.
	given map[string]bool
}

func (d *decoder) fail(at pos, fix, format string, args ...any) {
	d.problems = append(d.problems, problem{at: at, msg: fmt.Sprintf(format, args...), fix: fix})
}

func (d *decoder) where(at pos) string { return fmt.Sprintf("%s:%d:%d", d.file, at.line, at.col) }

// field is one key of a mapping and its value.
type field struct {
	key   string
	path  string // dotted, for messages: stages.production.deploy_to
	at    pos    // of the key
	value ast.Node
}

// valueAt is where a field's value is, or its key when the value is empty
// (the position of an implicit null is just past the colon).
func (f field) valueAt() pos {
	if isNull(f.value) {
		return f.at
	}
	return posOf(f.value)
}

// located is a string value and where it was written.
type located struct {
	value string
	at    pos
}

func isNull(n ast.Node) bool {
	_, null := n.(*ast.NullNode)
	return n == nil || null
}

func describe(n ast.Node) string {
	switch n.(type) {
	case *ast.MappingNode:
		return "a mapping"
	case *ast.SequenceNode:
		return "a list"
	case nil, *ast.NullNode:
		return "empty"
	}
	return "a single value"
}

func in(path string) string {
	if path == "" {
		return "at the top level"
	}
	return "in " + path
}

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

func quoteOrEmpty(s string) string {
	if s == "" {
		return "empty"
	}
	return strconv.Quote(s)
}

func hasControl(s string) bool { return strings.IndexFunc(s, unicode.IsControl) >= 0 }

// fields checks that n is a mapping with known, unrepeated keys and returns
// its entries in file order. An empty value is an empty mapping; ok is false
// when n is not a mapping at all.
func (d *decoder) fields(n ast.Node, path string, sec *section) (fields []field, ok bool) {
	if isNull(n) {
		return nil, true
	}
	m, isMap := n.(*ast.MappingNode)
	if !isMap {
		if path == "" {
			d.fail(posOf(n), "start the file with settings such as app: shop", "slipway.yml must be a mapping of settings such as app: and stages:, not %s", describe(n))
		} else {
			d.fail(posOf(n), fmt.Sprintf("write it as a mapping, e.g. %s: %s", path[strings.LastIndexByte(path, '.')+1:], sec.example),
				"%s must be a mapping, not %s", path, describe(n))
		}
		return nil, false
	}
	seen := make(map[string]pos, len(m.Values))
	for _, mv := range m.Values {
		at := posOf(mv.Key)
		key, isName := keyName(mv.Key)
		if !isName {
			d.fail(at, "write a plain name followed by a colon", "keys %s must be plain names", in(path))
			continue
		}
		if first, dup := seen[key]; dup {
			d.fail(at, "remove one of them: YAML would keep only one", "duplicate key %q %s (first at line %d)", key, in(path), first.line)
			continue
		}
		seen[key] = at
		if sec.keys != nil && !slices.Contains(sec.keys, key) {
			d.fail(at, unknownKeyFix(key, sec, path), "unknown key %q %s", key, in(path))
			continue
		}
		fields = append(fields, field{key: key, path: joinPath(path, key), at: at, value: mv.Value})
		if d.given == nil {
			d.given = map[string]bool{}
		}
		d.given[joinPath(path, key)] = true
	}
	return fields, true
}

func keyName(key ast.MapKeyNode) (string, bool) {
	switch k := ast.Node(key).(type) {
	case *ast.StringNode:
		return k.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.NullNode, *ast.InfinityNode, *ast.NanNode:
		return k.GetToken().Value, true
	}
	return "", false
}

// unknownKeyFix suggests the key the user probably meant: a near one of this
// mapping, else one that belongs at another level, else the list of keys.
func unknownKeyFix(key string, sec *section, path string) string {
	if s, ok := suggest(key, sec.keys); ok {
		return fmt.Sprintf("did you mean %q?", s)
	}
	for _, other := range sectionsByRank {
		if other == sec {
			continue
		}
		// A key of another section is offered for a slip of one
		// letter at most: a mapping's own keys are the likelier intent
		// ("bucket" in artifacts is not opcache_reset's "socket").
		if s, ok := suggest(key, other.keys); ok && editDistance(normalizeKey(key), s) <= 1 {
			if s == key {
				return fmt.Sprintf("%q belongs %s, not %s", s, other.label, in(path))
			}
			return fmt.Sprintf("did you mean %q? it belongs %s, not %s", s, other.label, in(path))
		}
	}
	return fmt.Sprintf("the keys allowed %s are: %s", in(path), strings.Join(sec.keys, ", "))
}

// text is the string a scalar holds, ${VAR} expanded. Numbers and booleans
// give their text as written, so `branch: 2024` is the branch "2024". An
// empty value is "".
func (d *decoder) text(n ast.Node, path string) (string, bool) {
	var s string
	switch n := n.(type) {
	case nil, *ast.NullNode:
		return "", true
	case *ast.StringNode:
		s = n.Value
	case *ast.LiteralNode:
		s = n.Value.Value
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		return n.GetToken().Value, true
	case *ast.MappingNode, *ast.SequenceNode:
		d.fail(posOf(n), "write a single value here", "%s must be a single value, not %s", path, describe(n))
		return "", false
	default:
		d.fail(posOf(n), syntaxFix, "%s: this kind of YAML value is not supported here", path)
		return "", false
	}
	at := posOf(n)
	s, p := expand(s, d.lookupEnv)
	if p != nil {
		d.fail(at, p.fix, "%s: %s", path, p.msg)
		return "", false
	}
	if strings.IndexByte(s, 0) >= 0 {
		d.fail(at, "remove the NUL character (a \\0 or \\x00 escape, or one in an environment variable)", "%s contains a NUL byte", path)
		return "", false
	}
	return s, true
}

func (d *decoder) str(f field) (string, bool) { return d.text(f.value, f.path) }

func (d *decoder) number(f field, example string) (int, bool) {
	s, ok := d.str(f)
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		d.fail(f.valueAt(), "write a whole number such as "+example, "%s must be a whole number, not %s", f.path, quoteOrEmpty(s))
		return 0, false
	}
	return n, true
}

func (d *decoder) boolean(f field) (bool, bool) {
	if b, ok := f.value.(*ast.BoolNode); ok {
		return b.Value, true
	}
	s, ok := d.str(f)
	if !ok {
		return false, false
	}
	switch s {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	d.fail(f.valueAt(), "write true or false", "%s must be true or false, not %s", f.path, quoteOrEmpty(s))
	return false, false
}

func (d *decoder) duration(f field) (time.Duration, bool) {
	s, ok := d.str(f)
	if !ok {
		return 0, false
	}
	dur, err := time.ParseDuration(s)
	if err != nil || dur <= 0 {
		d.fail(f.valueAt(), "write a positive duration with its unit, e.g. 500ms, 10s or 2m", "%s must be a duration such as 10s, not %s", f.path, quoteOrEmpty(s))
		return 0, false
	}
	return dur, true
}

func (d *decoder) oneOf(f field, allowed ...string) (string, bool) {
	s, ok := d.str(f)
	if !ok {
		return "", false
	}
	if !slices.Contains(allowed, s) {
		d.fail(f.valueAt(), "allowed values: "+strings.Join(allowed, ", "), "%s must be %s, not %s", f.path, strings.Join(allowed, " or "), quoteOrEmpty(s))
		return "", false
	}
	return s, true
}

// item is a list entry and where it is. go-yaml places an empty entry
// ("-" alone) just past its dash; the dash is where the user looks.
type item struct {
	node ast.Node
	at   pos
}

// items is a list's entries; an empty value is an empty list.
func (d *decoder) items(f field) ([]item, bool) {
	switch n := f.value.(type) {
	case nil, *ast.NullNode:
		return nil, true
	case *ast.SequenceNode:
		items := make([]item, len(n.Values))
		for i, v := range n.Values {
			items[i] = item{v, posOf(v)}
			if isNull(v) && !n.IsFlowStyle && i < len(n.Entries) {
				items[i].at = tokenPos(n.Entries[i].Start)
			}
		}
		return items, true
	}
	d.fail(posOf(f.value), fmt.Sprintf("write a list: %s: [ITEM, ...], or one \"- ITEM\" line per item", f.key), "%s must be a list, not %s", f.path, describe(f.value))
	return nil, false
}

func (d *decoder) texts(f field) []located {
	items, _ := d.items(f)
	var out []located
	for _, it := range items {
		if s, ok := d.text(it.node, f.path); ok {
			out = append(out, located{s, it.at})
		}
	}
	return out
}

// commands is a list of non-empty strings: build commands, exclude patterns.
func (d *decoder) commands(f field, example string) []string {
	var out []string
	for _, t := range d.texts(f) {
		if strings.TrimSpace(t.value) == "" {
			d.fail(t.at, fmt.Sprintf("remove the entry or write one, e.g. %s", example), "%s has an empty entry", f.path)
			continue
		}
		out = append(out, t.value)
	}
	return out
}

// names is a list of roles. An explicit empty list is refused where it would
// select nothing (a hook's roles), since no one means "run nowhere".
func (d *decoder) names(f field, allowEmpty bool) []string {
	items, ok := d.items(f)
	if ok && len(items) == 0 && !allowEmpty {
		d.fail(f.valueAt(), "remove roles: to run on every host, or list roles, e.g. roles: [web]", "%s is empty, so the hook would run on no host", f.path)
		return nil
	}
	var out []string
	for _, it := range items {
		s, ok := d.text(it.node, f.path)
		if !ok {
			continue
		}
		if !nameRE.MatchString(s) {
			d.fail(it.at, nameFix+", e.g. web", "%s: %s is not a role name", f.path, quoteOrEmpty(s))
			continue
		}
		out = append(out, s)
	}
	return out
}

// deployDir is a deploy_to as written, before the stage that uses it
// decides how to resolve it.
type deployDir struct {
	value string
	path  string
	at    pos
	ok    bool
}

func (d *decoder) deployDir(f field) *deployDir {
	s, ok := d.str(f)
	return &deployDir{value: s, path: f.path, at: f.valueAt(), ok: ok}
}

// checkDeployDir applies the rules that hold wherever deploy_to is written.
func (d *decoder) checkDeployDir(dd *deployDir, app string) {
	if dd == nil || !dd.ok {
		return
	}
	example := "/var/www/" + app
	switch {
	case strings.TrimSpace(dd.value) == "":
		d.fail(dd.at, "write the directory to deploy into, e.g. deploy_to: "+example, "%s is empty", dd.path)
	case hasControl(dd.value):
		d.fail(dd.at, "write a plain directory path, e.g. "+example, "%s %q contains a control character", dd.path, dd.value)
	case path.Clean(dd.value) == "/":
		d.fail(dd.at, "deploy into a directory of its own, such as "+example, "%s must not be the root directory /", dd.path)
	case insideRelease(dd.value):
		d.fail(dd.at, "deploy into a directory of its own, such as "+example+", not into a release of another deploy", "%s %q is inside a release directory (releases/<id>/ or current/)", dd.path, dd.value)
	default:
		return
	}
	dd.ok = false
}

// releaseIDRE is a release directory name: Capistrano's timestamp.
var releaseIDRE = regexp.MustCompile(`^[0-9]{14}$`)

// insideRelease reports whether dir lies inside some deploy's release (a
// .../releases/<id>/... or .../current/... path): a deploy there would put
// releases inside a release that cleanup may delete.
func insideRelease(dir string) bool {
	parts := strings.Split(path.Clean(dir), "/")
	for i, p := range parts {
		if p == "current" && i > 0 {
			return true
		}
		if releaseIDRE.MatchString(p) && i > 0 && parts[i-1] == "releases" {
			return true
		}
	}
	return false
}

func (d *decoder) config(root ast.Node) *Config {
	c := &Config{
		File: d.file, Dir: d.dir, KeepReleases: 5, Symlink: "relative", LockTTL: 15 * time.Minute,
		Layout: Layout{Releases: "releases", Shared: "shared", Current: "current", Repo: "repo"},
		Source: Source{Strategy: "upload", Path: d.dir, Delta: true, Recycle: true, Verify: "changed", Compress: "auto", Where: d.file},
	}
	fields, ok := d.fields(root, "", topSection)
	if !ok {
		return nil
	}
	var (
		appGiven    bool
		topDir      *deployDir
		stages      *field
		artifactsAt pos
	)
	for _, f := range fields {
		switch f.key {
		case "app":
			appGiven = true
			c.App = d.app(f)
		case "recipe":
			if r, ok := d.oneOf(f, recipeNames()...); ok {
				c.Recipe = r
			}
		case "writable":
			c.Writable = d.writable(f)
		case "env":
			c.Env = d.env(f)
		case "notify":
			c.Notify = d.notify(f)
		case "cleanup":
			cf, _ := d.fields(f.value, f.path, cleanupSection)
			for _, ff := range cf {
				c.Cleanup.Sudo, _ = d.boolean(ff)
			}
		case "deploy_to":
			topDir = d.deployDir(f)
			c.DeployTo = topDir.value
		case "keep_releases":
			if n, ok := d.number(f, "5"); ok {
				if n < 1 {
					d.fail(f.valueAt(), "keep at least the live release, e.g. keep_releases: 5", "keep_releases must be at least 1, not %d", n)
				}
				c.KeepReleases = n
			}
		case "lock_ttl":
			if dur, ok := d.duration(f); ok {
				if dur < time.Minute && dur != 0 {
					d.fail(f.valueAt(), "write a duration of a minute or more, e.g. lock_ttl: 15m, or 0 for locks that never lapse", "lock_ttl %s is too short: a slow host would lose its lock", dur)
				}
				c.LockTTL = dur
			}
		case "symlink":
			if s, ok := d.oneOf(f, "relative", "absolute"); ok {
				c.Symlink = s
			}
		case "layout":
			c.Layout = d.layout(f, c.Layout)
		case "source":
			c.Source = d.source(f, c.Source)
		case "forward_agent":
			c.ForwardAgent, _ = d.boolean(f)
		case "shared":
			c.Shared = d.shared(f)
		case "hooks":
			c.Hooks = d.hooks(f)
		case "migrations":
			c.Migrations = d.migrations(f)
		case "health":
			c.Health = d.health(f)
		case "rollout":
			c.Rollout = d.rollout(f)
		case "opcache_reset":
			c.OPcacheReset = d.opcacheReset(f)
		case "artifacts":
			c.Artifacts, artifactsAt = d.artifacts(f), f.at
		case "stages":
			stages = &f
		}
	}
	if c.Recipe != "" {
		recipes[c.Recipe].apply(c, d.given)
	}
	if c.Artifacts != nil && c.Source.Strategy == "git" {
		d.fail(artifactsAt, "remove artifacts: (with strategy: git each host exports the commit from its own mirror), or set strategy: upload",
			"artifacts applies to strategy upload, not git")
	}
	for _, f := range d.writableFiles {
		if !slices.Contains(c.Shared.Files, f.value) {
			d.fail(f.at, fmt.Sprintf("add %s to shared.files, or remove it here", f.value), "writable.files lists %q, which is not a shared file: a release's own files are replaced by every deploy, so only shared files can be kept writable", f.value)
		}
	}
	app := c.App
	if app == "" {
		app = "APP"
	}
	if !appGiven {
		d.fail(posOf(root), "add the application's name, e.g. app: shop", "missing app: slipway.yml must name its application")
	}
	d.checkDeployDir(topDir, app)
	if stages == nil {
		d.fail(posOf(root), "add stages: with at least one stage, e.g. stages: "+stagesSection.example, "no stages: slipway.yml must define at least one stage")
	} else {
		c.Stages = d.stages(*stages, topDir, app)
		for _, st := range c.Stages {
			if st == nil {
				continue
			}
			if !st.healthGiven {
				st.Health = c.Health
			}
			if !st.rolloutGiven {
				st.Rollout = c.Rollout
			}
		}
	}
	return c
}

func (d *decoder) app(f field) string {
	s, ok := d.str(f)
	switch {
	case !ok:
	case s == "":
		d.fail(f.valueAt(), "name the application, e.g. app: shop", "app is empty")
	case !nameRE.MatchString(s):
		d.fail(f.valueAt(), nameFix+", e.g. app: shop", "app must be a plain name, not %q", s)
	default:
		return s
	}
	return ""
}

func (d *decoder) layout(f field, l Layout) Layout {
	entries := []struct {
		key  string
		name *string
		at   *pos // nil while the default is in use
	}{{"releases", &l.Releases, nil}, {"shared", &l.Shared, nil}, {"current", &l.Current, nil}, {"repo", &l.Repo, nil}}
	fields, _ := d.fields(f.value, f.path, layoutSection)
	for _, lf := range fields {
		s, ok := d.str(lf)
		if !ok {
			continue
		}
		switch {
		case s == "." || s == ".." || !layoutNameRE.MatchString(s):
			d.fail(lf.valueAt(), fmt.Sprintf("use one plain directory name, e.g. %s: %s; it always lives directly in deploy_to", lf.key, lf.key),
				"%s must be one plain name of letters, digits, '.', '_' and '-', not %s", lf.path, quoteOrEmpty(s))
			continue
		case s == ".slipway" || s == "revisions.log":
			d.fail(lf.valueAt(), "choose another name", "%s cannot be %q: slipway keeps its own files there", lf.path, s)
			continue
		}
		for i := range entries {
			if entries[i].key == lf.key {
				*entries[i].name = s
				entries[i].at = &lf.at
			}
		}
	}
	usedBy := map[string]int{}
	for i, e := range entries {
		j, taken := usedBy[*e.name]
		if !taken {
			usedBy[*e.name] = i
			continue
		}
		at := e.at
		if at == nil {
			at = entries[j].at
		}
		d.fail(*at, "give each layout entry its own name", "layout.%s and layout.%s are both %q", entries[j].key, e.key, *e.name)
	}
	return l
}

// strategyOnly names the source keys that only one strategy uses, and what
// to do instead under the other.
var strategyOnly = []struct{ key, strategy, fix string }{
	{"path", "upload", "remove path: (the hosts export source.repo), or set strategy: upload to ship the directory"},
	{"submodules", "upload", "remove submodules:, or set strategy: upload to export with submodules here"},
	{"build", "upload", "run the commands on the hosts with remote_build:, or set strategy: upload to build here"},
	{"remote_build", "git", "run the commands here with build:, or set strategy: git to build on the hosts"},
	{"git_parallel", "git", "remove git_parallel: (it limits hosts fetching with strategy: git)"},
	{"delta", "upload", "remove delta: (it applies to uploads; strategy git exports on the hosts)"},
	{"hardlink", "upload", "remove hardlink: (it applies to delta uploads)"},
	{"recycle", "upload", "remove recycle: (it applies to delta uploads)"},
	{"compress", "upload", "remove compress: (it applies to uploads; strategy git fetches on the hosts)"},
}

func (d *decoder) source(f field, s Source) Source {
	s.Where = d.where(f.at)
	fields, _ := d.fields(f.value, f.path, sourceSection)
	given := map[string]pos{}
	strategyOK := true
	for _, sf := range fields {
		given[sf.key] = sf.at
		switch sf.key {
		case "strategy":
			v, ok := d.oneOf(sf, "upload", "git")
			if ok {
				s.Strategy = v
			}
			strategyOK = ok
		case "path":
			v, ok := d.str(sf)
			switch {
			case !ok:
			case v == "":
				d.fail(sf.valueAt(), "write . for the directory of slipway.yml, or the directory to ship", "source.path is empty")
			case filepath.IsAbs(v):
				s.Path, s.PathSet = filepath.Clean(v), true
			default:
				s.Path, s.PathSet = filepath.Join(d.dir, v), true
			}
		case "repo":
			v, ok := d.str(sf)
			switch {
			case !ok:
			case strings.HasPrefix(v, "-") || hasControl(v):
				d.fail(sf.valueAt(), "write the repository's URL or path, e.g. git@github.com:acme/shop.git", "source.repo %q is not a repository URL", v)
			default:
				s.Repo = v
			}
		case "branch":
			if v, ok := d.str(sf); ok {
				if !validBranch(v) {
					d.fail(sf.valueAt(), "write a git branch name, e.g. main", "source.branch %q is not a valid git branch name", v)
				}
				s.Branch = v
			}
		case "subdir":
			if v, ok := d.str(sf); ok {
				if reason := insideProblem(v); reason != "" {
					d.fail(sf.valueAt(), "write a directory of the repository, relative to its root, e.g. subdir: app", "source.subdir %q %s", v, reason)
				}
				s.Subdir = path.Clean(v)
			}
		case "submodules":
			s.Submodules, _ = d.boolean(sf)
		case "exclude":
			s.Exclude = d.commands(sf, "tests/")
		case "build":
			s.Build = d.commands(sf, "composer install --no-dev")
		case "remote_build":
			s.RemoteBuild = d.commands(sf, "composer install --no-dev")
		case "delta":
			s.Delta, _ = d.boolean(sf)
		case "hardlink":
			s.Hardlink, _ = d.boolean(sf)
		case "recycle":
			s.Recycle, _ = d.boolean(sf)
		case "verify":
			if v, ok := d.oneOf(sf, "changed", "all"); ok {
				s.Verify = v
			}
		case "compress":
			if v, ok := d.oneOf(sf, "auto", "zstd", "gzip", "none"); ok {
				s.Compress = v
			}
		case "git_parallel":
			if n, ok := d.number(sf, "4"); ok {
				if n < 1 {
					d.fail(sf.valueAt(), "write how many hosts may fetch at once, e.g. git_parallel: 4, or remove it for no limit", "source.git_parallel must be at least 1, not %d", n)
				}
				s.GitParallel = n
			}
		}
	}
	if !strategyOK {
		return s
	}
	for _, only := range strategyOnly {
		if at, ok := given[only.key]; ok && s.Strategy != only.strategy {
			d.fail(at, only.fix, "source.%s applies to strategy %s, not %s", only.key, only.strategy, s.Strategy)
		}
	}
	if at, ok := given["subdir"]; ok && s.PathSet {
		d.fail(at, "remove subdir:, or point path: at that directory", "source.subdir picks a directory of a git export, but source.path ships a directory as it is")
	}
	if s.Strategy == "git" && s.Repo == "" {
		if _, ok := given["repo"]; !ok {
			d.fail(given["strategy"], "add repo: under source:, e.g. repo: git@github.com:acme/shop.git", "source.strategy git needs source.repo")
		}
	}
	return s
}

// validBranch follows git check-ref-format closely enough that a value that
// passes cannot be read by git as an option or a revision expression.
func validBranch(b string) bool {
	if b == "" {
		return true
	}
	return !strings.HasPrefix(b, "-") && !strings.HasPrefix(b, "/") && !strings.HasSuffix(b, "/") &&
		!strings.HasSuffix(b, ".") && !strings.HasSuffix(b, ".lock") &&
		!strings.Contains(b, "..") && !strings.Contains(b, "//") && !strings.Contains(b, "@{") &&
		!strings.ContainsAny(b, " ~^:?*[\\") && !hasControl(b)
}

func (d *decoder) shared(f field) Shared {
	var s Shared
	var all []located
	fields, _ := d.fields(f.value, f.path, sharedSection)
	for _, sf := range fields {
		if sf.key == "files_mode" {
			s.FilesMode = d.filesMode(sf)
			continue
		}
		paths := d.sharedPaths(sf)
		all = append(all, paths...)
		for _, p := range paths {
			if sf.key == "dirs" {
				s.Dirs = append(s.Dirs, p.value)
			} else {
				s.Files = append(s.Files, p.value)
			}
		}
	}
	first := map[string]pos{}
	for _, p := range all {
		if at, dup := first[p.value]; dup {
			d.fail(p.at, "remove one of them", "shared path %q is listed twice (first at line %d)", p.value, at.line)
			continue
		}
		first[p.value] = p.at
	}
	for _, p := range all {
		for i := range len(p.value) {
			if p.value[i] != '/' {
				continue
			}
			parent := p.value[:i]
			if at, ok := first[parent]; ok {
				d.fail(p.at, fmt.Sprintf("keep only %q: everything inside it is shared already", parent),
					"shared path %q is inside shared path %q (line %d)", p.value, parent, at.line)
				break
			}
		}
	}
	return s
}

// filesMode reads shared.files_mode: the permission bits, three octal
// digits as chmod takes them (0640, 640 or 0o640), that slipway shared push
// gives a shared file. Set-id and sticky bits have no business on a
// configuration file; the deploy user must be able to read it (push
// compares against it); nothing slipway writes is ever world-writable.
func (d *decoder) filesMode(f field) fs.FileMode {
	s, ok := d.str(f)
	if !ok {
		return 0
	}
	const fix = "write the mode in octal, e.g. files_mode: 0640 (owner reads and writes, group reads)"
	digits := strings.TrimPrefix(strings.TrimPrefix(s, "0o"), "0")
	mode, err := strconv.ParseUint(digits, 8, 32)
	switch {
	case err != nil || len(digits) != 3:
		d.fail(f.valueAt(), fix, "%s must be an octal file mode such as 0640, not %s", f.path, quoteOrEmpty(s))
	case mode&0o400 == 0:
		d.fail(f.valueAt(), "give the owner (the deploy user) read access, e.g. files_mode: 0640", "%s %s does not let the deploy user read the file", f.path, s)
	case mode&0o002 != 0:
		d.fail(f.valueAt(), "drop the write bit for others, e.g. files_mode: 0640; nothing slipway writes is world-writable", "%s %s makes the file world-writable", f.path, s)
	default:
		return fs.FileMode(mode)
	}
	return 0
}

// sharedPaths are clean paths inside a release: a shared entry that could
// point outside it would let a deploy link (and later replace) anything.
func (d *decoder) sharedPaths(f field) []located {
	var out []located
	for _, t := range d.texts(f) {
		if reason := insideProblem(t.value); reason != "" {
			d.fail(t.at, "write a path inside the release, relative to it and without .., e.g. storage or .env", "%s: %q %s", f.path, t.value, reason)
			continue
		}
		out = append(out, located{path.Clean(t.value), t.at})
	}
	return out
}

// insideProblem says why v is not a relative path that stays inside the
// directory it is relative to, or "" when it is one.
func insideProblem(v string) string {
	switch {
	case v == "":
		return "is empty"
	case hasControl(v):
		return "contains a control character"
	case strings.HasPrefix(v, "/"):
		return "is absolute"
	case slices.Contains(strings.Split(v, "/"), ".."):
		return "goes up with .."
	case path.Clean(v) == ".":
		return "names the directory itself"
	}
	return ""
}

// env reads the variables hooks get: NAME: value, or NAME: {value, secret}.
func (d *decoder) env(f field) []EnvVar {
	var out []EnvVar
	fields, _ := d.fields(f.value, f.path, &section{label: "under env:", example: "{APP_ENV: production}"})
	for _, ef := range fields {
		v := EnvVar{Name: ef.key}
		switch {
		case !envNameRE.MatchString(ef.key):
			d.fail(ef.at, "use letters, digits and _, not starting with a digit, e.g. APP_ENV", "env: %q is not a variable name", ef.key)
			continue
		case strings.HasPrefix(ef.key, "SLIPWAY_"):
			d.fail(ef.at, "choose another name: SLIPWAY_ variables are set by slipway", "env: %s is reserved", ef.key)
			continue
		}
		if m, isMap := ef.value.(*ast.MappingNode); isMap {
			vfs, _ := d.fields(m, ef.path, envVarSection)
			for _, vf := range vfs {
				switch vf.key {
				case "value":
					v.Value, _ = d.str(vf)
				case "secret":
					v.Secret, _ = d.boolean(vf)
				}
			}
		} else if s, ok := d.str(ef); ok {
			v.Value = s
		}
		out = append(out, v)
	}
	return out
}

// notify reads the webhooks told about each deploy and rollback.
func (d *decoder) notify(f field) []Notify {
	items, _ := d.items(f)
	var out []Notify
	for _, it := range items {
		n := Notify{Format: "json", On: "always"}
		fields, ok := d.fields(it.node, f.path, notifySection)
		if !ok {
			continue
		}
		for _, nf := range fields {
			switch nf.key {
			case "url":
				if s, ok := d.str(nf); ok {
					if !strings.HasPrefix(s, "https://") && !strings.HasPrefix(s, "http://") {
						d.fail(nf.valueAt(), "write the webhook's full URL, e.g. https://hooks.slack.com/services/T000/B000/XXX", "%s must be an http(s) URL", nf.path)
					}
					n.URL = s
				}
			case "format":
				if v, ok := d.oneOf(nf, "json", "slack"); ok {
					n.Format = v
				}
			case "on":
				if v, ok := d.oneOf(nf, "always", "failure", "success"); ok {
					n.On = v
				}
			}
		}
		if n.URL == "" {
			d.fail(it.at, "add url: to the entry", "%s: a notify entry needs a url", f.path)
			continue
		}
		out = append(out, n)
	}
	return out
}

func (d *decoder) writable(f field) Writable {
	w := Writable{Mode: "group", User: "www-data"}
	var files []located
	fields, _ := d.fields(f.value, f.path, writableSection)
	for _, wf := range fields {
		switch wf.key {
		case "dirs":
			for _, p := range d.sharedPaths(wf) {
				w.Dirs = append(w.Dirs, p.value)
			}
		case "files":
			for _, p := range d.sharedPaths(wf) {
				w.Files = append(w.Files, p.value)
				files = append(files, p)
			}
		case "mode":
			if m, ok := d.oneOf(wf, "group", "acl"); ok {
				w.Mode = m
			}
		case "user":
			if u, ok := d.str(wf); ok {
				if !nameRE.MatchString(u) {
					d.fail(wf.valueAt(), "write the web server's user, e.g. user: www-data", "writable.user %s is not a user name", quoteOrEmpty(u))
				}
				w.User = u
			}
		}
	}
	d.writableFiles = files
	return w
}

func (d *decoder) migrations(f field) Migrations {
	m := Migrations{Where: d.where(f.valueAt())}
	fields, _ := d.fields(f.value, f.path, migrationsSection)
	for _, mf := range fields {
		switch mf.key {
		case "path":
			if p, ok := d.str(mf); ok {
				if reason := insideProblem(p); reason != "" {
					d.fail(mf.valueAt(), "write the migrations directory relative to the release, e.g. path: database/migrations", "migrations.path %q %s", p, reason)
				}
				m.Path = path.Clean(p)
			}
		case "rollback":
			m.Rollback, _ = d.str(mf)
		}
	}
	if m.Rollback != "" && m.Path == "" {
		d.fail(f.valueAt(), "add the directory the migrations are in, e.g. path: database/migrations", "migrations.rollback needs migrations.path: slipway counts the migrations to reverse from the files there")
	}
	return m
}

func (d *decoder) hooks(f field) Hooks {
	var h Hooks
	fields, _ := d.fields(f.value, f.path, hooksSection)
	for _, hf := range fields {
		list := d.hookList(hf)
		switch hf.key {
		case "before_switch":
			h.BeforeSwitch = list
		case "after_switch":
			h.AfterSwitch = list
		case "before_rollback":
			h.BeforeRollback = list
		case "after_rollback":
			h.AfterRollback = list
		case "after_shared_push":
			h.AfterSharedPush = list
		}
	}
	return h
}

// hookList reads hooks written as a command or as {run, once, roles}.
func (d *decoder) hookList(f field) []Hook {
	items, _ := d.items(f)
	var out []Hook
	for _, it := range items {
		at := it.at
		h := Hook{Where: d.where(at)}
		runAt, ok := at, true
		if m, isMap := it.node.(*ast.MappingNode); isMap {
			fields, _ := d.fields(m, f.path, hookSection)
			runGiven := false
			for _, rf := range fields {
				switch rf.key {
				case "run":
					runGiven, runAt = true, rf.valueAt()
					h.Run, ok = d.str(rf)
				case "once":
					h.Once, _ = d.boolean(rf)
				case "roles":
					h.Roles = d.names(rf, false)
				}
			}
			if !runGiven {
				d.fail(at, "add the command to run, e.g. run: php artisan migrate --force", "%s: hook has no run:", f.path)
				continue
			}
		} else {
			h.Run, ok = d.text(it.node, f.path)
		}
		if ok && strings.TrimSpace(h.Run) == "" {
			d.fail(runAt, "write the command to run, e.g. - php artisan config:cache, or remove the entry", "%s: hook has an empty run", f.path)
			continue
		}
		out = append(out, h)
	}
	return out
}

func (d *decoder) health(f field) *Health {
	fields, ok := d.fields(f.value, f.path, healthSection)
	if isNull(f.value) || !ok {
		return nil
	}
	h := &Health{ExpectStatus: 200, Timeout: 10 * time.Second, Retries: 3, Interval: 2 * time.Second, Where: d.where(f.at)}
	urlGiven, commandGiven := false, false
	for _, hf := range fields {
		switch hf.key {
		case "url":
			urlGiven = true
			if s, ok := d.str(hf); ok {
				if reason := checkURL(s); reason != "" {
					d.fail(hf.valueAt(), "write the URL each host fetches from itself, e.g. http://127.0.0.1/health", "%s %s %s", hf.path, quoteOrEmpty(s), reason)
				}
				h.URL = s
			}
		case "command":
			commandGiven = true
			if s, ok := d.str(hf); ok {
				if strings.TrimSpace(s) == "" {
					d.fail(hf.valueAt(), "write a command that exits 0 when the app is healthy, e.g. command: php artisan about", "%s is empty", hf.path)
				}
				h.Command = s
			}
		case "expect_status":
			if n, ok := d.number(hf, "200"); ok {
				if n < 100 || n > 599 {
					d.fail(hf.valueAt(), "write an HTTP status code, e.g. expect_status: 200", "%s %d is not an HTTP status (100 to 599)", hf.path, n)
				}
				h.ExpectStatus = n
			}
		case "body":
			if s, ok := d.str(hf); ok {
				h.Body = s
			}
		case "timeout":
			if dur, ok := d.duration(hf); ok {
				h.Timeout = dur
			}
		case "retries":
			if n, ok := d.number(hf, "3"); ok {
				if n < 1 {
					d.fail(hf.valueAt(), "write how many attempts a host gets, e.g. retries: 3", "%s must be at least 1, not %d", hf.path, n)
				}
				h.Retries = n
			}
		case "interval":
			if dur, ok := d.duration(hf); ok {
				h.Interval = dur
			}
		}
	}
	switch {
	case urlGiven && commandGiven:
		d.fail(f.at, "keep url: for an HTTP check or command: for a command check", "%s has both url and command", f.path)
	case !urlGiven && !commandGiven:
		d.fail(f.at, "add the URL each host fetches from itself, e.g. url: http://127.0.0.1/health, or a command:", "%s has no url or command", f.path)
	}
	return h
}

// rollout reads how the switch proceeds over the fleet.
func (d *decoder) rollout(f field) *Rollout {
	fields, ok := d.fields(f.value, f.path, rolloutSection)
	if isNull(f.value) || !ok {
		return nil
	}
	r := &Rollout{Strategy: "all", Where: d.where(f.at)}
	batchGiven := false
	for _, rf := range fields {
		switch rf.key {
		case "strategy":
			if v, ok := d.oneOf(rf, "all", "rolling"); ok {
				r.Strategy = v
			}
		case "batch":
			batchGiven = true
			if s, ok := d.str(rf); ok {
				n, percent, err := ParseBatch(s)
				if err != nil {
					d.fail(rf.valueAt(), "write a number of hosts or a percentage of the fleet, e.g. batch: 1 or batch: 25%", "%s %q %v", rf.path, s, err)
				}
				r.Batch, r.BatchPercent = n, percent
			}
		case "pause":
			if dur, ok := d.duration(rf); ok {
				r.Pause = dur
			}
		}
	}
	if r.Strategy == "rolling" && !batchGiven {
		r.Batch = 1
	}
	if r.Strategy == "all" && batchGiven {
		d.fail(f.at, "add strategy: rolling, or remove batch:", "%s.batch applies to strategy rolling", f.path)
	}
	return r
}

func checkURL(s string) string {
	if s == "" || strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return "is not a URL"
	}
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "is not a URL"
	case u.Scheme != "http" && u.Scheme != "https":
		return "must start with http:// or https://"
	case u.Host == "":
		return "has no host"
	}
	return ""
}

func (d *decoder) stages(f field, top *deployDir, app string) []*Stage {
	fields, ok := d.fields(f.value, f.path, stagesSection)
	if !ok {
		return nil
	}
	if len(fields) == 0 {
		d.fail(f.at, "add a stage, e.g. stages: "+stagesSection.example, "stages is empty: slipway.yml must define at least one stage")
	}
	var out []*Stage
	for _, sf := range fields {
		if st := d.stage(sf, top, app); st != nil {
			out = append(out, st)
		}
	}
	return out
}

func (d *decoder) stage(f field, top *deployDir, app string) *Stage {
	name := f.key
	if !nameRE.MatchString(name) {
		// Not descending keeps the name, which may hold anything, out of
		// the paths in further messages.
		d.fail(f.at, nameFix+", e.g. production", "stage name %s is not a plain name", quoteOrEmpty(name))
		return nil
	}
	fields, ok := d.fields(f.value, f.path, stageSection)
	if !ok {
		return nil
	}
	st := &Stage{Name: name, Where: d.where(f.at)}
	var own *deployDir
	hostsAt, hostEntries, hostsOK := f.at, 0, true
	for _, sf := range fields {
		switch sf.key {
		case "hosts":
			hostsAt = sf.at
			st.Hosts, hostEntries, hostsOK = d.hosts(sf, name)
		case "deploy_to":
			own = d.deployDir(sf)
			d.checkDeployDir(own, app)
		case "health":
			st.healthGiven = true
			st.Health = d.health(sf)
		case "rollout":
			st.rolloutGiven = true
			st.Rollout = d.rollout(sf)
		}
	}
	if hostEntries == 0 && hostsOK {
		d.fail(hostsAt, "list the hosts, e.g. hosts: [web1.example.com], or hosts: [local] for this machine", "stage %q has no hosts", name)
	}
	dir := own
	if dir == nil {
		dir = top
	}
	allLocal := !slices.ContainsFunc(st.Hosts, func(h Host) bool { return !h.Local })
	switch {
	case dir == nil:
		d.fail(f.at, fmt.Sprintf("add deploy_to: /var/www/%s to stages.%s, or once at the top level for every stage", app, name), "stage %q has no deploy_to", name)
	case !dir.ok || !hostsOK || hostEntries == 0:
		// Already reported; a relative path cannot be judged without the hosts.
	case path.IsAbs(dir.value):
		st.DeployTo = path.Clean(dir.value)
	case allLocal:
		st.DeployTo = filepath.Join(d.dir, dir.value)
		if st.DeployTo == "/" {
			d.fail(dir.at, "deploy into a directory of its own, e.g. ./.slipway-"+name, "%s %q resolves to the root directory /", dir.path, dir.value)
		}
	default:
		fix := "use an absolute path such as /var/www/" + app
		if strings.HasPrefix(dir.value, "~") {
			fix += " (slipway does not expand ~)"
		}
		d.fail(dir.at, fix+"; a relative deploy_to is only for stages whose hosts are all local",
			"%s %q is relative, but stage %q deploys to remote hosts", dir.path, dir.value, name)
	}
	return st
}

// hosts reads a stage's host list. It returns the hosts that are valid, how
// many entries the list has, and whether all of them were valid.
func (d *decoder) hosts(f field, stage string) ([]Host, int, bool) {
	before := len(d.problems)
	items, _ := d.items(f)
	var out []Host
	seen := map[string]located{} // by host and port: the user does not make another machine
	for _, it := range items {
		h, ok := d.host(it, f.path)
		if !ok {
			continue
		}
		id := "local"
		if !h.Local {
			id = strings.ToLower(h.Host) + " " + strconv.Itoa(h.Port)
		}
		at := it.at
		if first, dup := seen[id]; dup {
			d.fail(at, "remove one of them", "host %q is listed twice in stage %q: it is %q at line %d", h.Name, stage, first.value, first.at.line)
			continue
		}
		seen[id] = located{h.Name, at}
		out = append(out, h)
	}
	return out, len(items), len(d.problems) == before
}

// host reads one host entry: a string (see parseHostSpec) or a mapping
// {host, user, port, roles}.
func (d *decoder) host(it item, listPath string) (Host, bool) {
	at := it.at
	m, isMap := it.node.(*ast.MappingNode)
	if !isMap {
		s, ok := d.text(it.node, listPath)
		if !ok {
			return Host{}, false
		}
		spec, p := parseHostSpec(s)
		if p != nil {
			d.fail(at, p.fix, "%s: %s", listPath, p.msg)
			return Host{}, false
		}
		return Host{Name: s, Host: spec.host, User: spec.user, Port: spec.port, Local: spec.local, Where: d.where(at)}, true
	}
	before := len(d.problems)
	fields, _ := d.fields(m, listPath, hostSection)
	var (
		spec, given hostSpec
		hostGiven   bool
		roles       []string
		noRelease   bool
	)
	for _, f := range fields {
		switch f.key {
		case "no_release":
			noRelease, _ = d.boolean(f)
		case "host":
			hostGiven = true
			if s, ok := d.str(f); ok {
				var p *problem
				if spec, p = parseHostSpec(s); p != nil {
					d.fail(f.valueAt(), p.fix, "%s: %s", listPath, p.msg)
				}
			}
		case "user":
			if s, ok := d.str(f); ok {
				if !userRE.MatchString(s) {
					d.fail(f.valueAt(), "a user is letters, digits, '.', '_' and '-', e.g. user: deploy", "%s: user %s is not a user name", listPath, quoteOrEmpty(s))
				}
				given.user = s
			}
		case "port":
			if port, ok := d.number(f, "22"); ok {
				if port < 1 || port > 65535 {
					d.fail(f.valueAt(), "write the SSH port as a number from 1 to 65535, e.g. port: 22", "%s: port %d is not a number from 1 to 65535", listPath, port)
				}
				given.port = port
			}
		case "roles":
			roles = d.names(f, true)
		}
	}
	if !hostGiven {
		d.fail(at, "add the host's name, e.g. {host: web3, user: deploy}", "%s: host entry has no host:", listPath)
	}
	if len(d.problems) != before {
		return Host{}, false
	}
	switch {
	case given.user != "" && spec.user != "", given.port != 0 && spec.port != 0:
		d.fail(at, "give the user and the port once, in host: or in their own keys", "%s: host %q is given a user or port twice", listPath, spec.name())
		return Host{}, false
	case spec.local && (given.user != "" || given.port != 0):
		d.fail(at, localFix, "%s: local means this machine without SSH, so it takes no user or port", listPath)
		return Host{}, false
	}
	spec.user = cmp.Or(spec.user, given.user)
	spec.port = cmp.Or(spec.port, given.port)
	return Host{Name: spec.name(), Host: spec.host, User: spec.user, Port: spec.port, Roles: roles, NoRelease: noRelease, Local: spec.local, Where: d.where(at)}, true
}
