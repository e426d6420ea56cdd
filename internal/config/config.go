// Package config loads slipway.yml into checked values.
//
// Everything the rest of slipway trusts about the configuration is decided
// here: every value has its type, its defaults and its limits (host names,
// paths, layout names) checked before any host is touched, and every
// problem is reported as an *Error at its line and column with a fix.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config is a loaded, valid slipway.yml.
type Config struct {
	File         string // path as given to Load
	Dir          string // absolute directory of the file; relative paths resolve against it
	App          string
	Recipe       string // "laravel", "symfony", "static" or ""; its defaults are already applied
	DeployTo     string // top-level deploy_to as written, after ${VAR} expansion; "" when absent
	KeepReleases int    // at least 1
	// LockTTL is how long a deploy lock lasts unless its holder refreshes
	// it (it does, while it runs); 0 makes locks last until unlocked.
	LockTTL      time.Duration
	Symlink      string // "relative" or "absolute"
	Layout       Layout
	Source       Source
	Shared       Shared
	Writable     Writable
	Cleanup      Cleanup
	Env          []EnvVar // environment of every hook, in file order
	Notify       []Notify // webhooks told the outcome of each deploy and rollback
	Hooks        Hooks
	Migrations   Migrations
	Health       *Health  // nil when absent
	Rollout      *Rollout // nil: switch every host at once
	ForwardAgent bool     // forward the user's ssh-agent to the hosts (git over SSH with the user's key)
	Stages       []*Stage

	// OPcacheReset resets OPcache in php-fpm's pool after a switch; nil
	// when absent.
	OPcacheReset *OPcacheReset

	// Artifacts is the store the hosts download what a deploy ships
	// from; nil to push it to every host over SSH.
	Artifacts *Artifacts
}

// Layout names the entries of a deploy directory. Each is one plain path
// component, all distinct and none of slipway's own (.slipway,
// revisions.log), so an existing Capistrano directory (or the seed layout
// builds/latest/repository) can be adopted as it is.
type Layout struct{ Releases, Shared, Current, Repo string }

// Source says what a release is made of. Keys that only one strategy uses
// are refused with the other, so a build step is never silently skipped.
type Source struct {
	Strategy string // "upload" or "git"
	// Path is, for upload, the directory to ship as it is, absolute; when
	// PathSet is false it is Config.Dir and upload exports a git revision
	// of the repository there (or of Repo) instead.
	Path        string
	PathSet     bool
	Subdir      string   // ship only this directory of the repository, cleaned; "" for all of it
	Submodules  bool     // upload: include git submodules in the export
	Exclude     []string // gitignore-like patterns, as written
	Build       []string // upload: commands run here in the clean copy before shipping
	RemoteBuild []string // git: commands run on each host in the new release
	GitParallel int      // git: hosts fetching at once; 0 for no limit
	// Delta (default true) builds a new release from a copy of the live one
	// and sends only what changed; Hardlink makes that copy with hard links
	// instead of a full copy (fast, but see README); Recycle (default
	// true) makes the new release in the directory of the release cleanup
	// would delete after it, brought up to date, instead of a copy of the
	// live one (internal/deploy/recycle.go); Verify is "changed"
	// (default: check what was sent) or "all" (check every file).
	// Compress is how an upload's stream travels: "auto" (default: zstd
	// where the host has it and GNU tar; otherwise gzip, except to a host
	// on a loopback address, where there is no link to save and the CPU
	// is the cost), "zstd", "gzip" or "none".
	Delta    bool
	Hardlink bool
	Recycle  bool
	Verify   string
	Compress string
	Repo     string
	Branch   string
	Where    string // "slipway.yml:LINE:COL" of the source: key, or just the file when there is none
}

// Shared lists the paths, relative to a release and cleaned, that live once
// in shared/ and are linked into every release. No entry is inside another:
// linking one inside a linked directory would write into shared/.
type Shared struct {
	Dirs, Files []string
	// FilesMode is the mode slipway shared push gives a file it writes;
	// 0 when not given (Mode then says DefaultFilesMode).
	FilesMode fs.FileMode
}

// DefaultFilesMode is the mode of a shared file slipway shared push writes
// unless shared.files_mode says otherwise: the deploy user reads and
// writes it, its group (the web server's) reads it, others nothing.
const DefaultFilesMode fs.FileMode = 0o640

// Mode is the mode slipway shared push gives the files it writes.
func (s Shared) Mode() fs.FileMode {
	if s.FilesMode == 0 {
		return DefaultFilesMode
	}
	return s.FilesMode
}

