package source

import "testing"

func TestExcluder(t *testing.T) {
	ex, err := NewExcluder([]string{".git", "tests/", "phpunit.xml*", "/config/local.php", "docs/internal", "**/cache", "assets/**/*.map"})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		rel   string
		isDir bool
		want  bool
	}{
		{".git", true, true},
		{"vendor/pkg/.git", true, true},
		{"tests", true, true},
		{"tests", false, false}, // a file named tests is not the tests/ dir
		{"app/tests", true, true},
		{"phpunit.xml", false, true},
		{"phpunit.xml.dist", false, true},
		{"app/phpunit.xml", false, true},
		{"config/local.php", false, true},
		{"app/config/local.php", false, false}, // anchored
		{"docs/internal", true, true},
		{"x/docs/internal", true, false},
		{"cache", true, true},
		{"var/app/cache", true, true},
		{"assets/js/app.js.map", false, true},
		{"assets/app.js.map", false, true},
		{"assets/js/app.js", false, false},
		{"index.php", false, false},
	}
	for _, tt := range tests {
		if got := ex.Excluded(tt.rel, tt.isDir); got != tt.want {
			t.Errorf("Excluded(%q, dir=%v) = %v, want %v", tt.rel, tt.isDir, got, tt.want)
		}
	}
}

func TestExcluderRefusesPatternsThatMatchNothing(t *testing.T) {
	for _, p := range []string{"", "/", ".", "../secrets", "[a"} {
		if _, err := NewExcluder([]string{p}); err == nil {
			t.Errorf("NewExcluder(%q) accepted it", p)
		}
	}
}
