package deploy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/source"
)

// lockWatch runs the host's scripts and notes when the lock script runs;
// with waitFor set, the lock script first waits (up to 5 s) for it to be
// closed.
type lockWatch struct {
	host.Local
	lockDir func() string
	waitFor chan struct{}
	locked  atomic.Bool
	waited  atomic.Bool // the lock script ran only once waitFor was closed
}

func (e *lockWatch) Exec(ctx context.Context, cmd host.Command) (host.Result, error) {
	if !e.locked.Load() && strings.Contains(cmd.Script, "mkdir -- "+e.lockDir()) {
		if e.waitFor != nil {
			select {
			case <-e.waitFor:
				e.waited.Store(true)
			case <-time.After(5 * time.Second):
			}
		}
		defer e.locked.Store(true)
	}
	return e.Local.Exec(ctx, cmd)
}

// TestPrefetchedExportRunsBesideTheLock: an export with nothing to build
// (Source.Prefetch) starts with the run, so the hosts are locked while it
// runs, and a deploy refused by the lock cancels it and waits for it to
// end; a build with commands still starts only once every host is locked.
func TestPrefetchedExportRunsBesideTheLock(t *testing.T) {
	for _, c := range []string{"prefetched", "prefetched, refused by the lock", "not prefetched"} {
		t.Run(c, func(t *testing.T) {
			dir := t.TempDir()
			ex := &lockWatch{}
			opts := localStage(t, dir, ex)
			l := opts.Layout()
			ex.lockDir = l.LockDir
			writeFile(t, filepath.Join(opts.Config.Source.Path, "index.html"), "v1")
			if strings.Contains(c, "refused") {
				if err := os.MkdirAll(l.LockDir(), 0o755); err != nil {
					t.Fatal(err)
				}
				writeFile(t, l.LockOwnerFile(), `{"user":"someone","token":"other","manual":true,"message":"freeze"}`)
			}
			started := make(chan struct{})
			var calls, ended atomic.Int32
			var lockedAtStart atomic.Bool
			build := func(ctx context.Context) (*source.Tree, error) {
				calls.Add(1)
				lockedAtStart.Store(ex.locked.Load())
				close(started)
				defer ended.Add(1)
				if strings.Contains(c, "refused") {
					<-ctx.Done() // an export still running as the lock is refused
					return nil, ctx.Err()
				}
				return source.Scan(opts.Config.Source.Path, nil)
			}
			prefetch := strings.HasPrefix(c, "prefetched")
			if prefetch {
				ex.waitFor = started
			}
			_, err := Deploy(context.Background(), opts, Source{Build: build, Prefetch: prefetch, Revision: "0123456789abcdef0123456789abcdef01234567"})
			switch c {
			case "prefetched":
				if err != nil {
					t.Fatal(err)
				}
				if !ex.waited.Load() || lockedAtStart.Load() {
					t.Errorf("the export did not start before the lock was taken (lock waited for it: %v; locked at its start: %v)", ex.waited.Load(), lockedAtStart.Load())
				}
			case "prefetched, refused by the lock":
				var locked *LockedError
				if !errors.As(err, &locked) {
					t.Fatalf("err = %v, want a LockedError", err)
				}
				if ended.Load() != 1 {
					t.Errorf("the export still ran when Deploy returned")
				}
			case "not prefetched":
				if err != nil {
					t.Fatal(err)
				}
				if !lockedAtStart.Load() {
					t.Errorf("a build with commands started before every host was locked")
				}
			}
			if calls.Load() != 1 {
				t.Errorf("the build ran %d times, want once", calls.Load())
			}
		})
	}
}
