package main

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/slipway-deploy/slipway/internal/testutil"
)

// The workloads, in the order the reports list them.
var workloads = []string{"cold", "redeploy", "rollback"}

// keepReleases is both tools' keep_releases; the measured redeploys find
// that many releases on every host (see run).
const keepReleases = 5

var workloadTitle = map[string]string{
	"cold":     "cold deploy (empty hosts)",
	"redeploy": "redeploy after a one-file change",
	"rollback": "rollback",
}

// fleetResult holds every sample taken on one fleet.
type fleetResult struct {
	hosts   int
	files   int
	reps    int
	samples map[string][]sample // by tool + " " + workload
}

func newFleetResult(hosts, files, reps int) fleetResult {
	return fleetResult{hosts: hosts, files: files, reps: reps, samples: map[string][]sample{}}
}

func (r fleetResult) add(tool, workload string, s sample) {
	r.samples[tool+" "+workload] = append(r.samples[tool+" "+workload], s)
}

func (r fleetResult) get(tool, workload string) []sample { return r.samples[tool+" "+workload] }

// slipwayOnly is r without Capistrano's samples.
func (r fleetResult) slipwayOnly() fleetResult {
	out := newFleetResult(r.hosts, r.files, r.reps)
	for _, w := range workloads {
		out.samples["slipway "+w] = r.get("slipway", w)
	}
	return out
}

// tool is one deploy tool set up for the fleet.
type tool struct {
	name     string
	deployTo string
	deploy   func() sample
	rollback func() sample
}

// slipwayTool writes a slipway.yml for deployTo: the upload strategy with
// a clean git export of the app repository's main branch (slipway keeps a
// mirror of it under HOME/.cache/slipway), storage shared, every host of
// the fleet in the production stage, the default --parallel. slipway runs
// with --json, whose events give its fleet skew and its own count of round
// trips (see slipwayRun).
func (b *bench) slipwayTool(deployTo string) tool { return b.slipwayToolWith(deployTo, "") }

// slipwayToolWith is slipwayTool with the source setting compress, unless
// that is "".
func (b *bench) slipwayToolWith(deployTo, compress string) tool {
	compressLine := ""
	if compress != "" {
		compressLine = "  compress: " + compress + "\n"
	}
	return b.slipwayToolConfig(deployTo, compress, compressLine, "")
}

// slipwayToolConfig is slipwayTool with more settings: source is added
// under source:, extra at the top level. name tells its file from the
// others of deployTo.
func (b *bench) slipwayToolConfig(deployTo, name, source, extra string) tool {
	var hosts strings.Builder
	for _, h := range b.fleet.Hosts {
		fmt.Fprintf(&hosts, "      - %s\n", h.Name)
	}
	config := fmt.Sprintf(`app: shop
deploy_to: %s
keep_releases: %d
source:
  strategy: upload
  repo: %s
  branch: main
%sshared:
  dirs: [storage]
%sstages:
  production:
    hosts:
%s`, deployTo, keepReleases, b.app.work, source, extra, hosts.String())
	path := filepath.Join(b.confDir, "slipway"+strings.ReplaceAll(deployTo, "/", "-")+name+".yml")
	must(b.sc, os.WriteFile(path, []byte(config), 0o644))
	return tool{
		name:     "slipway",
		deployTo: deployTo,
		deploy: func() sample {
			return b.measure("slipway-deploy", b.confDir, b.slipwayBin, "-c", path, "deploy", "production", "--json")
		},
		rollback: func() sample {
			return b.measure("slipway-rollback", b.confDir, b.slipwayBin, "-c", path, "rollback", "production", "--json")
		},
	}
}

