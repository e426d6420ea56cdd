package e2e

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/slipway-deploy/slipway/internal/testutil"
)

// migratingArtisan is an artisan-shaped migrator for the migrations proof:
// real SQL migrations on SQLite (database/migrations/*.php each return
// their up and down statements), applied in name order by `migrate` and
// reversed newest first by `migrate:rollback --step=N`, with the applied
// ones in a migrations table, as Laravel does.
const migratingArtisan = `<?php
$db = new PDO('sqlite:' . getenv('DB_PATH'));
$db->setAttribute(PDO::ATTR_ERRMODE, PDO::ERRMODE_EXCEPTION);
$db->exec('CREATE TABLE IF NOT EXISTS migrations (name TEXT PRIMARY KEY, batch INTEGER)');
$dir = __DIR__ . '/database/migrations';
switch ($argv[1] ?? '') {
case 'migrate':
    $done = $db->query('SELECT name FROM migrations')->fetchAll(PDO::FETCH_COLUMN);
    $batch = (int) $db->query('SELECT COALESCE(MAX(batch), 0) FROM migrations')->fetchColumn() + 1;
    $files = glob("$dir/*.php");
    sort($files);
    foreach ($files as $f) {
        $name = basename($f);
        if (in_array($name, $done, true)) {
            continue;
        }
        $m = require $f;
        $db->exec($m['up']);
        $db->prepare('INSERT INTO migrations VALUES (?, ?)')->execute([$name, $batch]);
        echo "migrated $name\n";
    }
    break;
case 'migrate:rollback':
    $steps = 1;
    foreach ($argv as $a) {
        if (preg_match('/^--step=(\d+)$/', $a, $m)) {
            $steps = (int) $m[1];
        }
    }
    $names = $db->query('SELECT name FROM migrations ORDER BY name DESC')->fetchAll(PDO::FETCH_COLUMN);
    foreach (array_slice($names, 0, $steps) as $name) {
        $m = require "$dir/$name";
        $db->exec($m['down']);
        $db->prepare('DELETE FROM migrations WHERE name = ?')->execute([$name]);
        echo "rolled back $name\n";
    }
    break;
default:
    fwrite(STDERR, "unknown command\n");
    exit(1);
}
`

// blogMigrations are the blog's migrations by version: v2 adds a table
// and a column.
var blogMigrations = map[string]map[string]string{
	"v1": {
		"2026_01_01_000001_create_posts.php": `<?php return ['up' => 'CREATE TABLE posts (id INTEGER PRIMARY KEY, title TEXT)', 'down' => 'DROP TABLE posts'];`,
	},
	"v2": {
		"2026_01_01_000001_create_posts.php":        `<?php return ['up' => 'CREATE TABLE posts (id INTEGER PRIMARY KEY, title TEXT)', 'down' => 'DROP TABLE posts'];`,
		"2026_02_01_000001_create_comments.php":     `<?php return ['up' => 'CREATE TABLE comments (id INTEGER PRIMARY KEY, body TEXT)', 'down' => 'DROP TABLE comments'];`,
		"2026_02_01_000002_add_author_to_posts.php": `<?php return ['up' => 'ALTER TABLE posts ADD COLUMN author TEXT', 'down' => 'ALTER TABLE posts DROP COLUMN author'];`,
	},
}

// writeBlog writes the blog at version: artisan, its migrations, and a page
// saying the version.
func writeBlog(p *project, version string) {
	p.t.Helper()
	if err := os.RemoveAll(filepath.Join(p.dir, "app")); err != nil {
		p.t.Fatal(err)
	}
	p.write("app/artisan", migratingArtisan)
	p.write("app/public/index.php", "<?php echo 'blog "+version+"';\n")
	for name, body := range blogMigrations[version] {
		p.write("app/database/migrations/"+name, body+"\n")
	}
}

// schema lists the database's tables and their columns, as "table(col,col)".
func schema(t *testing.T, db string) []string {
	t.Helper()
	out, err := exec.Command("php", "-r", `
$db = new PDO('sqlite:' . $argv[1]);
foreach ($db->query("SELECT name FROM sqlite_master WHERE type = 'table' AND name <> 'migrations' ORDER BY name") as $row) {
    $cols = [];
    foreach ($db->query('PRAGMA table_info(' . $row['name'] . ')') as $c) {
        $cols[] = $c['name'];
    }
    echo $row['name'], '(', implode(',', $cols), ")\n";
}`, db).CombinedOutput()
	if err != nil {
		t.Fatalf("reading the schema: %v\n%s", err, out)
	}
	return strings.Fields(string(out))
}

