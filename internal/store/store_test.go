package store

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/testutil"
)

func TestOpenNeedsCredentials(t *testing.T) {
	testutil.NoAWSCredentials(t)
	if _, err := Open(&config.Artifacts{Bucket: "acme"}); !errors.Is(err, ErrNoCredentials) {
		t.Fatalf("Open without credentials: %v", err)
	}
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
	if _, err := Open(&config.Artifacts{Bucket: "acme"}); !errors.Is(err, ErrNoCredentials) {
		t.Fatalf("Open with a key and no secret: %v", err)
	}
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	if _, err := Open(&config.Artifacts{Bucket: "acme"}); err != nil {
		t.Fatalf("Open with credentials in the environment: %v", err)
	}
}

func TestOpenReadsTheProfile(t *testing.T) {
	testutil.NoAWSCredentials(t)
	home := os.Getenv("HOME")
	if err := os.MkdirAll(filepath.Join(home, ".aws"), 0o700); err != nil {
		t.Fatal(err)
	}
	file := "[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = d\n[ci]\naws_access_key_id = AKIACI\naws_secret_access_key = c\n"
	if err := os.WriteFile(filepath.Join(home, ".aws", "credentials"), []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	for profile, want := range map[string]string{"": "AKIADEFAULT", "ci": "AKIACI"} {
		t.Setenv("AWS_PROFILE", profile)
		s, err := Open(&config.Artifacts{Bucket: "acme", Region: "eu-central-1"})
		if err != nil {
			t.Fatalf("profile %q: %v", profile, err)
		}
		raw, err := s.PresignGet(context.Background(), strings.Repeat("ab", 32), time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(raw, "X-Amz-Credential="+want+"%2F") {
			t.Errorf("profile %q: URL signed with another key: %s", profile, raw)
		}
	}
}

// TestPresignForTheHosts: URLs name the hosts' endpoint when there is one,
// and are signed without a request to the store when the region is known
// (these endpoints do not exist).
func TestPresignForTheHosts(t *testing.T) {
	testutil.NoAWSCredentials(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	sum := strings.Repeat("0f", 32)
	for _, tc := range []struct {
		cfg  config.Artifacts
		want string // scheme://host/path of the URL
	}{
		{config.Artifacts{Bucket: "acme", Prefix: "shop/web", Endpoint: "http://minio.invalid:9000", Region: "us-east-1"},
			"http://minio.invalid:9000/acme/shop/web/" + sum},
		{config.Artifacts{Bucket: "acme", Prefix: "shop", Endpoint: "http://minio.invalid:9000", HostsEndpoint: "https://minio.internal.invalid", Region: "garage"},
			"https://minio.internal.invalid/acme/shop/" + sum},
	} {
		s, err := Open(&tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := s.PresignGet(context.Background(), sum, 15*time.Minute)
		if err != nil {
			t.Fatalf("%+v: %v", tc.cfg, err)
		}
		u, err := url.Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		q := u.Query()
		if got := u.Scheme + "://" + u.Host + u.Path; got != tc.want {
			t.Errorf("URL %s, want %s", got, tc.want)
		}
		if q.Get("X-Amz-Expires") != "900" || q.Get("X-Amz-Signature") == "" || !strings.Contains(q.Get("X-Amz-Credential"), "/"+tc.cfg.Region+"/s3/") {
			t.Errorf("URL %s is not signed for 15 minutes in %s", raw, tc.cfg.Region)
		}
	}
}

func TestKey(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	for prefix, want := range map[string]string{"": sum, "shop": "shop/" + sum, "a/b": "a/b/" + sum} {
		if got := (&Store{prefix: prefix}).Key(sum); got != want {
			t.Errorf("prefix %q: key %q, want %q", prefix, got, want)
		}
	}
}

// TestStatAnswers: a pack the store answers 404 or 403 for is not there
// (S3 answers 403 to credentials that may not list the bucket; the upload
// that follows tells refused credentials apart), and a store that accepts
// the request and never answers is given up on within askTimeout, named.
func TestStatAnswers(t *testing.T) {
	testutil.NoAWSCredentials(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	defer func(d time.Duration) { askTimeout = d }(askTimeout)
	askTimeout = time.Second
	status := http.StatusNotFound
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if status == 0 {
			<-r.Context().Done() // accepted, never answered
			return
		}
		w.WriteHeader(status)
	}))
	defer server.Close()
	s, err := Open(&config.Artifacts{Bucket: "acme", Prefix: "shop", Endpoint: server.URL, Region: "us-east-1"})
	if err != nil {
		t.Fatal(err)
	}
	sum := strings.Repeat("0f", 32)
	for _, status = range []int{http.StatusNotFound, http.StatusForbidden} {
		if _, found, err := s.Stat(context.Background(), sum); found || err != nil {
			t.Errorf("HEAD answered %d: found %v, %v; want not found", status, found, err)
		}
	}
	status = 0
	if _, _, err = s.Stat(context.Background(), sum); err == nil || !strings.Contains(err.Error(), "no answer within 1s") {
		t.Errorf("a store that never answers: %v", err)
	}
}
