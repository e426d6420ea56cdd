package config

import (
	"slices"
	"sort"
)

// A recipe supplies the usual settings of a framework. It only fills in
// what slipway.yml leaves out: any key the user writes replaces the
// recipe's value for that key entirely.
type recipe struct {
	exclude      []string
	sharedDirs   []string
	sharedFiles  []string
	writableDirs []string
	beforeSwitch []Hook
	afterSwitch  []Hook
	migrations   Migrations
}

var recipes = map[string]recipe{
	// Laravel: storage/ and .env live across releases; migrations run once
	// before the switch, the caches are built in the new release on every
	// host, and queue workers are told to restart after it (they finish
	// their current job first).
	"laravel": {
		exclude:      []string{".git", "node_modules/", "tests/", "phpunit.xml*", ".env", ".phpunit.result.cache"},
		sharedDirs:   []string{"storage"},
		sharedFiles:  []string{".env"},
		writableDirs: []string{"bootstrap/cache", "storage"},
		beforeSwitch: []Hook{
			{Run: "php artisan migrate --force", Once: true, Where: "recipe laravel"},
			{Run: "php artisan config:cache", Where: "recipe laravel"},
			{Run: "php artisan route:cache", Where: "recipe laravel"},
			{Run: "php artisan view:cache", Where: "recipe laravel"},
		},
		afterSwitch: []Hook{
			{Run: "php artisan queue:restart", Where: "recipe laravel"},
		},
		migrations: Migrations{
			Path:     "database/migrations",
			Rollback: "php artisan migrate:rollback --step=$SLIPWAY_MIGRATION_STEPS --force",
			Where:    "recipe laravel",
		},
	},
	// Symfony: var/log and .env.local live across releases; the cache is
	// cleared and warmed in the new release before the switch.
	"symfony": {
		exclude:      []string{".git", "node_modules/", "tests/", "phpunit.xml*", "/var/cache/", "/var/log/", ".env.local"},
		sharedDirs:   []string{"var/log"},
		sharedFiles:  []string{".env.local"},
		writableDirs: []string{"var/cache", "var/log"},
		beforeSwitch: []Hook{
			{Run: "APP_ENV=prod php bin/console cache:clear --no-debug", Where: "recipe symfony"},
		},
		// Doctrine names a migration by its class: migrations/VersionX.php
		// is DoctrineMigrations\VersionX; each is reversed on its own.
		migrations: Migrations{
			Path:     "migrations",
			Rollback: `for m in $SLIPWAY_MIGRATIONS; do APP_ENV=prod php bin/console doctrine:migrations:execute --down --no-interaction "DoctrineMigrations\\${m%.php}" || exit; done`,
			Where:    "recipe symfony",
		},
	},
	// A static site: ship the files, nothing to run.
	"static": {
		exclude: []string{".git", "node_modules/", ".DS_Store"},
	},
}

func recipeNames() []string {
	names := make([]string, 0, len(recipes))
	for name := range recipes {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// apply fills in the recipe's values for every key not given in the file.
func (r recipe) apply(c *Config, given map[string]bool) {
	set := func(key string, dst *[]string, value []string) {
		if !given[key] && len(value) > 0 {
			*dst = slices.Clone(value)
		}
	}
	set("source.exclude", &c.Source.Exclude, r.exclude)
	set("shared.dirs", &c.Shared.Dirs, r.sharedDirs)
	set("shared.files", &c.Shared.Files, r.sharedFiles)
	if !given["writable.dirs"] && len(r.writableDirs) > 0 {
		c.Writable.Dirs = slices.Clone(r.writableDirs)
		if c.Writable.Mode == "" {
			c.Writable.Mode, c.Writable.User = "group", "www-data"
		}
	}
	if !given["hooks.before_switch"] && len(r.beforeSwitch) > 0 {
		c.Hooks.BeforeSwitch = slices.Clone(r.beforeSwitch)
	}
	if !given["hooks.after_switch"] && len(r.afterSwitch) > 0 {
		c.Hooks.AfterSwitch = slices.Clone(r.afterSwitch)
	}
	if !given["migrations"] && r.migrations.Path != "" {
		c.Migrations = r.migrations
	}
}
