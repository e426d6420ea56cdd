package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
)

// appSpec says how big a generated app is.
type appSpec struct {
	Files int   // files in the tree, assets included
	Bytes int64 // their total size
	Seed  uint64
}

// appFile is one file of the generated app.
type appFile struct {
	rel    string
	binary bool
	size   int
	mode   os.FileMode
}

// changedFile is the file a redeploy changes: one line of it.
const changedFile = "config/app.php"

// words make identifiers and prose for the PHP-shaped text files.
var words = strings.Fields(`account order invoice customer product cart payment shipment refund
	user team role permission session token cache queue job event listener mail notification report
	export import audit price tax discount coupon stock warehouse supplier category tag comment review
	search index filter sort page limit offset total amount currency address country region status`)

// generateApp writes a PHP-shaped application (a Laravel-like tree with a
// vendor/ directory, plus a few binary assets) into dir. The same spec
// gives the same bytes.
func generateApp(dir string, spec appSpec) ([]appFile, error) {
	rng := rand.New(rand.NewPCG(spec.Seed, spec.Seed^0x5eed))
	files := planApp(rng, spec)
	for _, f := range files {
		path := filepath.Join(dir, filepath.FromSlash(f.rel))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, err
		}
		var content []byte
		switch {
		case f.rel == changedFile:
			content = []byte(appConfig(0))
		case filepath.Base(f.rel) == ".gitignore":
			content = []byte("*\n!.gitignore\n")
		case f.binary:
			content = make([]byte, f.size)
			for i := 0; i < len(content); i += 8 {
				v := rng.Uint64()
				for j := 0; j < 8 && i+j < len(content); j++ {
					content[i+j] = byte(v >> (8 * j))
				}
			}
		default:
			content = phpText(rng, f.rel, f.size)
		}
		if err := os.WriteFile(path, content, f.mode); err != nil {
			return nil, err
		}
	}
	return files, nil
}

// appConfig is the content of changedFile at a given build number; a
// redeploy bumps the number, a one-line change.
func appConfig(build int) string {
	var b strings.Builder
	b.WriteString("<?php\n\nreturn [\n    'name' => env('APP_NAME', 'Shop'),\n    'env' => env('APP_ENV', 'production'),\n")
	fmt.Fprintf(&b, "    'build' => '%06d',\n", build)
	b.WriteString("    'debug' => (bool) env('APP_DEBUG', false),\n    'url' => env('APP_URL', 'http://localhost'),\n    'timezone' => 'UTC',\n    'locale' => 'en',\n")
	for i, w := range words {
		fmt.Fprintf(&b, "    '%s_%d' => env('%s_%d', %d),\n", w, i, strings.ToUpper(w), i, i*7)
	}
	b.WriteString("];\n")
	return b.String()
}

