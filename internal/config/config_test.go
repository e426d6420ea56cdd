package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// env is a fixed environment, so no test depends on the real one.
func env(vars map[string]string) Loader {
	return Loader{LookupEnv: func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}}
}

// configErrors unpacks what Parse returned into its *Error values.
func configErrors(t *testing.T, err error) []*Error {
	t.Helper()
	var errs []error
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		errs = joined.Unwrap()
	} else {
		errs = []error{err}
	}
	out := make([]*Error, len(errs))
	for i, e := range errs {
		var ce *Error
		if !errors.As(e, &ce) {
			t.Fatalf("error %v is a %T, want *config.Error", e, e)
		}
		out[i] = ce
	}
	return out
}

func TestParseFull(t *testing.T) {
	dir, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join("testdata", "full.yml")
	cfg, err := env(map[string]string{"BRANCH": "main"}).Load(file)
	if err != nil {
		t.Fatal(err)
	}
	at := func(line, col int) string { return fmt.Sprintf("%s:%d:%d", file, line, col) }
	health := &Health{URL: "http://127.0.0.1/health", ExpectStatus: 204, Timeout: 3 * time.Second, Retries: 3, Interval: 2 * time.Second, Where: at(28, 1)}
	want := &Config{
		LockTTL:      15 * time.Minute,
		File:         file,
		Dir:          dir,
		App:          "shop",
		DeployTo:     "/var/www/shop/",
		KeepReleases: 3,
		Symlink:      "absolute",
		Layout:       Layout{Releases: "builds", Shared: "shared", Current: "latest", Repo: "repository"},
		Source: Source{
			Strategy:    "git",
			Delta:       true,
			Recycle:     true,
			Verify:      "changed",
			Compress:    "auto",
			Path:        dir,
			Subdir:      "app",
			Exclude:     []string{".git", "tests/", "phpunit.xml*"},
			RemoteBuild: []string{"composer install --no-dev --optimize-autoloader"},
			GitParallel: 4,
			Repo:        "git@github.com:acme/shop.git",
			Branch:      "main",
			Where:       at(7, 1),
		},
		ForwardAgent: true,
		Shared:       Shared{Dirs: []string{"storage", "bootstrap/cache"}, Files: []string{".env"}},
		Hooks: Hooks{
			BeforeSwitch: []Hook{
				{Run: "php artisan migrate --force", Once: true, Roles: []string{"web"}, Where: at(22, 7)},
				{Run: "php artisan config:cache", Where: at(25, 7)},
			},
			AfterSwitch: []Hook{{Run: "sudo systemctl reload nginx", Where: at(26, 18)}},
		},
		Health: health,
		Stages: []*Stage{
			{
				Name: "production", DeployTo: "/srv/shop", Where: at(33, 3), Health: health,
				Hosts: []Host{
					{Name: "web1.example.com", Host: "web1.example.com", Where: at(36, 9)},
					{Name: "deploy@web2.example.com:2222", Host: "web2.example.com", User: "deploy", Port: 2222, Where: at(37, 9)},
					{Name: "deploy@web3:22", Host: "web3", User: "deploy", Port: 22, Roles: []string{"web", "worker"}, Where: at(38, 9)},
					{Name: "[::1]:2222", Host: "::1", Port: 2222, Where: at(39, 9)},
				},
			},
			{
				Name: "staging", DeployTo: "/var/www/shop", Where: at(40, 3), Health: health,
				Hosts: []Host{{Name: "staging", Host: "staging", Where: at(41, 13)}},
			},
			{
				Name: "demo", DeployTo: filepath.Join(dir, ".slipway-demo"), Where: at(42, 3), Health: health,
				Hosts: []Host{{Name: "local", Host: "local", Local: true, Where: at(43, 13)}},
			},
		},
	}
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("Load(%s):\n got %s\nwant %s", file, dump(cfg), dump(want))
	}
}

func dump(c *Config) string {
	s := fmt.Sprintf("%+v\nhealth %+v", *c, c.Health)
	for _, st := range c.Stages {
		s += fmt.Sprintf("\nstage %+v", *st)
	}
	return s
}

