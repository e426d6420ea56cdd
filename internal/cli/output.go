package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/deploy"
)

// printError prints a failure: each host's error on its own line.
func printError(w io.Writer, err error) {
	var configErr *config.Error
	if errors.As(err, &configErr) {
		fmt.Fprintf(w, "error: %v\n", err)
		return
	}
	parts := deploy.Errors(err)
	if len(parts) == 1 {
		fmt.Fprintf(w, "error: %v\n", err)
		return
	}
	fmt.Fprintln(w, "errors:")
	for _, e := range parts {
		fmt.Fprintf(w, "  %v\n", strings.ReplaceAll(e.Error(), "\n", "\n    "))
	}
}

// writeJSON prints v as the JSON output of a command (plan, releases,
// status): indented by two spaces, with a final newline.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// endProgress leaves a live progress view's last state on screen, before
// the summary is printed under it.
func endProgress(o deploy.Observer) {
	if c, ok := o.(interface{ Close() }); ok {
		c.Close()
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// prefixWriter prefixes each line written to it, for build output
// interleaved with progress lines on stderr.
type prefixWriter struct {
	w      io.Writer
	prefix string

	mu      sync.Mutex
	partial []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.partial = append(p.partial, b...)
	for {
		i := bytes.IndexByte(p.partial, '\n')
		if i < 0 {
			return len(b), nil
		}
		line := p.partial[:i+1]
		if _, err := io.WriteString(p.w, p.prefix+string(line)); err != nil {
			return len(b), err
		}
		p.partial = p.partial[i+1:]
	}
}
