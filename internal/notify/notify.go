// Package notify posts the outcome of a deploy or rollback to webhooks: a
// generic JSON document, or Slack's incoming-webhook format. A failing
// webhook is reported and never fails the deploy.
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Outcome is what a run did, as sent to webhooks.
type Outcome struct {
	Command  string        `json:"command"` // deploy, rollback
	Stage    string        `json:"stage"`
	App      string        `json:"app"`
	Result   string        `json:"result"` // ok, failed, rolled_back, live_with_errors, already_live, interrupted
	Release  string        `json:"release,omitempty"`
	Revision string        `json:"revision,omitempty"`
	Branch   string        `json:"branch,omitempty"`
	User     string        `json:"user"`
	Machine  string        `json:"machine"`
	Duration time.Duration `json:"-"`
	Seconds  float64       `json:"duration_seconds"`
	Hosts    []string      `json:"hosts"`
	Failure  string        `json:"failure,omitempty"`
}

// Hook is one webhook.
type Hook struct {
	URL    string
	Format string // "json" or "slack"
	On     string // "always" (default), "failure", "success"
}

// Send posts o to every hook that wants it and returns one error per hook
// that failed; the caller reports them as warnings.
func Send(ctx context.Context, client *http.Client, hooks []Hook, o Outcome) []error {
	o.Seconds = o.Duration.Round(time.Millisecond).Seconds()
	var errs []error
	for _, h := range hooks {
		ok := o.Result == "ok" || o.Result == "already_live"
		if (h.On == "failure" && ok) || (h.On == "success" && !ok) {
			continue
		}
		body, err := payload(h.Format, o)
		if err == nil {
			err = post(ctx, client, h.URL, body)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("notify %s: %w", redact(h.URL), err))
		}
	}
	return errs
}

func payload(format string, o Outcome) ([]byte, error) {
	if format != "slack" {
		return json.Marshal(o)
	}
	icon := map[string]string{"ok": ":white_check_mark:", "already_live": ":white_check_mark:", "rolled_back": ":leftwards_arrow_with_hook:"}[o.Result]
	if icon == "" {
		icon = ":x:"
	}
	text := fmt.Sprintf("%s *%s* %s of `%s` to *%s*: %s", icon, o.App, o.Command, short(o.Revision), o.Stage, strings.ReplaceAll(o.Result, "_", " "))
	if o.Release != "" {
		text += fmt.Sprintf(" (release %s)", o.Release)
	}
	text += fmt.Sprintf(" by %s in %.1fs on %d host(s)", o.User, o.Seconds, len(o.Hosts))
	if o.Failure != "" {
		text += "\n```" + truncate(o.Failure, 1500) + "```"
	}
	return json.Marshal(map[string]string{"text": text})
}

func post(ctx context.Context, client *http.Client, url string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "slipway-notify")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 300 {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// redact keeps a webhook's secret path out of messages: Slack's URLs are
// credentials.
func redact(url string) string {
	if i := strings.Index(url, "://"); i >= 0 {
		if j := strings.IndexByte(url[i+3:], '/'); j >= 0 {
			return url[:i+3+j] + "/…"
		}
	}
	return url
}

func short(rev string) string {
	rev = strings.TrimPrefix(rev, "sha256:")
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
