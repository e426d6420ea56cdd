package deploy

import (
	"bytes"
	"strings"
	"sync"
)

// lineWriter turns a command's output into lines for events and keeps the
// last few for the error message if the command fails.
type lineWriter struct {
	emit func(string)
	mask func(string) string // hides secrets; nil for none

	mu   sync.Mutex
	buf  bytes.Buffer
	tail []string
}

const tailLines = 20

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			// No newline yet: keep the partial line for the next write.
			w.buf.Reset()
			w.buf.WriteString(line)
			return len(p), nil
		}
		w.line(strings.TrimRight(line, "\r\n"))
	}
}

// Flush emits a last line that had no newline.
func (w *lineWriter) Flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.buf.Len() > 0 {
		w.line(w.buf.String())
		w.buf.Reset()
	}
}

func (w *lineWriter) line(s string) {
	if w.mask != nil {
		s = w.mask(s)
	}
	w.tail = append(w.tail, s)
	if len(w.tail) > tailLines {
		w.tail = w.tail[1:]
	}
	w.emit(s)
}

// Tail is the last lines written.
func (w *lineWriter) Tail() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return strings.Join(w.tail, "\n")
}
