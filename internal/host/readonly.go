package host

import (
	"context"
	"fmt"
)

// ReadOnly wraps an executor for plans and dry runs: queries pass, and any
// attempt to change the host fails loudly instead of happening. A plan
// that needed a write would be a bug, and this makes it one that shows.
func ReadOnly(ex Executor) Executor { return readOnly{ex} }

type readOnly struct{ Executor }

func (r readOnly) Exec(_ context.Context, cmd Command) (Result, error) {
	return Result{}, fmt.Errorf("%s: dry run: refused to change the host (%.60s)", r.Name(), cmd.Script)
}

func (r readOnly) Rename(_ context.Context, oldpath, newpath string) error {
	return fmt.Errorf("%s: dry run: refused to rename %s over %s", r.Name(), oldpath, newpath)
}
