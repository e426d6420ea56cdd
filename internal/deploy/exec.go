package deploy

import (
	"context"
	"fmt"

	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/shell"
)

// Exec runs command with sh in the live release of every selected host, in
// parallel; each line of output is an event carrying its host. It fails
// with one error per host whose command failed.
func Exec(ctx context.Context, opts Options, command string) error {
	r := newRun(opts)
	run := stepFunc{"exec", func(ctx context.Context, t *Target) error {
		dir := r.layout.CurrentLink()
		if t.Host.NoRelease {
			dir = "."
		}
		out := &lineWriter{emit: func(line string) {
			r.emit(Event{Kind: Output, Host: t.Name(), Step: command, Line: line})
		}}
		script := fmt.Sprintf("cd -- %s && exec sh -c %s </dev/null", shell.Quote(dir), shell.Quote(command))
		_, err := t.Exec.Exec(ctx, host.Command{Script: script, Stdout: out, Stderr: out})
		out.Flush()
		if ee, ok := err.(*host.ExitError); ok {
			return fmt.Errorf("exited with status %d", ee.Code)
		}
		return err
	}}
	return r.runner.Run(ctx, []any{connectStep{r}, allHosts{run}}, r.targets)
}

// allHosts runs a step on no_release hosts too.
type allHosts struct{ stepFunc }

func (allHosts) RunsOnNoRelease() bool { return true }
