package notify

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestSendJSONAndSlack(t *testing.T) {
	var mu sync.Mutex
	got := map[string]string{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got[r.URL.Path] = string(b)
		mu.Unlock()
		if strings.HasPrefix(r.URL.Path, "/broken") {
			w.WriteHeader(500)
		}
	}))
	defer srv.Close()
	o := Outcome{Command: "deploy", Stage: "production", App: "shop", Result: "rolled_back", Release: "20261122103015",
		Revision: "0123456789abcdef0123", User: "alice", Machine: "ci", Duration: 1500 * time.Millisecond,
		Hosts: []string{"web1", "web2"}, Failure: "web2: health: status 500"}
	errs := Send(context.Background(), srv.Client(), []Hook{
		{URL: srv.URL + "/json", Format: "json"},
		{URL: srv.URL + "/slack", Format: "slack"},
		{URL: srv.URL + "/success-only", Format: "json", On: "success"},
		{URL: srv.URL + "/broken/T0123/secret", Format: "json"},
	}, o)
	var doc map[string]any
	if err := json.Unmarshal([]byte(got["/json"]), &doc); err != nil || doc["stage"] != "production" || doc["result"] != "rolled_back" ||
		doc["release"] != "20261122103015" || doc["user"] != "alice" || doc["duration_seconds"] != 1.5 || doc["failure"] == nil {
		t.Errorf("json payload = %s (%v)", got["/json"], err)
	}
	var slack map[string]string
	if err := json.Unmarshal([]byte(got["/slack"]), &slack); err != nil || !strings.Contains(slack["text"], "*shop* deploy of `0123456789ab` to *production*: rolled back") {
		t.Errorf("slack payload = %s", got["/slack"])
	}
	if _, sent := got["/success-only"]; sent {
		t.Error("a success-only hook got a failure")
	}
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "status 500") || strings.Contains(errs[0].Error(), "secret") {
		t.Errorf("errors = %v (the failing hook must be reported, its URL path redacted)", errs)
	}
}

func TestUnreachableWebhookIsAnErrorNotAPanic(t *testing.T) {
	errs := Send(context.Background(), &http.Client{Timeout: time.Second}, []Hook{{URL: "http://127.0.0.1:1/x"}}, Outcome{Result: "ok"})
	if len(errs) != 1 {
		t.Fatalf("errs = %v", errs)
	}
}
