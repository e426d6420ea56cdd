package config

import (
	"fmt"
	"os"
	"testing"
)

func TestTry(t *testing.T) {
	for _, f := range []string{"testdata/full.yml", "testdata/minimal.yml", "testdata/capistrano.yml", "testdata/demo.yml", "testdata/billion-laughs.yml", os.Getenv("TRYFILE")} {
		if f == "" {
			continue
		}
		c, err := Loader{LookupEnv: func(k string) (string, bool) { return map[string]string{"BRANCH": "main"}[k], k == "BRANCH" }}.Load(f)
		fmt.Printf("== %s\n%v\n", f, err)
		if c != nil {
			fmt.Printf("%+v\n", *c)
			for _, s := range c.Stages {
				fmt.Printf("  %+v\n", *s)
			}
		}
	}
}
