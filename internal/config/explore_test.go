package config

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml/lexer"
	"github.com/goccy/go-yaml/parser"
)

func TestExplore(t *testing.T) {
	for _, n := range []int{10000, 20000} {
		for _, s := range []string{strings.Repeat("[", n), strings.Repeat("- ", n) + "x", strings.Repeat("{a: ", n), strings.Repeat("a: b\n", n*5), "a: [" + strings.Repeat("x, ", n*10) + "]", strings.Repeat("- {host: web3, user: deploy, port: 22, roles: [web]}\n", n)} {
			st := time.Now()
			toks := lexer.Tokenize(s)
			lt := time.Since(st)
			_, err := parser.Parse(toks, 0)
			es := fmt.Sprint(err)
			if len(es) > 60 {
				es = es[:60]
			}
			fmt.Println(n, len(s), s[:4], lt, time.Since(st), es)
		}
	}
}