// HasFile reports whether name is one of the shared files.
func (s Shared) HasFile(name string) bool { return slices.Contains(s.Files, name) }

// Writable lists directories of a release the web server must be able to
// write (bootstrap/cache). Mode group makes them group-writable (the web
// server shares the deploy user's group); acl grants User with setfacl.
// Nothing is ever made world-writable.
type Writable struct {
	Dirs  []string
	Files []string // shared files the web server may write (setup makes them writable)
	Mode  string   // "group" or "acl"
	User  string   // for acl: the web server's user
}

// EnvVar is a variable hooks get. A secret one never appears in output,
// logs, --json or history, and reaches the host on the command's standard
// input, never its command line (which other users of a host can see).
type EnvVar struct {
	Name   string
	Value  string
	Secret bool
}

// Notify is a webhook: Format "json" (a generic document) or "slack";
// On "always", "failure" or "success".
type Notify struct {
	URL, Format, On string
}

// Cleanup says how old releases are deleted. Sudo deletes them with
// `sudo -n rm -rf`, for releases holding files the web server's user made.
type Cleanup struct {
	Sudo bool
}

// Hooks are the commands run on the hosts around the switch. BeforeRollback
// runs in the release a rollback leaves (whose code knows how to reverse
// what it did), before any host switches back; AfterRollback in the
// release rolled back to. AfterSharedPush runs in the live release after
// slipway shared push replaced a shared file (a config cache rebuilt, a
// graceful reload).
type Hooks struct {
	BeforeSwitch, AfterSwitch, BeforeRollback, AfterRollback []Hook
	AfterSharedPush                                          []Hook
}

// Migrations says where a release keeps its database migrations and how
// to reverse the newest ones. Each release records the names of the files
// in Path; a rollback says which migrations the release it leaves has
// that its target does not, and with --with-migrations runs Rollback for
// them (with SLIPWAY_MIGRATION_STEPS set to their count and
// SLIPWAY_MIGRATIONS to their names, newest first), once, in the release
// it leaves, before any host switches.
type Migrations struct {
	Path     string // relative to the release, e.g. database/migrations
	Rollback string // e.g. php artisan migrate:rollback --step=$SLIPWAY_MIGRATION_STEPS --force
	Where    string // "slipway.yml:LINE:COL" of the section, for messages
}

// Hook is one command, run in the release directory.
type Hook struct {
	Run   string
	Once  bool     // on the first host only (migrations)
	Roles []string // only on hosts with one of these roles; nil for every host
	Where string   // "slipway.yml:LINE:COL", for messages
}

// Health is the check run on every host after the switch: an HTTP GET of
// URL made from the host itself (through the SSH connection), or a Command
// run in the live release. A host passes when one of Retries attempts,
// Interval apart, succeeds.
type Health struct {
	URL          string
	Command      string
	ExpectStatus int    // default 200
	Body         string // the response must contain it, when set
	Timeout      time.Duration
	Retries      int           // attempts per host, default 3
	Interval     time.Duration // between attempts, default 2s
	Where        string
}

// Rollout says how the switch moves over the fleet: all hosts at once, or
// in batches, each gated by the health check of the previous one.
type Rollout struct {
	Strategy     string        // "all" (default) or "rolling"
	Batch        int           // hosts per batch (rolling), when BatchPercent is 0
	BatchPercent int           // percent of the selected hosts per batch, rounded up
	Pause        time.Duration // between batches
	Where        string
}

// ParseBatch reads a batch size: "2" hosts, or "25%" of the fleet.
func ParseBatch(s string) (n, percent int, err error) {
	if p, ok := strings.CutSuffix(strings.TrimSpace(s), "%"); ok {
		v, err := strconv.Atoi(p)
		if err != nil || v < 1 || v > 100 {
			return 0, 0, fmt.Errorf("is not a percentage from 1%% to 100%%")
		}
		return 0, v, nil
	}
	v, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || v < 1 {
		return 0, 0, fmt.Errorf("is not a number of hosts (at least 1) or a percentage")
	}
	return v, 0, nil
}

// Size is the number of hosts in a batch of a fleet of n hosts.
func (r *Rollout) Size(n int) int {
	if r == nil || r.Strategy != "rolling" {
		return n
	}
	size := r.Batch
	if r.BatchPercent > 0 {
		size = (n*r.BatchPercent + 99) / 100
	}
	return max(1, min(size, n))
}