func TestParseDefaults(t *testing.T) {
	cfg, err := env(nil).Parse("slipway.yml", []byte("app: blog\ndeploy_to: /var/www/blog\nstages:\n  production:\n    hosts: [blog.example.com]\n"))
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := filepath.Abs(".")
	if cfg.KeepReleases != 5 || cfg.Symlink != "relative" || cfg.Health != nil || cfg.ForwardAgent ||
		cfg.Layout != (Layout{"releases", "shared", "current", "repo"}) ||
		cfg.Source.Strategy != "upload" || cfg.Source.Path != dir || cfg.Source.PathSet || cfg.Source.Where != "slipway.yml" {
		t.Errorf("defaults: %+v", *cfg)
	}
	cfg, err = env(nil).Parse("slipway.yml", []byte("app: blog\ndeploy_to: /var/www/blog\nhealth: {url: http://localhost/up}\nstages: {production: {hosts: [web1]}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if *cfg.Health != (Health{URL: "http://localhost/up", ExpectStatus: 200, Timeout: 10 * time.Second, Retries: 3, Interval: 2 * time.Second, Where: "slipway.yml:3:1"}) {
		t.Errorf("health defaults: %+v", *cfg.Health)
	}
}

func TestParseUpload(t *testing.T) {
	dir, _ := filepath.Abs("testdata")
	cfg, err := env(nil).Load(filepath.Join("testdata", "upload.yml"))
	if err != nil {
		t.Fatal(err)
	}
	want := Source{
		Strategy: "upload", Path: dir, Subdir: "public", Submodules: true, Branch: "main", Delta: true, Recycle: true, Verify: "changed", Compress: "gzip",
		Build: []string{"npm ci && npm run build"}, Exclude: []string{"node_modules/", "*.map"},
		Where: filepath.Join("testdata", "upload.yml") + ":4:1",
	}
	if !reflect.DeepEqual(cfg.Source, want) {
		t.Errorf("source:\n got %+v\nwant %+v", cfg.Source, want)
	}
	if roles := cfg.Stages[0].Hosts[1].Roles; !reflect.DeepEqual(roles, []string{"web"}) {
		t.Errorf("roles of a block host entry: %v", roles)
	}

	cfg, err = env(nil).Parse(filepath.Join(dir, "slipway.yml"), []byte("app: shop\ndeploy_to: /var/www/shop\nsource: {path: dist/}\n"+validStages))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Source.Path != filepath.Join(dir, "dist") || !cfg.Source.PathSet {
		t.Errorf("path: %q, set %v", cfg.Source.Path, cfg.Source.PathSet)
	}
}

// TestTestdataFiles keeps every fixture (they seed FuzzParse too) loading as
// intended.
func TestTestdataFiles(t *testing.T) {
	for _, tc := range []struct {
		file string
		ok   bool
	}{
		{"full.yml", true},
		{"minimal.yml", true},
		{"capistrano.yml", true},
		{"demo.yml", true},
		{"upload.yml", true},
		{"billion-laughs.yml", false},
	} {
		_, err := env(map[string]string{"BRANCH": "main"}).Load(filepath.Join("testdata", tc.file))
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok=%v", tc.file, err, tc.ok)
		}
	}
}

