package config

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestOPcacheReset(t *testing.T) {
	for name, tc := range map[string]struct {
		yaml string
		want OPcacheReset
	}{
		"socket only": {
			yaml: "opcache_reset: {socket: /run/php/php8.2-fpm.sock}\n",
			want: OPcacheReset{Socket: "/run/php/php8.2-fpm.sock", Wait: time.Minute, Where: "slipway.yml:3:1"},
		},
		"unix: prefix, above and wait": {
			yaml: "opcache_reset:\n  socket: unix:/run/php/shop.sock\n  above: 75%\n  wait: 2m\n",
			want: OPcacheReset{Socket: "/run/php/shop.sock", Above: 75, Wait: 2 * time.Minute, Where: "slipway.yml:3:1"},
		},
		"tcp": {
			yaml: "opcache_reset: {socket: \"127.0.0.1:9000\", above: 50}\n",
			want: OPcacheReset{Socket: "127.0.0.1:9000", Above: 50, Wait: time.Minute, Where: "slipway.yml:3:1"},
		},
	} {
		t.Run(name, func(t *testing.T) {
			cfg, err := env(nil).Parse("slipway.yml", []byte("app: shop\ndeploy_to: /var/www/shop\n"+tc.yaml+validStages))
			if err != nil {
				t.Fatal(err)
			}
			if cfg.OPcacheReset == nil || *cfg.OPcacheReset != tc.want {
				t.Errorf("got %+v, want %+v", cfg.OPcacheReset, tc.want)
			}
		})
	}
	cfg, err := env(nil).Parse("slipway.yml", []byte("app: shop\ndeploy_to: /var/www/shop\n"+validStages))
	if err != nil || cfg.OPcacheReset != nil {
		t.Errorf("without opcache_reset: %+v %v", cfg.OPcacheReset, err)
	}
}

func TestOPcacheResetErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, at, msg, fix string
	}{
		{"empty", "opcache_reset:\n", "3:1", "opcache_reset is empty", "socket: /run/php/php8.2-fpm.sock"},
		{"no socket", "opcache_reset: {above: 50%}\n", "3:1", "opcache_reset has no socket", "php-fpm's listen"},
		{"relative socket", "opcache_reset: {socket: run/php.sock}\n", "3:25", `opcache_reset.socket "run/php.sock" is neither an absolute socket path nor HOST:PORT`, "/run/php/php8.2-fpm.sock"},
		{"bad port", "opcache_reset: {socket: \"localhost:99999\"}\n", "3:25", "has no port from 1 to 65535", "127.0.0.1:9000"},
		{"long path", "opcache_reset: {socket: /" + strings.Repeat("x", 120) + "}\n", "3:25", "longer than a unix socket path", "socket path"},
		{"above 100", "opcache_reset: {socket: /run/php.sock, above: 100%}\n", "3:47", `opcache_reset.above must be a percentage from 1% to 99%, not "100%"`, "above: 75%"},
		{"above word", "opcache_reset: {socket: /run/php.sock, above: full}\n", "3:47", "percentage", "leave above: out"},
		{"wait without unit", "opcache_reset: {socket: /run/php.sock, wait: 30}\n", "3:46", `opcache_reset.wait must be a duration such as 10s, not "30"`, "with its unit"},
		{"unknown key", "opcache_reset: {socket: /run/php.sock, pool: www}\n", "3:40", `unknown key "pool" in opcache_reset`, "socket, above, wait"},
		{"key at the wrong level", "above: 75%\n", "3:1", `unknown key "above" at the top level`, "under opcache_reset:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := env(nil).Parse("slipway.yml", []byte("app: shop\ndeploy_to: /var/www/shop\n"+tc.yaml+validStages))
			if err == nil {
				t.Fatal("no error")
			}
			errs := configErrors(t, err)
			got := errs[0]
			if at := fmt.Sprintf("%d:%d", got.Line, got.Col); at != tc.at || len(errs) != 1 {
				t.Errorf("at %s (%d errors), want %s\n%v", at, len(errs), tc.at, err)
			}
			if !strings.Contains(got.Msg, tc.msg) {
				t.Errorf("message %q does not contain %q", got.Msg, tc.msg)
			}
			if !strings.Contains(got.Fix, tc.fix) {
				t.Errorf("fix %q does not contain %q", got.Fix, tc.fix)
			}
		})
	}
}
