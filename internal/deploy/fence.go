package deploy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"

	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/layout"
	"github.com/slipway-deploy/slipway/internal/shell"
)

// The fence: once a run holds a host's lock, every change it makes there
// (create, upload, shared links, a hook's start, sync, record, cleanup,
// undo) first checks, in the same script and so the same round trip, that
// the lock still holds the run's token; the switch renames a link that
// lives in the lock directory, so it cannot happen once the lock is gone. A run whose lock was
// removed (slipway unlock --force) or taken over changes nothing more, and
// never switches or deletes what another run made.

// lostMessage is what a fenced script prints when the lock is not the
// run's any more; with lostStatus it tells a lost lock from a command
// that happens to exit 76.
const lostMessage = "slipway: this run no longer holds the deploy lock"

// fenceScript exits lostStatus unless the lock's owner file holds token.
// It uses shell builtins only: it costs no process. (The switch is fenced
// by the lock directory itself: see switch.go.)
func fenceScript(l layout.Layout, token string) string {
	return readOwnerScript(l) + shell.Script(`case $slipway_lock in *{{token}}*) ;; *) echo {{lost}} >&2; exit {{status}};; esac`, shell.Args{
		"token": tokenField(token), "lost": lostMessage, "status": lostStatus,
	})
}

// readOwnerScript reads the lock's owner file (one line) into
// $slipway_lock with builtins, empty where there is none: the fence and
// the lock's release then look for their run's token in it.
func readOwnerScript(l layout.Layout) string {
	return shell.Script(`slipway_lock=; { IFS= read -r slipway_lock < {{file}}; } 2>/dev/null`, shell.Args{"file": l.LockOwnerFile()}) + "\n"
}

// tokenField is how token appears in the owner file.
func tokenField(token string) string { return `"token":"` + token + `"` }

// fenced is a host's executor once the run holds its lock there: every
// Exec is fenced; queries are not (they change nothing).
type fenced struct {
	host.Executor
	fence string
}

func (f fenced) Exec(ctx context.Context, cmd host.Command) (host.Result, error) {
	cmd.Script = f.fence + "\n" + cmd.Script
	// Streamed stderr (a hook's) is not in the error: watch it.
	watch := &lostWatcher{}
	if cmd.Stderr != nil {
		cmd.Stderr = io.MultiWriter(cmd.Stderr, watch)
	}
	res, err := f.Executor.Exec(ctx, cmd)
	var exitErr *host.ExitError
	if errors.As(err, &exitErr) && exitErr.Code == lostStatus && (watch.seen() || bytes.Contains(exitErr.Stderr, []byte(lostMessage))) {
		return res, &LockLostError{Host: f.Name()}
	}
	return res, err
}

// lostWatcher notices lostMessage in what passes through it.
type lostWatcher struct {
	mu   sync.Mutex
	tail []byte
	hit  bool
}

func (w *lostWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.tail = append(w.tail, p...)
	if bytes.Contains(w.tail, []byte(lostMessage)) {
		w.hit = true
	}
	if keep := len(lostMessage); len(w.tail) > keep {
		w.tail = w.tail[len(w.tail)-keep:]
	}
	return len(p), nil
}

func (w *lostWatcher) seen() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.hit
}
