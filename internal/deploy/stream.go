package deploy

import (
	"context"
	"fmt"
	"io"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Upload streams made once for many hosts.
//
// Hosts that receive the same content (a cold deploy's every host, or
// the hosts of a delta that share a live release) are sent the same
// bytes. Each used to make its own stream: its own tar of the tree and,
// where the stream goes gzipped, its own compression, so the deploying
// machine compressed the app once per host. Now the first host to upload
// starts the stream's one maker, which writes it to a temporary file (the
// page cache holds it; the process's memory does not grow with the app),
// and every host that receives it reads the file from the start at its
// own pace, following the maker while it is still writing.

// streamKey says which stream an upload sends, pushed or as a pack in the
// artifact store: the same delta plan (one per live manifest, nil for a
// full upload), the same shared paths kept out and the same compression
// make the same bytes (uploadStep.content derives the rest from them).
func streamKey(u upload, compress string) string {
	return fmt.Sprintf("%p\x00%s\x00%s", u.plan, strings.Join(u.keepOut, "\x00"), compress)
}

// streams are the upload streams of one deploy, by streamKey.
type streams struct {
	once   sync.Once
	count  map[string]int // hosts by key, counted once before the first upload
	mu     sync.Mutex
	made   map[string]*sharedStream
	failed bool // no temporary file could be made: no stream is shared
}

// shared returns the stream for key if more than one host receives it,
// starting its maker (write, writing the stream to w) on the first call; nil if only
// one host does (its stream is made as it is sent), or if no temporary
// file can be made (each host's stream is then made for it, as before,
// and the error says why).
func (s *streams) shared(ctx context.Context, key string, write func(w io.Writer, content *atomic.Int64) error) (*sharedStream, error) {
	if s.count[key] < 2 {
		return nil, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if st, ok := s.made[key]; ok {
		return st, nil
	}
	if s.failed {
		return nil, nil
	}
	f, err := os.CreateTemp("", "slipway-upload-*")
	if err != nil {
		s.failed = true
		return nil, fmt.Errorf("no temporary file for the upload stream (%w): each host's stream is made for it instead", err)
	}
	if runtime.GOOS != "windows" {
		// Unlinked at once where an open file may be: a run killed
		// (SIGKILL) leaves nothing behind. Windows keeps it until close.
		os.Remove(f.Name())
	}
	st := &sharedStream{f: f}
	st.cond = sync.NewCond(&st.mu)
	if s.made == nil {
		s.made = map[string]*sharedStream{}
	}
	s.made[key] = st
	go func() {
		err := write(streamWriter{st, ctx}, &st.content)
		st.finish(err)
	}()
	return st, nil
}

// close removes every stream's file once the uploads are over, waking any
// reader still waiting (none is, once every upload has returned).
func (s *streams) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, st := range s.made {
		st.stop()
		st.wait()
		st.f.Close()
		os.Remove(st.f.Name())
	}
	s.made = nil
}

var errStreamClosed = fmt.Errorf("the upload stream was closed")

// sharedStream is one upload stream written once to a file and read by
// every host that receives it.
type sharedStream struct {
	f       *os.File
	content atomic.Int64 // content bytes written so far, before compression

	mu     sync.Mutex
	cond   *sync.Cond
	n      int64        // bytes in the file
	marks  []streamMark // content written by each point of the file, for progress
	done   bool         // the maker returned
	err    error        // the maker's error, if any
	closed bool         // stop was called
}

// streamMark says that content bytes of content had been written when
// the file reached at bytes.
type streamMark struct{ at, content int64 }

// streamWriter appends to the stream's file, waking its readers; it stops
// the maker once the run is cancelled or the stream closed.
type streamWriter struct {
	s   *sharedStream
	ctx context.Context
}

func (w streamWriter) Write(p []byte) (int, error) {
	if err := w.ctx.Err(); err != nil {
		return 0, err
	}
	s := w.s
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return 0, errStreamClosed
	}
	n, err := s.f.WriteAt(p, s.n) // only the maker writes, so s.n moves only here
	if err != nil {
		err = fmt.Errorf("writing the upload stream to a temporary file (TMPDIR): %w", err)
	}
	s.mu.Lock()
	s.n += int64(n)
	s.marks = append(s.marks, streamMark{at: s.n, content: s.content.Load()})
	s.cond.Broadcast()
	s.mu.Unlock()
	return n, err
}

// finish records how the maker ended.
func (s *sharedStream) finish(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.done, s.err = true, err
	s.cond.Broadcast()
}

// stop closes the stream: its maker stops at its next write, and a reader
// still waiting gets errStreamClosed.
func (s *sharedStream) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.cond.Broadcast()
}

// wait waits for the maker to return.
func (s *sharedStream) wait() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for !s.done {
		s.cond.Wait()
	}
}

// reader reads the stream from its start; progress, if not nil, is given
// the content bytes that what was read so far holds.
func (s *sharedStream) reader(progress func(int64)) io.Reader {
	return &streamReader{s: s, progress: progress}
}

type streamReader struct {
	s        *sharedStream
	off      int64
	progress func(int64)
	last     time.Time // of the last progress report
}

func (r *streamReader) Read(p []byte) (int, error) {
	s := r.s
	s.mu.Lock()
	for r.off >= s.n && !s.done && !s.closed {
		s.cond.Wait()
	}
	n, done, err, closed := s.n, s.done, s.err, s.closed
	var content int64
	report := r.progress != nil && time.Since(r.last) > 200*time.Millisecond
	if report {
		i := sort.Search(len(s.marks), func(i int) bool { return s.marks[i].at > r.off })
		if i > 0 {
			content = s.marks[i-1].content
		}
	}
	s.mu.Unlock()
	if report && content > 0 {
		r.last = time.Now()
		r.progress(content)
	}
	if r.off >= n {
		switch {
		case closed && !done:
			return 0, errStreamClosed
		case err != nil:
			return 0, err
		}
		return 0, io.EOF
	}
	k, rerr := s.f.ReadAt(p[:min(int64(len(p)), n-r.off)], r.off)
	r.off += int64(k)
	if rerr == io.EOF && k > 0 {
		rerr = nil
	}
	return k, rerr
}
