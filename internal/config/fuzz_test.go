package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"
)

// FuzzParse checks that no input makes Parse panic or hang, that it returns
// exactly one of a config and an error, and that an error's text is safe to
// print: no control characters but the newlines between its lines.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.yml"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seed files: %v", err)
	}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("app: shop\nstages: {demo: {hosts: [local], deploy_to: ${DIR}}}\n"))
	f.Add([]byte("app: x\nstages:\n  p:\n    hosts: [\"[::1]:22\", {host: 'h', port: 22}]\n"))
	loader := env(map[string]string{"BRANCH": "main", "DIR": "/srv/demo"})
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := loader.Parse("slipway.yml", data)
		if (cfg == nil) == (err == nil) {
			t.Fatalf("Parse returned config %v and error %v", cfg, err)
		}
		if err != nil {
			if strings.IndexFunc(err.Error(), func(r rune) bool { return r != '\n' && unicode.IsControl(r) }) >= 0 {
				t.Fatalf("error text has a control character: %q", err.Error())
			}
			for _, e := range configErrors(t, err) {
				if e.Line < 0 || e.Col < 0 || e.Msg == "" || e.Fix == "" {
					t.Fatalf("incomplete error %#v", e)
				}
			}
			return
		}
		for _, st := range cfg.Stages {
			if !filepath.IsAbs(st.DeployTo) || st.DeployTo == "/" || len(st.Hosts) == 0 {
				t.Fatalf("stage %+v passed with a bad deploy_to or no hosts", *st)
			}
		}
	})
}
