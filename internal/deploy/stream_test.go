package deploy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestSharedStream: a stream several hosts receive is made once, and each
// reader gets every byte of it, in order, whether it reads while the
// maker still writes or after; the maker's error reaches every reader
// after the bytes before it; a stream one host receives is not shared;
// close stops a maker still writing and removes the file.
func TestSharedStream(t *testing.T) {
	want := bytes.Repeat([]byte("0123456789abcdef"), 64<<10) // 1 MiB
	maker := func(fail error, gate chan struct{}) func(w io.Writer, content *atomic.Int64) error {
		return func(w io.Writer, content *atomic.Int64) error {
			for off := 0; off < len(want); off += 100_000 {
				if gate != nil {
					<-gate
				}
				n, err := w.Write(want[off:min(off+100_000, len(want))])
				content.Add(int64(n))
				if err != nil {
					return err
				}
			}
			return fail
		}
	}
	t.Run("readers get every byte", func(t *testing.T) {
		s := &streams{count: map[string]int{"k": 3, "alone": 1}}
		s.once.Do(func() {})
		defer s.close()
		if st, err := s.shared(context.Background(), "alone", maker(nil, nil)); st != nil || err != nil {
			t.Fatalf("a stream one host receives was shared: %v %v", st, err)
		}
		gate := make(chan struct{})
		var made atomic.Int32
		mk := maker(nil, gate)
		counted := func(w io.Writer, c *atomic.Int64) error { made.Add(1); return mk(w, c) }
		var wg sync.WaitGroup
		got := make([][]byte, 3)
		var progress atomic.Int64
		for i := range got {
			st, err := s.shared(context.Background(), "k", counted)
			if err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				got[i], err = io.ReadAll(st.reader(func(n int64) { progress.Store(n) }))
				if err != nil {
					t.Error(err)
				}
			}()
		}
		// The readers wait while the maker is held, then follow it.
		for range (len(want) + 99_999) / 100_000 {
			time.Sleep(time.Millisecond)
			gate <- struct{}{}
		}
		wg.Wait()
		if made.Load() != 1 {
			t.Errorf("the stream was made %d times, want once", made.Load())
		}
		for i, g := range got {
			if !bytes.Equal(g, want) {
				t.Errorf("reader %d got %d bytes, not the stream's %d", i, len(g), len(want))
			}
		}
		// A reader that starts once the stream is made reads it whole.
		st, _ := s.shared(context.Background(), "k", counted)
		if late, err := io.ReadAll(st.reader(nil)); err != nil || !bytes.Equal(late, want) {
			t.Errorf("a late reader got %d bytes, err %v", len(late), err)
		}
	})
	t.Run("the maker's error", func(t *testing.T) {
		s := &streams{count: map[string]int{"k": 2}}
		defer s.close()
		boom := errors.New("boom")
		st, _ := s.shared(context.Background(), "k", maker(boom, nil))
		got, err := io.ReadAll(st.reader(nil))
		if !errors.Is(err, boom) || !bytes.Equal(got, want) {
			t.Errorf("read %d bytes, err %v; want all %d, then boom", len(got), err, len(want))
		}
	})
	t.Run("close stops the maker and removes the file", func(t *testing.T) {
		s := &streams{count: map[string]int{"k": 2}}
		gate := make(chan struct{}, 1)
		gate <- struct{}{}
		st, _ := s.shared(context.Background(), "k", maker(nil, gate))
		name := st.f.Name()
		r := st.reader(nil)
		buf := make([]byte, 10)
		if _, err := io.ReadFull(r, buf); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { s.close(); close(done) }()
		time.Sleep(10 * time.Millisecond)
		gate <- struct{}{} // the maker's next write finds the stream closed
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("close did not return")
		}
		if _, err := os.Stat(name); !os.IsNotExist(err) {
			t.Errorf("the stream's file is still there: %v", err)
		}
	})
}

// TestSharedStreamWithoutATemporaryFile: where no temporary file can be
// made, no stream is shared (each host's is made for it), and the error
// says so once.
func TestSharedStreamWithoutATemporaryFile(t *testing.T) {
	t.Setenv("TMPDIR", filepath.Join(t.TempDir(), "missing"))
	s := &streams{count: map[string]int{"k": 2}}
	defer s.close()
	never := func(io.Writer, *atomic.Int64) error { t.Error("the maker ran"); return nil }
	st, err := s.shared(context.Background(), "k", never)
	if st != nil || err == nil || !strings.Contains(err.Error(), "each host's stream is made for it") {
		t.Errorf("stream %v, err %v; want none, and an error saying why", st, err)
	}
	if st, err := s.shared(context.Background(), "k", never); st != nil || err != nil {
		t.Errorf("the second host: stream %v, err %v; want none and no second error", st, err)
	}
}