const validStages = "stages:\n  production:\n    hosts: [web1]\n"

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		yaml    string
		env     map[string]string
		at      string // line:col
		msg     string // part of Msg
		fix     string // part of Fix
		several bool   // other errors are expected too; only the first is checked
	}{
		{
			name: "unknown key with suggestion",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nkep_releases: 3\n" + validStages,
			at:   "3:1", msg: `unknown key "kep_releases" at the top level`, fix: `did you mean "keep_releases"?`,
		},
		{
			name: "unknown key from another level",
			yaml: "app: shop\nstages:\n  production:\n    deploy_to: /srv/shop\n    kep_releases: 3\n    hosts: [web1]\n",
			at:   "5:5", msg: `unknown key "kep_releases" in stages.production`, fix: `did you mean "keep_releases"? it belongs at the top level`,
		},
		{
			name: "key at the wrong level",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nhosts: [web1]\n" + validStages,
			at:   "3:1", msg: `unknown key "hosts"`, fix: `"hosts" belongs in a stage, not at the top level`,
		},
		{
			name: "unknown key without a near one",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nlayout:\n  frobnicate: x\n" + validStages,
			at:   "4:3", msg: `unknown key "frobnicate" in layout`, fix: "the keys allowed in layout are: releases, shared, current, repo",
		},
		{
			name: "unknown key in a hook",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nhooks:\n  before_switch:\n    - rn: make\n" + validStages,
			at:   "5:7", msg: `unknown key "rn" in hooks.before_switch`, fix: `did you mean "run"?`, several: true,
		},
		{
			name: "duplicate key",
			yaml: "app: shop\ndeploy_to: /var/www/shop\napp: blog\n" + validStages,
			at:   "3:1", msg: `duplicate key "app" at the top level (first at line 1)`, fix: "remove one of them",
		},
		{
			name: "duplicate stage",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nstages:\n  production: {hosts: [web1]}\n  production: {hosts: [web2]}\n",
			at:   "5:3", msg: `duplicate key "production" in stages`, fix: "remove one of them",
		},
		{
			name: "keep_releases not a number",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nkeep_releases: five\n" + validStages,
			at:   "3:16", msg: `keep_releases must be a whole number, not "five"`, fix: "write a whole number such as 5",
		},
		{
			name: "keep_releases a fraction",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nkeep_releases: 2.5\n" + validStages,
			at:   "3:16", msg: "must be a whole number", fix: "whole number",
		},
		{
			name: "keep_releases zero",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nkeep_releases: 0\n" + validStages,
			at:   "3:16", msg: "keep_releases must be at least 1", fix: "keep_releases: 5",
		},
		{
			name: "keep_releases empty",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nkeep_releases:\n" + validStages,
			at:   "3:1", msg: "keep_releases must be a whole number, not empty", fix: "whole number",
		},
		{
			name: "symlink enum",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nsymlink: soft\n" + validStages,
			at:   "3:10", msg: `symlink must be relative or absolute, not "soft"`, fix: "allowed values: relative, absolute",
		},
		{
			name: "strategy enum",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nsource:\n  strategy: svn\n" + validStages,
			at:   "4:13", msg: `source.strategy must be upload or git, not "svn"`, fix: "allowed values: upload, git",
		},
		{
			name: "wrong type: mapping for a string",
			yaml: "app: {name: shop}\ndeploy_to: /var/www/shop\n" + validStages,
			at:   "1:6", msg: "app must be a single value, not a mapping", fix: "single value",
		},
		{
			name: "wrong type: string for a list",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nstages:\n  production:\n    hosts: web1\n",
			at:   "5:12", msg: "stages.production.hosts must be a list", fix: "hosts: [ITEM, ...]",
		},
		{
			name: "wrong type: list for a mapping",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nstages:\n  - production\n",
			at:   "4:3", msg: "stages must be a mapping, not a list", fix: "stages: {production: {hosts: [web1.example.com]}}",
		},
		{
			name: "file is not a mapping",
			yaml: "- app: shop\n",
			at:   "1:1", msg: "slipway.yml must be a mapping of settings", fix: "app: shop",
		},
		{
			name: "once not a boolean",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nhooks:\n  before_switch:\n    - {run: make, once: yes}\n" + validStages,
			at:   "5:25", msg: `hooks.before_switch.once must be true or false, not "yes"`, fix: "true or false",
		},
		{
			name: "missing app",
			yaml: "deploy_to: /var/www/shop\n" + validStages,
			at:   "1:1", msg: "missing app", fix: "app: shop",
		},
		{
			name: "empty file",
			yaml: "",
			at:   "1:1", msg: "missing app", fix: "app: shop", several: true,
		},
		{
			name: "invalid app",
			yaml: "app: my shop\ndeploy_to: /var/www/shop\n" + validStages,
			at:   "1:6", msg: `app must be a plain name, not "my shop"`, fix: "letters, digits",
		},
		{
			name: "no stages",
			yaml: "app: shop\ndeploy_to: /var/www/shop\n",
			at:   "1:1", msg: "no stages", fix: "add stages:",
		},
		{
			name: "empty stages",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nstages: {}\n",
			at:   "3:1", msg: "stages is empty", fix: "add a stage",
		},
		{
			name: "stage without hosts",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nstages:\n  production:\n    deploy_to: /srv/shop\n",
			at:   "4:3", msg: `stage "production" has no hosts`, fix: "hosts: [web1.example.com]",
		},
		{
			name: "stage with an empty host list",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nstages:\n  production:\n    hosts: []\n",
			at:   "5:5", msg: `stage "production" has no hosts`, fix: "hosts: [local]",
		},
		{
			name: "empty stage",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nstages:\n  production:\n",
			at:   "4:3", msg: `stage "production" has no hosts`, fix: "hosts:",
		},
		{
			name: "bad stage name",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nstages:\n  -prod: {hosts: [web1]}\n",
			at:   "4:3", msg: `stage name "-prod" is not a plain name`, fix: "e.g. production",
		},
		{
			name: "stage name with a control character",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nstages:\n  \"prod\\e[2J\": {hosts: [\"\"]}\n",
			at:   "4:3", msg: `stage name "prod\x1b[2J" is not a plain name`, fix: "e.g. production",
		},
		{
			name: "missing deploy_to",
			yaml: "app: shop\n" + validStages,
			at:   "3:3", msg: `stage "production" has no deploy_to`, fix: "add deploy_to: /var/www/shop to stages.production, or once at the top level",
		},
		{
			name: "relative deploy_to on a remote stage",
			yaml: "app: shop\nstages:\n  production:\n    deploy_to: srv/shop\n    hosts: [web1]\n",
			at:   "4:16", msg: `stages.production.deploy_to "srv/shop" is relative, but stage "production" deploys to remote hosts`, fix: "use an absolute path such as /var/www/shop",
		},
		{
			name: "inherited relative deploy_to on a remote stage",
			yaml: "app: shop\ndeploy_to: ./.slipway-demo\nstages:\n  demo: {hosts: [local]}\n  production: {hosts: [web1]}\n",
			at:   "2:12", msg: `deploy_to "./.slipway-demo" is relative, but stage "production" deploys to remote hosts`, fix: "use an absolute path",
		},
		{
			name: "relative deploy_to with a local and a remote host",
			yaml: "app: shop\nstages:\n  demo:\n    deploy_to: demo\n    hosts: [local, web1]\n",
			at:   "4:16", msg: "is relative", fix: "only for stages whose hosts are all local",
		},
		{
			name: "deploy_to with ~",
			yaml: "app: shop\ndeploy_to: ~/shop\n" + validStages,
			at:   "2:12", msg: "is relative", fix: "slipway does not expand ~",
		},
		{
			name: "deploy_to is root",
			yaml: "app: shop\ndeploy_to: /\n" + validStages,
			at:   "2:12", msg: "deploy_to must not be the root directory /", fix: "/var/www/shop",
		},
		{
			name: "deploy_to cleans to root",
			yaml: "app: shop\nstages:\n  production:\n    deploy_to: /var/../\n    hosts: [web1]\n",
			at:   "4:16", msg: "stages.production.deploy_to must not be the root directory /", fix: "directory of its own",
		},
		{
			name: "deploy_to empty",
			yaml: "app: shop\ndeploy_to: \"\"\n" + validStages,
			at:   "2:12", msg: "deploy_to is empty", fix: "deploy_to: /var/www/shop",
		},
		{
			name: "shared path absolute",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nshared:\n  dirs: [storage, /etc]\n" + validStages,
			at:   "4:19", msg: `shared.dirs: "/etc" is absolute`, fix: "a path inside the release, relative to it",
		},
		{
			name: "shared path with ..",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nshared:\n  files:\n    - ../../.ssh/authorized_keys\n" + validStages,
			at:   "5:7", msg: `shared.files: "../../.ssh/authorized_keys" goes up with ..`, fix: "without ..",
		},
		{
			name: "shared path .. in the middle",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nshared:\n  dirs: [storage/../../x]\n" + validStages,
			at:   "4:10", msg: "goes up with ..", fix: "without ..",
		},
		{
			name: "shared path is the release",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nshared:\n  dirs: [./]\n" + validStages,
			at:   "4:10", msg: `shared.dirs: "./" names the directory itself`, fix: "inside the release",
		},
		{
			name: "shared path empty",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nshared:\n  dirs: [\"\"]\n" + validStages,
			at:   "4:10", msg: `shared.dirs: "" is empty`, fix: "e.g. storage or .env",
		},
		{
			name: "shared path inside another",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nshared:\n  dirs: [storage]\n  files: [storage/oauth.key]\n" + validStages,
			at:   "5:11", msg: `shared path "storage/oauth.key" is inside shared path "storage" (line 4)`, fix: `keep only "storage"`,
		},
		{
			name: "shared path twice",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nshared:\n  dirs: [storage, storage/]\n" + validStages,
			at:   "4:19", msg: `shared path "storage" is listed twice`, fix: "remove one of them",
		},
		{
			name: "host empty",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nstages:\n  production:\n    hosts: [web1, \"\"]\n",
			at:   "5:19", msg: "empty host entry", fix: "USER@NAME:PORT",
		},
		{
			name: "host null",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nstages:\n  production:\n    hosts:\n      - web1\n      -\n",
			at:   "7:7", msg: "empty host entry", fix: "USER@NAME:PORT",
		},
		{
			name: "host with a space",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nstages:\n  production:\n    hosts: [\"web1 web2\"]\n",
			at:   "5:13", msg: `host "web1 web2" contains a space`, fix: "one host per entry",
		},
		{
			name: "host with a control character",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nstages:\n  production:\n    hosts: [\"web1\\u001b[31m\"]\n",
			at:   "5:13", msg: `host "web1\x1b[31m" contains a space or a control character`, fix: "one host per entry",
		},
		{
			name: "host starting with -",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nstages:\n  production:\n    hosts: [-oProxyCommand=sh]\n",
			at:   "5:13", msg: `host "-oProxyCommand=sh" starts with -`, fix: "option",
		},
		{
			name: "host with bad characters",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nstages:\n  production:\n    hosts: [\"web1;reboot\"]\n",
			at:   "5:13", msg: `host "web1;reboot" has no valid host name`, fix: "letters, digits",
		},
		{
			name: "host with a bad port",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nstages:\n  production:\n    hosts: [\"web1:ssh\"]\n",
			at:   "5:13", msg: `port "ssh" of host "web1:ssh" is not a number from 1 to 65535`, fix: "web1.example.com:2222",
		},
		{
			name: "host with a port out of range",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nstages:\n  production:\n    hosts: [\"web1:70000\"]\n",
			at:   "5:13", msg: `port "70000"`, fix: "from 1 to 65535",
		},
		{
			name: "host with an empty port",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nstages:\n  production:\n    hosts: [\"web1:\"]\n",
			at:   "5:13", msg: `port "" of host "web1:"`, fix: "from 1 to 65535",
		},
		{
			name: "host mapping with port 0",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nstages:\n  production:\n    hosts:\n      - {host: web1, port: 0}\n",
			at:   "6:28", msg: "port 0 is not a number from 1 to 65535", fix: "port: 22",
		},
		{
			name: "host mapping without host",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nstages:\n  production:\n    hosts:\n      - {user: deploy}\n",
			at:   "6:9", msg: "host entry has no host:", fix: "host: web3",
		},
		{
			name: "host with an empty user",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nstages:\n  production:\n    hosts: [\"@web1\"]\n",
			at:   "5:13", msg: `host "@web1" has no valid user before @`, fix: "deploy@web1",
		},
		{
			name: "IPv6 without brackets before a port",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nstages:\n  production:\n    hosts: [\"2001:db8::1::22\"]\n",
			at:   "5:13", msg: "is not a host name or an IPv6 address", fix: "in brackets",
		},
		{
			name: "brackets around a name",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nstages:\n  production:\n    hosts: [\"[web1]:22\"]\n",
			at:   "5:13", msg: "is not an IPv6 address", fix: "brackets are for IPv6 addresses",
		},
		{
			name: "local with a user",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nstages:\n  production:\n    hosts: [deploy@local]\n",
			at:   "5:13", msg: "local means this machine without SSH, so it takes no user or port", fix: "localhost",
		},
		{
			name: "local mapping with a port",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nstages:\n  production:\n    hosts:\n      - {host: local, port: 22}\n",
			at:   "6:9", msg: "local means this machine without SSH", fix: "localhost",
		},
		{
			name: "user given twice",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nstages:\n  production:\n    hosts:\n      - {host: deploy@web1, user: root}\n",
			at:   "6:9", msg: `host "deploy@web1" is given a user or port twice`, fix: "once",
		},
		{
			name: "duplicate host",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nstages:\n  production:\n    hosts:\n      - web1\n      - web2\n      - web1\n",
			at:   "8:9", msg: `host "web1" is listed twice in stage "production": it is "web1" at line 6`, fix: "remove one of them",
		},
		{
			name: "duplicate host spelled differently",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nstages:\n  production:\n    hosts: [WEB1, deploy@web1, \"web1:22\"]\n",
			at:   "5:19", msg: `host "deploy@web1" is listed twice in stage "production": it is "WEB1" at line 5`, fix: "remove one of them",
		},
		{
			name: "duplicate local",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nstages:\n  demo:\n    hosts: [local, {host: local, roles: [web]}]\n",
			at:   "5:20", msg: `host "local" is listed twice`, fix: "remove one of them",
		},
		{
			name: "hook with an empty run",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nhooks:\n  before_switch:\n    - run: \"  \"\n" + validStages,
			at:   "5:12", msg: "hooks.before_switch: hook has an empty run", fix: "write the command to run",
		},
		{
			name: "hook that is an empty string",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nhooks:\n  after_switch: [\"\"]\n" + validStages,
			at:   "4:18", msg: "hooks.after_switch: hook has an empty run", fix: "write the command to run",
		},
		{
			name: "hook that is an empty entry",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nhooks:\n  before_switch:\n    -\n" + validStages,
			at:   "5:5", msg: "hooks.before_switch: hook has an empty run", fix: "write the command to run",
		},
		{
			name: "hook without run",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nhooks:\n  before_switch:\n    - once: true\n" + validStages,
			at:   "5:7", msg: "hook has no run:", fix: "run: php artisan migrate --force",
		},
		{
			name: "hook with empty roles",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nhooks:\n  before_switch:\n    - {run: make, roles: []}\n" + validStages,
			at:   "5:26", msg: "hooks.before_switch.roles is empty", fix: "remove roles:",
		},
		{
			name: "hook role not a name",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nhooks:\n  before_switch:\n    - {run: make, roles: [\"web server\"]}\n" + validStages,
			at:   "5:27", msg: `"web server" is not a role name`, fix: "e.g. web",
		},
		{
			name: "NUL in a value",
			yaml: "app: shop\ndeploy_to: \"/var/www/shop\\0\"\n" + validStages,
			at:   "2:12", msg: "deploy_to contains a NUL byte", fix: "remove the NUL",
		},
		{
			name: "NUL in the file",
			yaml: "app: shop\ndeploy_to: /var/www/\x00shop\n" + validStages,
			at:   "2:21", msg: "the file contains a NUL byte", fix: "text file",
		},
		{
			name: "control character in the file",
			yaml: "app: shop\x1b[2J\n",
			at:   "1:10", msg: "the file contains the control character U+001B", fix: "remove it",
		},
		{
			name: "not UTF-8",
			yaml: "app: sh\xffop\n",
			at:   "1:8", msg: "not valid UTF-8", fix: "UTF-8",
		},
		{
			name: "anchor",
			yaml: "app: shop\ndeploy_to: &dir /var/www/shop\n" + validStages,
			at:   "2:12", msg: "YAML anchors (&name) are not supported", fix: "write the value out in full",
		},
		{
			name: "unquoted glob read as an alias",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nsource:\n  exclude: [*.log]\n" + validStages,
			at:   "4:13", msg: "YAML aliases (*name) are not supported", fix: `quoted: "*.log"`,
		},
		{
			name: "merge key",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nstages:\n  production:\n    <<: {hosts: [web1]}\n",
			at:   "5:5", msg: "merge keys (<<) are not supported", fix: "write the keys out in full",
		},
		{
			name: "tag",
			yaml: "app: !!str shop\ndeploy_to: /var/www/shop\n" + validStages,
			at:   "1:6", msg: "YAML tags (!name) are not supported", fix: "remove the tag",
		},
		{
			name: "deep nesting",
			yaml: "app: " + strings.Repeat("[", 200),
			at:   "1:70", msg: "brackets nested more than 64 deep", fix: "unclosed",
		},
		{
			name: "deep indentation",
			yaml: "app:" + strings.Repeat(" -", 200) + " x\n",
			at:   "1:258", msg: "indented more than 256 columns", fix: "indentation",
		},
		{
			name: "syntax error",
			yaml: "app: shop\ndeploy_to: [/var/www\n" + validStages,
			at:   "3:1", msg: "invalid YAML: ',' or ']' must be specified", fix: "check the indentation",
		},
		{
			name: "tab indentation",
			yaml: "app: shop\nstages:\n\tproduction: {}\n",
			at:   "3:1", msg: `invalid YAML: found character '\t' that cannot start any token`, fix: "spaces, not tabs",
		},
		{
			name: "second document",
			yaml: "app: shop\ndeploy_to: /var/www/shop\n" + validStages + "---\napp: blog\n",
			at:   "6:1", msg: "a second YAML document", fix: "remove this ---",
		},
		{
			name: "layout name with a slash",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nlayout: {current: www/current}\n" + validStages,
			at:   "3:19", msg: `layout.current must be one plain name`, fix: "it always lives directly in deploy_to",
		},
		{
			name: "layout name ..",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nlayout: {releases: ..}\n" + validStages,
			at:   "3:20", msg: `layout.releases must be one plain name of letters, digits, '.', '_' and '-', not ".."`, fix: "releases: releases",
		},
		{
			name: "layout name reserved",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nlayout: {repo: .slipway}\n" + validStages,
			at:   "3:16", msg: `layout.repo cannot be ".slipway"`, fix: "another name",
		},
		{
			name: "layout names collide with a default",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nlayout:\n  current: shared\n" + validStages,
			at:   "4:3", msg: `layout.shared and layout.current are both "shared"`, fix: "its own name",
		},
		{
			name: "git without repo",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nsource:\n  strategy: git\n" + validStages,
			at:   "4:3", msg: "source.strategy git needs source.repo", fix: "repo: git@github.com:acme/shop.git",
		},
		{
			name: "remote build with upload",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nsource:\n  remote_build: [make]\n" + validStages,
			at:   "4:3", msg: "source.remote_build applies to strategy git, not upload", fix: "run the commands here with build:",
		},
		{
			name: "local build with git",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nsource:\n  build: [make]\n  strategy: git\n  repo: /srv/git/shop.git\n" + validStages,
			at:   "4:3", msg: "source.build applies to strategy upload, not git", fix: "remote_build:",
		},
		{
			name: "path with git",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nsource: {strategy: git, repo: /srv/git/shop.git, path: dist}\n" + validStages,
			at:   "3:50", msg: "source.path applies to strategy upload, not git", fix: "remove path:",
		},
		{
			name: "subdir with path",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nsource:\n  path: dist\n  subdir: app\n" + validStages,
			at:   "5:3", msg: "source.subdir picks a directory of a git export, but source.path ships a directory as it is", fix: "remove subdir:",
		},
		{
			name: "subdir outside the repository",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nsource:\n  subdir: ../other\n" + validStages,
			at:   "4:11", msg: `source.subdir "../other" goes up with ..`, fix: "subdir: app",
		},
		{
			name: "git_parallel zero",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nsource: {strategy: git, repo: /srv/git/shop.git, git_parallel: 0}\n" + validStages,
			at:   "3:64", msg: "source.git_parallel must be at least 1, not 0", fix: "git_parallel: 4",
		},
		{
			name: "compress unknown",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nsource:\n  compress: brotli\n" + validStages,
			at:   "4:13", msg: `source.compress`, fix: "gzip",
		},
		{
			name: "compress with git",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nsource: {strategy: git, repo: /srv/git/shop.git, compress: gzip}\n" + validStages,
			at:   "3:50", msg: "source.compress applies to strategy upload, not git", fix: "remove compress:",
		},
		{
			name: "forward_agent not a boolean",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nforward_agent: 1\n" + validStages,
			at:   "3:16", msg: `forward_agent must be true or false, not "1"`, fix: "true or false",
		},
		{
			name: "repo like an option",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nsource:\n  repo: --upload-pack=touch /tmp/x\n" + validStages,
			at:   "4:9", msg: "is not a repository URL", fix: "git@github.com:acme/shop.git",
		},
		{
			name: "bad branch",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nsource:\n  branch: main..dev\n" + validStages,
			at:   "4:11", msg: `source.branch "main..dev" is not a valid git branch name`, fix: "e.g. main",
		},
		{
			name: "empty build command",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nsource:\n  build: [make, \" \"]\n" + validStages,
			at:   "4:17", msg: "source.build has an empty entry", fix: "remove the entry",
		},
		{
			name: "health without url",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nhealth:\n  timeout: 5s\n" + validStages,
			at:   "3:1", msg: "health has no url", fix: "url: http://127.0.0.1/health",
		},
		{
			name: "health url not http",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nhealth: {url: \"ftp://x/health\"}\n" + validStages,
			at:   "3:15", msg: `health.url "ftp://x/health" must start with http:// or https://`, fix: "http://127.0.0.1/health",
		},
		{
			name: "health timeout without unit",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nhealth: {url: http://localhost/, timeout: 10}\n" + validStages,
			at:   "3:43", msg: `health.timeout must be a duration such as 10s, not "10"`, fix: "with its unit",
		},
		{
			name: "health status out of range",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nhealth: {url: http://localhost/, expect_status: 700}\n" + validStages,
			at:   "3:49", msg: "health.expect_status 700 is not an HTTP status", fix: "expect_status: 200",
		},
		{
			name: "unset variable",
			yaml: "app: shop\ndeploy_to: ${DEPLOY_ROOT}/shop\n" + validStages,
			at:   "2:12", msg: "deploy_to: environment variable DEPLOY_ROOT is not set", fix: "export DEPLOY_ROOT=... before running slipway, or write $${DEPLOY_ROOT} for a literal ${DEPLOY_ROOT}",
		},
		{
			name: "unset variable in a host",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nstages:\n  production:\n    hosts:\n      - web1\n      - ${WEB2}\n",
			at:   "7:9", msg: "stages.production.hosts: environment variable WEB2 is not set", fix: "export WEB2=",
		},
		{
			name: "variable that expands to a bad host",
			yaml: "app: shop\ndeploy_to: /var/www/shop\nstages:\n  production:\n    hosts: [\"${WEB}\"]\n",
			env:  map[string]string{"WEB": "web1 && reboot"},
			at:   "5:13", msg: `host "web1 && reboot" contains a space`, fix: "one host per entry",
		},
		{
			name: "shell default syntax",
			yaml: "app: shop\ndeploy_to: ${ROOT:-/var/www}/shop\n" + validStages,
			at:   "2:12", msg: `"${ROOT:-/var/www}" is not an environment variable reference`, fix: "$${",
		},
		{
			name: "unclosed variable",
			yaml: "app: shop\ndeploy_to: /var/www/${APP\n" + validStages,
			at:   "2:12", msg: "without its closing }", fix: "${NAME}",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := env(tc.env).Parse("slipway.yml", []byte(tc.yaml))
			if err == nil {
				t.Fatalf("no error; config %+v", *cfg)
			}
			if cfg != nil {
				t.Errorf("got a config with the error")
			}
			errs := configErrors(t, err)
			if len(errs) != 1 && !tc.several {
				t.Errorf("want one error, got %d:\n%v", len(errs), err)
			}
			got := errs[0]
			if at := fmt.Sprintf("%d:%d", got.Line, got.Col); at != tc.at {
				t.Errorf("at %s, want %s\n%v", at, tc.at, got)
			}
			if !strings.Contains(got.Msg, tc.msg) {
				t.Errorf("message %q does not contain %q", got.Msg, tc.msg)
			}
			if !strings.Contains(got.Fix, tc.fix) {
				t.Errorf("fix %q does not contain %q", got.Fix, tc.fix)
			}
			if got.File != "slipway.yml" {
				t.Errorf("file %q", got.File)
			}
		})
	}
}

// TestParseAccepts covers YAML forms a valid file may take.
func TestParseAccepts(t *testing.T) {
	for name, src := range map[string]string{
		"byte order mark":   "\ufeffapp: shop\ndeploy_to: /var/www/shop\n" + validStages,
		"CRLF line endings": "app: shop\r\ndeploy_to: /var/www/shop\r\nstages:\r\n  production:\r\n    hosts: [web1]\r\n",
		"YAML directive":    "%YAML 1.2\n---\napp: shop\ndeploy_to: /var/www/shop\n" + validStages + "...\n",
		"document markers":  "---\napp: shop\ndeploy_to: /var/www/shop\n" + validStages + "---\n",
		"block hosts":       "app: shop\ndeploy_to: /var/www/shop\nstages:\n  production:\n    hosts:\n      - host: web1\n        port: 2222\n      - host: web1\n",
		"IPv6 forms":        "app: shop\ndeploy_to: /var/www/shop\nstages:\n  production:\n    hosts: [\"::1\", \"deploy@[::1]:2222\", \"fe80::1%eth0\"]\n",
		"empty hook lists":  "app: shop\ndeploy_to: /var/www/shop\nhooks:\n  before_switch:\n  after_switch: []\n" + validStages,
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := env(nil).Parse("slipway.yml", []byte(src))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.App != "shop" || len(cfg.Stages) != 1 || len(cfg.Stages[0].Hosts) == 0 {
				t.Errorf("parsed as %s", dump(cfg))
			}
		})
	}
}

func TestErrorFormat(t *testing.T) {
	src := "app: shop\nstages:\n  production:\n    deploy_to: /srv/shop\n    kep_releases: 3\n    hosts: [web1]\n"
	_, err := env(nil).Parse("slipway.yml", []byte(src))
	want := `slipway.yml:5:5: unknown key "kep_releases" in stages.production
  fix: did you mean "keep_releases"? it belongs at the top level, not in stages.production
   4 |     deploy_to: /srv/shop
 > 5 |     kep_releases: 3
     |     ^`
	if err == nil || err.Error() != want {
		t.Errorf("got:\n%v\nwant:\n%s", err, want)
	}
}

func TestErrorSnippetIsSafeAndShort(t *testing.T) {
	long := strings.Repeat("x", 5000)
	src := "app: shop\ndeploy_to: /var/www/shop\nsource: {exclude: [" + long + "], build: \"\\e[31m\", bogus: 1}\n" + long + ": 1\n" + validStages
	_, err := env(nil).Parse("slipway.yml", []byte(src))
	if err == nil {
		t.Fatal("no error")
	}
	text := err.Error()
	for _, line := range strings.Split(text, "\n") {
		if len(line) > 400 {
			t.Errorf("snippet line of %d bytes: %.80s...", len(line), line)
		}
	}
	if !strings.Contains(text, "...") || !strings.Contains(text, `unknown key "bogus"`) {
		t.Errorf("unexpected error:\n%s", text)
	}
}

func TestSeveralErrors(t *testing.T) {
	src := "app: shop\nkeep_releases: none\nsymlink: hard\n" + validStages
	_, err := env(nil).Parse("slipway.yml", []byte(src))
	errs := configErrors(t, err)
	var got []string
	for _, e := range errs {
		got = append(got, fmt.Sprintf("%d:%d", e.Line, e.Col))
	}
	if want := []string{"2:16", "3:10", "5:3"}; !reflect.DeepEqual(got, want) {
		t.Errorf("errors at %v, want %v:\n%v", got, want, err)
	}
	var first *Error
	if !errors.As(err, &first) || first.Line != 2 {
		t.Errorf("errors.As gives %+v, want the first error in the file", first)
	}
}

func TestExpand(t *testing.T) {
	vars := map[string]string{"BRANCH": "release/2.0", "ROOT": "/srv", "EMPTY": "", "PORT": "2222", "KEEP": "7"}
	src := `app: shop
deploy_to: ${ROOT}/shop
keep_releases: ${KEEP}
source:
  branch: ${BRANCH}
  build: ["echo ${BRANCH}${EMPTY}", "echo $$${HOME} $HOME $$ $${HOME}"]
hooks:
  after_switch:
    - echo "$${DEPLOY_ID:-none}" $1 $$ ${ROOT}
stages:
  production:
    hosts: ["deploy@web1:${PORT}", {host: web2, port: "${PORT}"}]
`
	cfg, err := env(vars).Parse("slipway.yml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ got, want any }{
		{cfg.DeployTo, "/srv/shop"},
		{cfg.Stages[0].DeployTo, "/srv/shop"},
		{cfg.KeepReleases, 7},
		{cfg.Source.Branch, "release/2.0"},
		{cfg.Source.Build[0], "echo release/2.0"},
		{cfg.Source.Build[1], "echo $${HOME} $HOME $$ ${HOME}"},
		{cfg.Hooks.AfterSwitch[0].Run, `echo "${DEPLOY_ID:-none}" $1 $$ /srv`},
		{cfg.Stages[0].Hosts[0].Port, 2222},
		{cfg.Stages[0].Hosts[0].Name, "deploy@web1:2222"},
		{cfg.Stages[0].Hosts[1].Port, 2222},
	} {
		if c.got != c.want {
			t.Errorf("got %#v, want %#v", c.got, c.want)
		}
	}
}

func TestStage(t *testing.T) {
	cfg, err := env(nil).Parse("slipway.yml", []byte("app: shop\ndeploy_to: /var/www/shop\nstages:\n  production: {hosts: [web1]}\n  staging: {hosts: [web2]}\n  demo: {hosts: [local], deploy_to: ./demo}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.StageNames(); !reflect.DeepEqual(got, []string{"production", "staging", "demo"}) {
		t.Errorf("StageNames() = %v", got)
	}
	st, err := cfg.Stage("staging")
	if err != nil || st.Name != "staging" || st.Hosts[0].Name != "web2" {
		t.Errorf("Stage(staging) = %+v, %v", st, err)
	}
	_, err = cfg.Stage("prod")
	want := `unknown stage "prod"; stages in slipway.yml: production, staging, demo`
	if err == nil || err.Error() != want || !errors.Is(err, ErrUnknownStage) {
		t.Errorf("Stage(prod) error = %v, want %s", err, want)
	}
}

func TestLocalDeployTo(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "slipway.yml")
	for _, tc := range []struct {
		name, yaml string
		want       map[string]string // stage → DeployTo
	}{
		{
			name: "relative on a local stage resolves against the file's directory",
			yaml: "app: shop\nstages:\n  demo:\n    hosts: [local]\n    deploy_to: ./.slipway-demo/\n",
			want: map[string]string{"demo": filepath.Join(dir, ".slipway-demo")},
		},
		{
			name: "inherited relative for local, own absolute for remote",
			yaml: "app: shop\ndeploy_to: demo\nstages:\n  demo: {hosts: [local]}\n  production: {hosts: [web1], deploy_to: /srv//shop/}\n",
			want: map[string]string{"demo": filepath.Join(dir, "demo"), "production": "/srv/shop"},
		},
		{
			name: "absolute on a local stage is kept",
			yaml: "app: shop\ndeploy_to: /tmp/../opt/shop\nstages:\n  demo: {hosts: [{host: local, roles: [web]}]}\n",
			want: map[string]string{"demo": "/opt/shop"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := env(nil).Parse(file, []byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			for name, want := range tc.want {
				st, err := cfg.Stage(name)
				if err != nil {
					t.Fatal(err)
				}
				if st.DeployTo != want {
					t.Errorf("stage %s: DeployTo %q, want %q", name, st.DeployTo, want)
				}
			}
		})
	}
	_, err := env(nil).Parse("/slipway.yml", []byte("app: shop\nstages:\n  demo:\n    hosts: [local]\n    deploy_to: .\n"))
	if errs := configErrors(t, err); errs[0].Line != 5 || !strings.Contains(errs[0].Msg, "resolves to the root directory") {
		t.Errorf("deploy_to . next to /slipway.yml: %v", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()

	_, err := Load(filepath.Join(dir, "slipway.yml"))
	var ce *Error
	if !errors.Is(err, fs.ErrNotExist) || !errors.As(err, &ce) || !strings.Contains(ce.Fix, "-c FILE") {
		t.Errorf("missing file: %v", err)
	}

	_, err = Load(dir)
	if !errors.As(err, &ce) || !strings.Contains(ce.Msg, "is a directory") {
		t.Errorf("directory: %v", err)
	}

	big := filepath.Join(dir, "big.yml")
	data := []byte("app: shop\n# " + strings.Repeat("x", maxFileSize) + "\n")
	if err := os.WriteFile(big, data, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(big)
	if !errors.As(err, &ce) || ce.Line != 0 || !strings.Contains(ce.Msg, "larger than 1024 KiB") {
		t.Errorf("big file: %v", err)
	}
	if want := big + ": the file is larger than 1024 KiB\n  fix: "; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("big file error %q does not start with %q", err, want)
	}

	_, err = Parse("slipway.yml", data)
	if !errors.As(err, &ce) || !strings.Contains(ce.Msg, "larger than") {
		t.Errorf("Parse of a big file: %v", err)
	}
}

// TestHostileInputFailsFast bounds the time go-yaml can be made to spend:
// what its parser takes quadratic time on is refused before it runs.
func TestHostileInputFailsFast(t *testing.T) {
	for name, src := range map[string]string{
		"brackets":         strings.Repeat("[", maxFileSize),
		"braces":           "a: " + strings.Repeat("{a: ", maxFileSize/4-1),
		"block sequences":  strings.Repeat("- ", maxFileSize/2),
		"many shallow":     strings.Repeat("- "+strings.Repeat("[", 60)+strings.Repeat("]", 60)+"\n", maxFileSize/124),
		"aliases":          "a: &a [x]\nb: [" + strings.Repeat("*a, ", maxFileSize/5) + "]\n",
		"indented columns": strings.Repeat(" ", 250) + "- a:\n" + strings.Repeat(" ", 252) + "- b\n",
		"keys":             strings.Repeat("a: 1\n", maxFileSize/5),
		"explicit keys":    strings.Repeat("? a\n: 1\n", maxFileSize/8),
		"documents":        strings.Repeat("a: 1\n---\n", maxFileSize/9),
		"document ends":    strings.Repeat("a: 1\n...\n", maxFileSize/9),
		"empty entries":    strings.Repeat("-\n", maxFileSize/2),
		"keys only":        "{" + strings.Repeat("a,", maxFileSize/2-1) + "}",
		"empty values":     "- " + strings.Repeat("a: ,", maxFileSize/4-1),
	} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			_, err := env(nil).Parse("slipway.yml", []byte(src))
			if err == nil {
				t.Fatal("no error")
			}
			// Not a speed goal (machines here are shared and noisy): a
			// guard against the quadratic paths, which took 81 s on one of
			// these inputs before they were refused; anything near a minute
			// means a guard is gone.
			if d := time.Since(start); d > 60*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}
