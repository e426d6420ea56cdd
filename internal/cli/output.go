package cli

import (
	"bytes"
	"io"
	"sync"
)

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