// Stage is a named set of hosts to deploy to.
type Stage struct {
	Name  string
	Hosts []Host
	// DeployTo is the effective deploy directory: the stage's deploy_to,
	// else the top-level one; absolute and cleaned. A relative one is only
	// accepted when every host is local, and is resolved against Config.Dir.
	DeployTo string
	Health   *Health  // the stage's health:, else the top-level one
	Rollout  *Rollout // the stage's rollout:, else the top-level one
	Where    string

	healthGiven, rolloutGiven bool
}

// Host is one machine of a stage.
type Host struct {
	Name  string // as the user wrote it ("web1", "deploy@web2:2222", "local"); unique in its stage
	Host  string // host name, IP (IPv6 without brackets) or ssh_config alias; "local" for Local
	User  string // "" when not given
	Port  int    // 0 when not given
	Roles []string
	// NoRelease marks a host that takes no release (a database host): it
	// only runs the hooks limited to one of its roles.
	NoRelease bool
	Local     bool // this machine, without SSH
	Where     string
}

// ErrUnknownStage is returned, wrapped, by Config.Stage.
var ErrUnknownStage = errors.New("unknown stage")

// Loader reads configuration files. Its zero value reads the process
// environment; tests set LookupEnv so they never depend on it.
type Loader struct {
	// LookupEnv resolves ${VAR} references; nil means os.LookupEnv.
	LookupEnv func(name string) (string, bool)
}

// Load reads and checks the configuration file at path, using the process
// environment. Errors are *Error values, several joined with errors.Join.
func Load(path string) (*Config, error) { return Loader{}.Load(path) }

// Parse checks configuration data as if read from file.
func Parse(file string, data []byte) (*Config, error) { return Loader{}.Parse(file, data) }

// Load reads and checks the configuration file at path.
func (l Loader) Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, readError(path, err)
	}
	defer f.Close()
	if info, err := f.Stat(); err == nil && info.IsDir() {
		return nil, &Error{File: path, Msg: "is a directory, not a configuration file",
			Fix: "pass the file itself, e.g. -c " + filepath.Join(path, "slipway.yml")}
	}
	// Read one byte past the limit so an oversized file is detected
	// without reading all of it (a device or a pipe may never end).
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, readError(path, err)
	}
	return l.Parse(path, data)
}

func readError(path string, err error) *Error {
	cause := err
	var pathErr *fs.PathError
	if errors.As(err, &pathErr) {
		cause = pathErr.Err
	}
	fix := "check the file's permissions"
	if errors.Is(err, fs.ErrNotExist) {
		fix = "run slipway in the directory that holds slipway.yml, or pass -c FILE"
	}
	return &Error{File: path, Msg: "cannot read the configuration: " + cause.Error(), Fix: fix, Err: err}
}

// Parse checks configuration data as if read from file.
func (l Loader) Parse(file string, data []byte) (*Config, error) {
	if len(data) > maxFileSize {
		return nil, &Error{File: file, Msg: fmt.Sprintf("the file is larger than %d KiB", maxFileSize>>10),
			Fix: "a slipway.yml is a few kilobytes; check that this is the right file"}
	}
	dir, err := filepath.Abs(filepath.Dir(file))
	if err != nil {
		return nil, &Error{File: file, Msg: "cannot find the configuration's directory: " + err.Error(),
			Fix: "run slipway from an existing directory", Err: err}
	}
	// Editors on Windows may start the file with a byte order mark, which
	// go-yaml would read as part of the first key.
	data = bytes.TrimPrefix(data, []byte("\ufeff"))
	body, p := parseYAML(data)
	if p != nil {
		return nil, report(file, data, []problem{*p})
	}
	lookup := l.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	d := &decoder{file: file, dir: dir, lookupEnv: lookup}
	cfg := d.config(body)
	if err := report(file, data, d.problems); err != nil {
		return nil, err
	}
	return cfg, nil
}

// Stage returns the stage with the given name.
func (c *Config) Stage(name string) (*Stage, error) {
	for _, s := range c.Stages {
		if s.Name == name {
			return s, nil
		}
	}
	return nil, fmt.Errorf("%w %q; stages in %s: %s", ErrUnknownStage, name, c.File, strings.Join(c.StageNames(), ", "))
}

// StageNames lists the stages in file order.
func (c *Config) StageNames() []string {
	names := make([]string, len(c.Stages))
	for i, s := range c.Stages {
		names[i] = s.Name
	}
	return names
}