// TestRollbackWithMigrations: a blog with real SQLite migrations goes v1 →
// v2 (a new table and a new column). A failing before_rollback hook leaves
// every host on v2. A plain rollback warns, naming the two migrations,
// and leaves the schema ahead; after v2 again, rollback --with-migrations
// reverses exactly those two in the v2 release before the switch: the
// schema is v1's again and v1 serves.
func TestRollbackWithMigrations(t *testing.T) {
	testutil.Require(t, "php with pdo_sqlite (Debian's php-sqlite3) for the migrations proof", phpHasSQLite())
	p := newProject(t, 2, testutil.Options{})
	// The database is outside the hosts' deploy directories, like a
	// database server all hosts share.
	dbDir, err := os.MkdirTemp("", "slipway-blog-db-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dbDir) })
	chownToDeployUser(t, dbDir, p.fleet.User)
	db := filepath.Join(dbDir, "blog.sqlite")
	configure := func(beforeRollback string) {
		p.config("env:\n  DB_PATH: " + db + "\n" +
			"migrations:\n  path: database/migrations\n  rollback: php artisan migrate:rollback --step=$SLIPWAY_MIGRATION_STEPS --force\n" +
			"hooks:\n  before_switch:\n    - {run: php artisan migrate --force, once: true}\n" + beforeRollback)
	}
	configure("")
	writeBlog(p, "v1")
	p.mustRun("deploy", "production")
	v1 := p.fleetLive()
	v1Schema := schema(t, db)
	if !slices.Equal(v1Schema, []string{"posts(id,title)"}) {
		t.Fatalf("schema after v1 = %v", v1Schema)
	}
	writeBlog(p, "v2")
	p.mustRun("deploy", "production")
	v2 := p.fleetLive()
	v2Schema := []string{"comments(id,body)", "posts(id,title,author)"}
	if got := schema(t, db); !slices.Equal(got, v2Schema) {
		t.Fatalf("schema after v2 = %v, want %v", got, v2Schema)
	}
	ahead := []string{"2026_02_01_000002_add_author_to_posts.php", "2026_02_01_000001_create_comments.php"}

	// The plan names the migrations ahead and changes nothing.
	res := p.mustRun("rollback", "production", "--dry-run", "--with-migrations")
	for _, want := range append(ahead, "--step=$SLIPWAY_MIGRATION_STEPS", "SLIPWAY_MIGRATION_STEPS=2", "-> "+v1) {
		if !strings.Contains(res.stdout, want) {
			t.Errorf("rollback --dry-run does not show %q:\n%s", want, res.stdout)
		}
	}
	if got := p.fleetLive(); got != v2 || !slices.Equal(schema(t, db), v2Schema) {
		t.Fatalf("the dry run changed something: live %s, schema %v", got, schema(t, db))
	}

	// A failing before_rollback hook: no host switches.
	configure("  before_rollback:\n    - echo refusing to go back; exit 3\n")
	res = p.expectCode(1, "rollback", "production", "--with-migrations")
	if !strings.Contains(res.stderr, "refusing to go back") {
		t.Errorf("the failing before_rollback hook is not shown:\n%s", res.stderr)
	}
	if got := p.fleetLive(); got != v2 || !slices.Equal(schema(t, db), v2Schema) {
		t.Fatalf("after a failing before_rollback hook: live %s (want %s), schema %v", got, v2, schema(t, db))
	}

	// Without --with-migrations: the warning names both, the schema stays.
	configure("")
	res = p.mustRun("rollback", "production")
	for _, name := range ahead {
		if !strings.Contains(res.stderr, name) {
			t.Errorf("the rollback's warning does not name %s:\n%s", name, res.stderr)
		}
	}
	if got := p.fleetLive(); got != v1 || !slices.Equal(schema(t, db), v2Schema) {
		t.Fatalf("after a plain rollback: live %s (want %s), schema %v (want v2's)", got, v1, schema(t, db))
	}

	// v2 again, then back with its migrations reversed.
	p.mustRun("deploy", "production", "--force")
	v2again := p.fleetLive()
	res = p.mustRun("rollback", "production", "--with-migrations", "--to", v1)
	if got := p.fleetLive(); got != v1 {
		t.Fatalf("live %s after rollback --with-migrations, want %s", got, v1)
	}
	if got := schema(t, db); !slices.Equal(got, v1Schema) {
		t.Errorf("schema after rollback --with-migrations = %v, want v1's %v\n%s", got, v1Schema, res.stderr)
	}
	for _, h := range p.fleet.Hosts {
		out, err := exec.Command("php", h.Path(deployTo+"/releases/"+v1+"/public/index.php")).Output()
		if err != nil || string(out) != "blog v1" {
			t.Errorf("%s: the live release serves %q (%v), want blog v1", h.Name, out, err)
		}
	}
	// Reversed once, in the release being left (v2's code knows its own
	// migrations), before the switch.
	if strings.Count(res.stderr, "rolled back 2026_02") != 2 || !strings.Contains(res.stderr, "reverse migrations") {
		t.Errorf("the reversal did not run once for each of the two migrations:\n%s", res.stderr)
	}
	_ = v2again
}

func phpHasSQLite() bool {
	out, err := exec.Command("php", "-m").Output()
	return err == nil && slices.Contains(strings.Fields(string(out)), "pdo_sqlite")
}

// chownToDeployUser gives dir to the fleet's deploy user, so its hooks
// can write there.
func chownToDeployUser(t *testing.T, dir, name string) {
	t.Helper()
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
}
