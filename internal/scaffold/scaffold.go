// Package scaffold writes a starter slipway.yml for a project: it looks at
// the project's files to guess its kind and fills in the matching recipe,
// commented, with a demo stage that deploys to this machine.
package scaffold

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"
)

// Kind is what a project looks like.
type Kind string

const (
	Laravel Kind = "laravel"
	Symfony Kind = "symfony"
	Node    Kind = "node"
	Go      Kind = "go"
	Static  Kind = "static"
	Generic Kind = "generic"
)

// Project is what Detect found.
type Project struct {
	Kind   Kind
	App    string // a name for app:
	Git    bool   // the directory is in a git repository: ship clean exports
	Public string // static: the directory to ship ("." when the site is at the top)
}

// Detect guesses the kind of the project in dir.
func Detect(dir string) Project {
	abs, _ := filepath.Abs(dir)
	p := Project{Kind: Generic, App: appName(filepath.Base(abs)), Git: inGit(abs), Public: "."}
	composer, _ := os.ReadFile(filepath.Join(dir, "composer.json"))
	switch {
	case bytes.Contains(composer, []byte(`"laravel/framework"`)):
		p.Kind = Laravel
	case bytes.Contains(composer, []byte(`"symfony/framework-bundle"`)) || bytes.Contains(composer, []byte(`"symfony/symfony"`)):
		p.Kind = Symfony
	case exists(dir, "package.json"):
		p.Kind = Node
	case exists(dir, "go.mod"):
		p.Kind = Go
	default:
		for _, pub := range []string{".", "public", "dist", "_site", "build"} {
			if exists(dir, filepath.Join(pub, "index.html")) {
				p.Kind, p.Public = Static, pub
				break
			}
		}
	}
	return p
}

func exists(dir, name string) bool {
	_, err := os.Stat(filepath.Join(dir, name))
	return err == nil
}

func inGit(dir string) bool {
	for d := dir; ; d = filepath.Dir(d) {
		if exists(d, ".git") {
			return true
		}
		if filepath.Dir(d) == d {
			return false
		}
	}
}

var notName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// appName makes a directory name an app name slipway accepts.
func appName(base string) string {
	name := strings.Trim(notName.ReplaceAllString(base, "-"), "-.")
	if name == "" {
		return "app"
	}
	return name
}

// Render is the commented slipway.yml for p.
func Render(p Project) []byte {
	var b bytes.Buffer
	if err := starter.Execute(&b, p); err != nil {
		panic(err) // the template is fixed; its data cannot fail it
	}
	return b.Bytes()
}

var starter = template.Must(template.New("slipway.yml").Parse(`# slipway.yml: written by slipway init for a {{.Kind}} project. Reference: README.md.
app: {{.App}}
{{- if eq .Kind "laravel"}}
# The laravel recipe shares storage/ and .env, migrates once before the switch,
# builds the config/route/view caches and restarts queue workers after it.
# Any key you write below replaces the recipe's value for that key.
recipe: laravel
{{- else if eq .Kind "symfony"}}
# The symfony recipe shares var/log and .env.local and warms the cache before the switch.
recipe: symfony
{{- else if eq .Kind "static"}}
recipe: static
{{- end}}
deploy_to: /var/www/{{.App}}
keep_releases: 5

source:
{{- if eq .Kind "static"}}
  path: {{.Public}}                 # ship this directory as it is
{{- else if .Git}}
  # Without path:, slipway ships a clean export of this git repository's HEAD
  # (--revision/--branch/--tag pick another), built here, so untracked files never ship.
  exclude: [.git, tests/, node_modules/]
{{- else}}
  path: .                         # ship this directory as it is (put it in git to ship clean exports)
  exclude: [.git, tests/, node_modules/]
{{- end}}
{{- if eq .Kind "laravel"}}
  build:
    - composer install --no-dev --optimize-autoloader --no-interaction
    # - npm ci && npm run build
{{- else if eq .Kind "symfony"}}
  build:
    - composer install --no-dev --optimize-autoloader --no-interaction
{{- else if eq .Kind "node"}}
  build:
    - npm ci
    - npm run build --if-present
{{- else if eq .Kind "go"}}
  build:
    - CGO_ENABLED=0 go build -o bin/{{.App}} .
{{- end}}
{{- if or (eq .Kind "node") (eq .Kind "go")}}

shared:
  dirs: [logs]
  # files: [.env]                 # must exist on every host before the first deploy

hooks:
  after_switch:
    # A systemd unit with WorkingDirectory=/var/www/{{.App}}/current and an
    # ExecReload= that restarts gracefully; never "restart" (it drops requests).
    - sudo systemctl reload {{.App}}
{{- end}}

# health:                         # checked on each host after the switch; failure rolls back
#   url: http://127.0.0.1:80/health

stages:
  production:
    hosts:
      - deploy@web1.example.com   # [user@]host[:port], or an alias from ~/.ssh/config
  demo:
    hosts: [local]                # this machine, no SSH: try it with slipway deploy demo
    deploy_to: ./.slipway-demo
`))
