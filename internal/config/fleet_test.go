package config

import (
	"strings"
	"testing"
	"time"
)

func TestRolloutHealthAndNoRelease(t *testing.T) {
	cfg := parseRecipe(t, `health: {url: http://127.0.0.1:8080/up, body: ok, retries: 5, interval: 1s}
rollout: {strategy: rolling, batch: 25%, pause: 3s}
`)
	if cfg.Rollout.Strategy != "rolling" || cfg.Rollout.BatchPercent != 25 || cfg.Rollout.Pause != 3*time.Second {
		t.Errorf("rollout = %+v", cfg.Rollout)
	}
	for n, want := range map[int]int{1: 1, 4: 1, 5: 2, 10: 3, 100: 25} {
		if got := cfg.Rollout.Size(n); got != want {
			t.Errorf("25%% of %d hosts = %d, want %d", n, got, want)
		}
	}
	st := cfg.Stages[0]
	if st.Health != cfg.Health || st.Rollout != cfg.Rollout {
		t.Error("the stage does not inherit health and rollout")
	}
	if cfg.Health.Body != "ok" || cfg.Health.Retries != 5 || cfg.Health.Interval != time.Second {
		t.Errorf("health = %+v", cfg.Health)
	}
	var all *Rollout
	if all.Size(7) != 7 {
		t.Error("no rollout must switch every host at once")
	}

	cfg, err := Parse("slipway.yml", []byte(`app: shop
deploy_to: /srv/shop
health: {url: http://127.0.0.1/up}
stages:
  production:
    health: {command: php artisan about}
    rollout: {strategy: rolling}
    hosts:
      - web1
      - {host: db1, roles: [db], no_release: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	st = cfg.Stages[0]
	if st.Health.Command != "php artisan about" || st.Health.URL != "" {
		t.Errorf("stage health = %+v, want its own", st.Health)
	}
	if st.Rollout.Size(10) != 1 {
		t.Errorf("rolling without batch: %d per batch, want 1", st.Rollout.Size(10))
	}
	if !st.Hosts[1].NoRelease || st.Hosts[0].NoRelease {
		t.Errorf("no_release: %+v", st.Hosts)
	}
}

func TestRolloutAndHealthErrors(t *testing.T) {
	for body, want := range map[string]string{
		"rollout: {strategy: rolling, batch: 0}\n":    "slipway.yml:3:",
		"rollout: {strategy: rolling, batch: 120%}\n": "percentage",
		"rollout: {batch: 2}\n":                       "applies to strategy rolling",
		"rollout: {strategy: canary}\n":               "rolling",
		"health: {url: http://x/, command: true}\n":   "both url and command",
		"health: {retries: 2}\n":                      "no url or command",
	} {
		_, err := Parse("slipway.yml", []byte("app: shop\ndeploy_to: /x\n"+body+"stages:\n  p:\n    hosts: [web1]\n"))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", body, err, want)
		}
	}
}

func TestDeployToInsideAReleaseIsRefused(t *testing.T) {
	for _, dir := range []string{"/var/www/shop/releases/20261122103015/sub", "/var/www/shop/current", "/var/www/shop/current/nested"} {
		_, err := Parse("slipway.yml", []byte("app: shop\ndeploy_to: "+dir+"\nstages:\n  p:\n    hosts: [web1]\n"))
		if err == nil || !strings.Contains(err.Error(), "inside a release") || !strings.Contains(err.Error(), "slipway.yml:2:") {
			t.Errorf("%s: err = %v", dir, err)
		}
	}
	if _, err := Parse("slipway.yml", []byte("app: shop\ndeploy_to: /srv/releases/app\nstages:\n  p:\n    hosts: [web1]\n")); err != nil {
		t.Errorf("a directory merely named releases was refused: %v", err)
	}
}
