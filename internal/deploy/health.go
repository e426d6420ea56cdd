package deploy

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/slipway-deploy/slipway/internal/config"
)

// healthStep checks one host after its switch.
type healthStep struct {
	releaseHosts
	r      *run
	health *config.Health
}

func (healthStep) Name() string { return "health" }

func (s healthStep) Run(ctx context.Context, t *Target) error {
	return checkHealth(ctx, s.r, t, s.health)
}

// checkHealth runs the health check on one host until it passes or its
// attempts are used up.
func checkHealth(ctx context.Context, r *run, t *Target, h *config.Health) error {
	var last error
	for attempt := 1; attempt <= h.Retries; attempt++ {
		if attempt > 1 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(h.Interval):
			}
		}
		attemptCtx, cancel := context.WithTimeout(ctx, h.Timeout)
		if h.Command != "" {
			last = healthCommand(attemptCtx, r, t, h)
		} else {
			last = healthHTTP(attemptCtx, t, h)
		}
		cancel()
		if last == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
	return fmt.Errorf("health check failed %d time(s); last: %w", h.Retries, last)
}

// healthHTTP fetches the URL from the host itself: the TCP connection is
// opened by the host (a direct-tcpip channel of the SSH connection), so
// 127.0.0.1 is the host's own loopback and no curl is needed there.
func healthHTTP(ctx context.Context, t *Target, h *config.Health) error {
	u, err := url.Parse(h.URL)
	if err != nil {
		return err
	}
	transport := &http.Transport{
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			return t.Exec.DialTCP(ctx, addr)
		},
		DisableKeepAlives: true,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "slipway-health-check")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", h.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != h.ExpectStatus {
		return fmt.Errorf("GET %s: status %d, want %d", h.URL, resp.StatusCode, h.ExpectStatus)
	}
	if h.Body != "" && !strings.Contains(string(body), h.Body) {
		return fmt.Errorf("GET %s: the response does not contain %q", h.URL, h.Body)
	}
	return nil
}

// healthCommand runs the check command in the live release.
func healthCommand(ctx context.Context, r *run, t *Target, h *config.Health) error {
	return runHook(ctx, r, t, h.Command, t.State.Current)
}
