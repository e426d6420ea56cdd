package host

import (
	"context"
	"fmt"
	"net"
	"os"
	"strings"
)

// FaultEnv names the environment variable that injects failures, for the
// end-to-end and fault-injection suites only: a comma-separated list of
// OPERATION@HOST, where OPERATION is "rename" (the switch fails on that
// host) and HOST is the host's name as written in the stage. It is read
// once, at start-up; nothing else in slipway looks at it.
const FaultEnv = "SLIPWAY_TEST_FAULTS"

// Faults parses FaultEnv from the environment.
func Faults() map[string]bool {
	faults := map[string]bool{}
	for _, f := range strings.Split(os.Getenv(FaultEnv), ",") {
		if f = strings.TrimSpace(f); f != "" {
			faults[f] = true
		}
	}
	return faults
}

// WithFaults wraps ex so the operations listed for its host fail.
func WithFaults(ex Executor, faults map[string]bool) Executor {
	if !faults["rename@"+ex.Name()] {
		return ex
	}
	return &faulty{Executor: ex}
}

type faulty struct{ Executor }

func (f *faulty) Rename(context.Context, string, string) error {
	return fmt.Errorf("%s: rename failed: injected by %s", f.Name(), FaultEnv)
}

func (f *faulty) PrepareRename(ctx context.Context) error {
	if p, ok := f.Executor.(RenamePreparer); ok {
		return p.PrepareRename(ctx)
	}
	return nil
}

func (f *faulty) DialTCP(ctx context.Context, addr string) (net.Conn, error) {
	if d, ok := f.Executor.(TCPDialer); ok {
		return d.DialTCP(ctx, addr)
	}
	return nil, fmt.Errorf("%s: cannot open connections from the host", f.Name())
}