// planApp decides every file's path, kind and size: about 2% of the files
// are binary assets holding about 35% of the bytes; the rest is text.
func planApp(rng *rand.Rand, spec appSpec) []appFile {
	assets := max(4, spec.Files/50)
	assetBytes := spec.Bytes * 35 / 100
	textFiles := spec.Files - assets
	textBytes := spec.Bytes - assetBytes

	fixed := []string{"artisan", "composer.json", "package.json", ".env.example", "README.md",
		"bootstrap/app.php", "public/index.php", "public/.htaccess", "routes/web.php", "routes/api.php",
		"routes/console.php", changedFile, "storage/app/.gitignore", "storage/logs/.gitignore",
		"storage/framework/cache/.gitignore", "storage/framework/sessions/.gitignore",
		"storage/framework/views/.gitignore", "bootstrap/cache/.gitignore"}
	var files []appFile
	for _, rel := range fixed {
		mode := os.FileMode(0o644)
		if rel == "artisan" {
			mode = 0o755
		}
		files = append(files, appFile{rel: rel, mode: mode})
	}
	// Application code (about 15%), tests (5%), views and translations
	// (10%), the rest vendor packages, as in a real Laravel app.
	appDirs := []string{"app/Http/Controllers", "app/Models", "app/Jobs", "app/Events", "app/Listeners",
		"app/Services", "app/Console/Commands", "app/Providers", "app/Http/Middleware", "app/Policies",
		"database/migrations", "database/factories", "database/seeders", "config"}
	vendors := []string{"laravel/framework/src/Illuminate", "symfony/http-foundation", "symfony/console",
		"guzzlehttp/guzzle/src", "monolog/monolog/src/Monolog", "nesbot/carbon/src/Carbon",
		"league/flysystem/src", "doctrine/inflector/lib", "ramsey/uuid/src", "nunomaduro/collision/src",
		"psr/log/src", "vlucas/phpdotenv/src", "brick/math/src", "egulias/email-validator/src"}
	seen := map[string]bool{}
	for _, f := range files {
		seen[f.rel] = true
	}
	add := func(rel string) {
		if !seen[rel] {
			seen[rel] = true
			files = append(files, appFile{rel: rel, mode: 0o644})
		}
	}
	name := func() string {
		w1, w2 := words[rng.IntN(len(words))], words[rng.IntN(len(words))]
		return strings.ToUpper(w1[:1]) + w1[1:] + strings.ToUpper(w2[:1]) + w2[1:]
	}
	for len(files) < textFiles {
		n := len(files)
		switch r := rng.IntN(100); {
		case r < 15:
			add(fmt.Sprintf("%s/%s%d.php", appDirs[rng.IntN(len(appDirs))], name(), n))
		case r < 20:
			add(fmt.Sprintf("tests/%s/%s%dTest.php", []string{"Feature", "Unit"}[rng.IntN(2)], name(), n))
		case r < 27:
			add(fmt.Sprintf("resources/views/%s/%s%d.blade.php", words[rng.IntN(len(words))], strings.ToLower(name()), n))
		case r < 30:
			add(fmt.Sprintf("resources/lang/%s/%s%d.php", []string{"en", "de", "fr"}[rng.IntN(3)], strings.ToLower(name()), n))
		default:
			v := vendors[rng.IntN(len(vendors))]
			add(fmt.Sprintf("vendor/%s/%s/%s%d.php", v, name(), name(), n))
		}
	}
	// Text sizes: a long tail, as in real code (most files small, a few
	// large), scaled to textBytes.
	weights := make([]float64, len(files))
	var sum float64
	for i := range files {
		weights[i] = 0.2 + rng.ExpFloat64()
		sum += weights[i]
	}
	for i := range files {
		files[i].size = max(64, int(float64(textBytes)*weights[i]/sum))
	}
	kinds := []string{"public/images/hero-%d.jpg", "public/images/product-%d.png", "public/fonts/inter-%d.woff2",
		"public/build/assets/app-%d.js.map", "resources/pdf/catalogue-%d.pdf"}
	for i := range assets {
		files = append(files, appFile{
			rel:    fmt.Sprintf(kinds[i%len(kinds)], i),
			binary: true,
			size:   int(assetBytes / int64(assets)),
			mode:   0o644,
		})
	}
	return files
}

// phpText writes size bytes of PHP-looking source for rel.
func phpText(rng *rand.Rand, rel string, size int) []byte {
	var b strings.Builder
	b.Grow(size + 256)
	class := strings.TrimSuffix(filepath.Base(rel), ".php")
	fmt.Fprintf(&b, "<?php\n\nnamespace App\\%s;\n\nuse Illuminate\\Support\\Facades\\DB;\n\nclass %s\n{\n",
		strings.ReplaceAll(filepath.Dir(rel), "/", "\\"), strings.ReplaceAll(class, ".", "_"))
	for b.Len() < size {
		w1, w2, w3 := words[rng.IntN(len(words))], words[rng.IntN(len(words))], words[rng.IntN(len(words))]
		fmt.Fprintf(&b, "    /**\n     * Find the %s of the %s by %s.\n     */\n", w1, w2, w3)
		fmt.Fprintf(&b, "    public function %s%s(int $%sId, array $options = []): ?array\n    {\n", w1, strings.ToUpper(w2[:1])+w2[1:], w3)
		fmt.Fprintf(&b, "        $rows = DB::table('%ss')->where('%s_id', $%sId)->limit(%d)->get();\n", w2, w3, w3, rng.IntN(500))
		fmt.Fprintf(&b, "        return $rows->isEmpty() ? null : $rows->map(fn ($r) => $r->%s)->all();\n    }\n\n", w1)
	}
	out := []byte(b.String())[:size-2]
	return append(out, "\n}"...)
}
