package config

import (
	"fmt"
	"strings"
	"testing"
)

const artifactsHead = "app: shop\ndeploy_to: /var/www/shop\n"

func TestArtifacts(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want Artifacts
	}{
		{"artifacts: {store: s3://acme-deploys}\n", Artifacts{Bucket: "acme-deploys", Where: "slipway.yml:3:1"}},
		{"artifacts: {store: s3://acme-deploys/shop/}\n", Artifacts{Bucket: "acme-deploys", Prefix: "shop", Where: "slipway.yml:3:1"}},
		{"artifacts:\n  store: s3://acme.deploys/a/b\n  endpoint: http://10.0.0.5:9000/\n  hosts_endpoint: https://minio.internal\n  region: eu-central-1\n",
			Artifacts{Bucket: "acme.deploys", Prefix: "a/b", Endpoint: "http://10.0.0.5:9000", HostsEndpoint: "https://minio.internal", Region: "eu-central-1", Where: "slipway.yml:3:1"}},
		{"artifacts: {store: \"s3://${BUCKET}/shop\"}\n", Artifacts{Bucket: "from-env", Prefix: "shop", Where: "slipway.yml:3:1"}},
	} {
		cfg, err := env(map[string]string{"BUCKET": "from-env"}).Parse("slipway.yml", []byte(artifactsHead+tc.yaml+validStages))
		if err != nil {
			t.Errorf("%q: %v", tc.yaml, err)
			continue
		}
		if cfg.Artifacts == nil || *cfg.Artifacts != tc.want {
			t.Errorf("%q: got %+v, want %+v", tc.yaml, cfg.Artifacts, tc.want)
		}
	}
	cfg, err := env(nil).Parse("slipway.yml", []byte(artifactsHead+validStages))
	if err != nil || cfg.Artifacts != nil {
		t.Errorf("without artifacts: %+v, %v; want nil", cfg.Artifacts, err)
	}
	if got := (&Artifacts{Bucket: "b", Prefix: "p/q"}).Store(); got != "s3://b/p/q" {
		t.Errorf("Store() = %q", got)
	}
}

func TestArtifactsErrors(t *testing.T) {
	for _, tc := range []struct {
		yaml, at, msg, fix string
	}{
		{"artifacts: {endpoint: http://x:9000}\n", "3:1", "artifacts has no store", "store: s3://"},
		{"artifacts: {store: acme-deploys}\n", "3:20", `artifacts.store "acme-deploys" must start with s3://`, "store: s3://acme-deploys/shop"},
		{"artifacts: {store: s3://Acme}\n", "3:20", "does not name a bucket", "s3://"},
		{"artifacts: {store: s3://ab}\n", "3:20", "does not name a bucket", "s3://"},
		{"artifacts: {store: s3://acme/a//b}\n", "3:20", "empty, . or .. part", "s3://"},
		{"artifacts: {store: s3://acme/../b}\n", "3:20", "empty, . or .. part", "s3://"},
		{"artifacts: {store: \"s3://acme/a b\"}\n", "3:20", "has a space", "s3://"},
		{"artifacts: {store: s3://acme, endpoint: minio:9000}\n", "3:41", `artifacts.endpoint "minio:9000" must start with http:// or https://`, "with its scheme"},
		{"artifacts: {store: s3://acme, endpoint: http://minio:9000/bucket}\n", "3:41", "must not have a path", "with its scheme"},
		{"artifacts: {store: s3://acme, hosts_endpoint: \"http://key:secret@minio:9000\"}\n", "3:47", "must not hold credentials", "hosts_endpoint: https://"},
		{"artifacts: {store: s3://acme, region: eu central}\n", "3:39", `artifacts.region must be a region name, not "eu central"`, "region: eu-central-1"},
		{"artifacts: {store: s3://acme, bucket: x}\n", "3:31", `unknown key "bucket" in artifacts`, "store, endpoint, hosts_endpoint, region"},
		{"artifacts: s3://acme\n", "3:12", "artifacts must be a mapping", "artifacts: {store: s3://"},
		{"artifacts: {store: s3://acme}\nsource: {strategy: git, repo: /srv/git/shop.git}\n", "3:1", "artifacts applies to strategy upload, not git", "remove artifacts:"},
	} {
		_, err := env(nil).Parse("slipway.yml", []byte(artifactsHead+tc.yaml+validStages))
		if err == nil {
			t.Errorf("%q: no error", tc.yaml)
			continue
		}
		got := configErrors(t, err)[0]
		if at := fmt.Sprintf("%d:%d", got.Line, got.Col); at != tc.at || !strings.Contains(got.Msg, tc.msg) || !strings.Contains(got.Fix, tc.fix) {
			t.Errorf("%q: got %s %q (fix %q); want %s %q (fix with %q)", tc.yaml, at, got.Msg, got.Fix, tc.at, tc.msg, tc.fix)
		}
	}
}