// capistranoTool writes a Capistrano 3 project for deployTo: the git
// strategy from the app's bare repository (each host keeps its mirror in
// deploy_to/repo), storage linked, keep_releases 5, every host with role
// app, reached through the same ssh config aliases with host keys checked
// against the same known_hosts.
func (b *bench) capistranoTool(deployTo string) tool {
	dir := filepath.Join(b.confDir, "capistrano")
	must(b.sc, os.MkdirAll(filepath.Join(dir, "config", "deploy"), 0o755))
	deployUser, err := user.Lookup(testutil.DeployUser)
	must(b.sc, err)
	ssh := filepath.Join(b.home, ".ssh")
	files := map[string]string{
		"Capfile": `require "capistrano/setup"
require "capistrano/deploy"
require "capistrano/scm/git"
install_plugin Capistrano::SCM::Git
`,
		"config/deploy.rb": fmt.Sprintf(`lock "~> 3.17"
set :application, "shop"
set :repo_url, %q
set :branch, "main"
set :deploy_to, %q
set :keep_releases, %d
append :linked_dirs, "storage"
# Every host sees this machine's /tmp; the deploy user's home is each
# host's own, so the git wrapper goes there.
set :tmp_dir, %q
set :ssh_options, {
  config: %q,
  keys: [%q],
  keys_only: true,
  auth_methods: %%w[publickey],
  verify_host_key: :always,
  user_known_hosts_file: %q,
  global_known_hosts_file: "/dev/null",
}
`, "file://"+b.app.bare, deployTo, keepReleases, filepath.Join(deployUser.HomeDir, ".capistrano-tmp"),
			filepath.Join(ssh, "config"), b.rsaKey, filepath.Join(ssh, "known_hosts")),
	}
	var servers strings.Builder
	for _, h := range b.fleet.Hosts {
		fmt.Fprintf(&servers, "server %q, user: %q, roles: %%w[app]\n", h.Name, b.fleet.User)
	}
	files["config/deploy/production.rb"] = servers.String()
	for name, content := range files {
		must(b.sc, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
	}
	return tool{
		name:     "capistrano",
		deployTo: deployTo,
		deploy:   func() sample { return b.measure("cap-deploy", dir, "cap", "production", "deploy") },
		rollback: func() sample { return b.measure("cap-rollback", dir, "cap", "production", "deploy:rollback") },
	}
}

// run measures tools on the fleet, reps times each: cold deploys on
// emptied hosts, then, once each tool has deployed keep_releases more
// builds (a full history), rounds of (one-file change, deploy, rollback),
// each round after the first starting with one more build deployed, so
// that every measured redeploy finds the history full. The order of the tools alternates from
// one repetition to the next, so that neither always runs on a warmer page
// cache.
func (b *bench) run(reps int, tools ...tool) fleetResult {
	res := newFleetResult(len(b.fleet.Hosts), b.app.spec.Files, reps)
	ordered := func(i int) []tool { return inTurn(i, tools) }
	for i := range reps {
		for _, t := range tools {
			b.wipe(t.deployTo)
		}
		must(b.sc, os.RemoveAll(filepath.Join(b.home, ".cache")))
		for _, t := range ordered(i) {
			logf("%d hosts, %d files: %s cold deploy %d/%d", len(b.fleet.Hosts), b.app.spec.Files, t.name, i+1, reps)
			s := t.deploy()
			b.expectLive(t.name, t.deployTo, b.app.build)
			res.add(t.name, "cold", s)
			logf("  %s", s)
		}
	}
	// A full history, as on a fleet in use: keepReleases deploys, not
	// measured, so that every measured redeploy is the one a team makes
	// every day, whose cleanup deletes the oldest release (Capistrano)
	// or whose new release reuses its directory (slipway's
	// source.recycle). The floor deploys them too, and deletes nothing.
	fill := func(n int, why string) {
		for i := range n {
			b.app.change()
			for _, t := range tools {
				logf("%d hosts, %d files: %s deploy %d/%d %s", len(b.fleet.Hosts), b.app.spec.Files, t.name, i+1, n, why)
				t.deploy()
				b.expectLive(t.name, t.deployTo, b.app.build)
			}
		}
	}
	fill(keepReleases, "to fill the history")
	for i := range reps {
		if i > 0 {
			// The release rolled back from counts for neither tool's
			// keep_releases: one more build makes the history full
			// again.
			fill(1, "after the rollback, to fill the history again")
		}
		live := b.app.build // the build every tool serves
		b.app.change()
		for _, t := range ordered(i) {
			logf("%d hosts, %d files: %s redeploy %d/%d", len(b.fleet.Hosts), b.app.spec.Files, t.name, i+1, reps)
			s := t.deploy()
			b.expectLive(t.name, t.deployTo, b.app.build)
			res.add(t.name, "redeploy", s)
			logf("  %s", s)
		}
		for _, t := range ordered(i) {
			logf("%d hosts, %d files: %s rollback %d/%d", len(b.fleet.Hosts), b.app.spec.Files, t.name, i+1, reps)
			s := t.rollback()
			b.expectLive(t.name, t.deployTo, live)
			res.add(t.name, "rollback", s)
			logf("  %s", s)
		}
	}
	return res
}

// inTurn is xs for an even repetition i and xs reversed for an odd one,
// so that no contender always runs first (on a colder or warmer machine).
func inTurn[T any](i int, xs []T) []T {
	if i%2 == 0 {
		return xs
	}
	out := slices.Clone(xs)
	slices.Reverse(out)
	return out
}

func (s sample) String() string {
	out := fmt.Sprintf("%.2fs (CPU: tool %.1fs, hosts %.1fs, kernel %.1fs, relays %.1fs, other %.1fs, machine %.1fs), peak RSS %s, sent %s in %d connections, %d sessions, %d exchanges",
		s.wall.Seconds(), s.toolCPU.Seconds(), s.hostsCPU.Seconds(), s.kernelCPU.Seconds(), s.relayCPU.Seconds(),
		s.otherCPU.Seconds(), s.machineCPU.Seconds(),
		size(float64(s.maxRSS)), size(float64(s.traffic.up)),
		s.traffic.conns, s.sessions, s.traffic.exchanges)
	if s.slipway != nil {
		out += fmt.Sprintf(", %.1f round trips per host by its own count", s.slipway.tripsPerHost())
	}
	if s.skew >= 0 {
		out += ", skew " + s.skew.String()
	}
	if s.storeCPU > 0 {
		out += fmt.Sprintf(", CPU of the S3 server %.1fs", s.storeCPU.Seconds())
	}
	return out
}

// appRepo is the generated app as a git repository: a working clone on
// this machine (root's, where a developer commits; slipway exports from
// it) and a bare repository owned by the deploy user that the hosts read
// (Capistrano's repo_url), both in a directory every host can see.
type appRepo struct {
	sc    *scope
	spec  appSpec
	work  string
	bare  string
	env   []string
	build int // the build number in changedFile at HEAD
	files int
	bytes int64
}

func newAppRepo(sc *scope, name string, spec appSpec) *appRepo {
	dir := sc.TempDir()
	must(sc, os.Chmod(dir, 0o755)) // the deploy user reads the bare repository
	a := &appRepo{sc: sc, spec: spec, work: filepath.Join(dir, name), bare: filepath.Join(dir, name+".git")}
	gitconfig := filepath.Join(dir, "gitconfig")
	// The bare repository belongs to the deploy user; root pushes to it.
	// No automatic gc: one detached after a commit would repack the
	// repository while a tool reads it.
	must(sc, os.WriteFile(gitconfig, []byte("[safe]\n\tdirectory = *\n[gc]\n\tauto = 0\n"), 0o644))
	a.env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL="+gitconfig,
		"GIT_AUTHOR_NAME=bench", "GIT_AUTHOR_EMAIL=bench@example.com",
		"GIT_COMMITTER_NAME=bench", "GIT_COMMITTER_EMAIL=bench@example.com")
	files, err := generateApp(a.work, spec)
	must(sc, err)
	a.files = len(files)
	for _, f := range files {
		info, err := os.Stat(filepath.Join(a.work, f.rel))
		must(sc, err)
		a.bytes += info.Size()
	}
	a.git(dir, "init", "--quiet", "--bare", "--initial-branch=main", a.bare)
	a.git(a.work, "init", "--quiet", "--initial-branch=main")
	a.git(a.work, "add", "-A")
	a.git(a.work, "commit", "--quiet", "-m", "app")
	a.git(a.work, "repack", "-a", "-d", "-q") // packed, as a developer's clone would be
	a.git(a.work, "remote", "add", "origin", a.bare)
	a.push()
	return a
}

