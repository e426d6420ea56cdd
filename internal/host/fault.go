package host

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
)

// FaultEnv names the environment variable that injects failures, for the
// end-to-end and fault-injection suites only: a comma-separated list of
// OPERATION@HOST, where OPERATION is "rename" (the switch fails on that
// host) and HOST is the host's name as written in the stage. It is read
// once, at start-up; nothing else in slipway looks at it. "upload" cuts the
// standard input of the first command that has one after 4 KiB, as a
// connection lost in the middle of an upload would.
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
	rename, upload := faults["rename@"+ex.Name()], faults["upload@"+ex.Name()]
	if !rename && !upload {
		return ex
	}
	return &faulty{Executor: ex, rename: rename, upload: upload}
}

type faulty struct {
	Executor
	rename, upload bool
}

func (f *faulty) Rename(ctx context.Context, oldpath, newpath string) error {
	if !f.rename {
		return f.Executor.Rename(ctx, oldpath, newpath)
	}
	return fmt.Errorf("%s: rename failed: injected by %s", f.Name(), FaultEnv)
}

func (f *faulty) Exec(ctx context.Context, cmd Command) (Result, error) {
	if f.upload && cmd.Stdin != nil && strings.Contains(cmd.Script, "tar -x") {
		cmd.Stdin = &cutReader{r: cmd.Stdin, left: 4096}
	}
	return f.Executor.Exec(ctx, cmd)
}

// cutReader fails after a number of bytes.
type cutReader struct {
	r    io.Reader
	left int
}

func (c *cutReader) Read(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, fmt.Errorf("connection lost mid-upload: injected by %s", FaultEnv)
	}
	if len(p) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= n
	return n, err
}