// change makes the one-file change of a redeploy: the next build number in
// changedFile, committed and pushed.
func (a *appRepo) change() {
	a.build++
	must(a.sc, os.WriteFile(filepath.Join(a.work, changedFile), []byte(appConfig(a.build)), 0o644))
	a.git(a.work, "commit", "--quiet", "-am", "build "+strconv.Itoa(a.build))
	a.push()
}

func (a *appRepo) push() {
	a.git(a.work, "push", "--quiet", "origin", "main")
	if out, err := exec.Command("chown", "-R", testutil.DeployUser, a.bare).CombinedOutput(); err != nil {
		a.sc.Fatalf("chown %s: %v: %s", a.bare, err, out)
	}
}

func (a *appRepo) git(dir string, args ...string) string {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = a.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		a.sc.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// appInfo describes a generated app for the reports.
type appInfo struct {
	files       int
	bytes       int64
	changedSize int   // size of changedFile
	diffBytes   int64 // size of the one-line change, as git diff's unified patch
}

func (a *appRepo) info() appInfo {
	info, err := os.Stat(filepath.Join(a.work, changedFile))
	must(a.sc, err)
	return appInfo{files: a.files, bytes: a.bytes, changedSize: int(info.Size()), diffBytes: int64(len(appConfigDiff()))}
}

// appConfigDiff is the one line a redeploy changes, old and new.
func appConfigDiff() string {
	return fmt.Sprintf("-    'build' => '%06d',\n+    'build' => '%06d',\n", 0, 1)
}
