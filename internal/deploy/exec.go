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
	r := newRun(ctx, opts)
	run := stepFunc{name: "exec", allHosts: true, fn: func(ctx context.Context, t *Target) error {
		dir := r.layout.CurrentLink()
		if t.Host.NoRelease {
			dir = "."
		}
		out := &lineWriter{emit: func(line string) {
			r.emit(Event{Kind: Output, Host: t.Name(), Step: command, Line: line})
		}}
		_, err := t.Exec.Exec(ctx, host.Command{Script: execScript(dir, command), Stdout: out, Stderr: out})
		out.Flush()
		if ee, ok := err.(*host.ExitError); ok {
			return fmt.Errorf("exited with status %d", ee.Code)
		}
		return err
	}}
	return r.pipeline([]Step{perHost(connectStep{r: r}), perHost(run)})
}

// execScript runs command with sh in dir.
func execScript(dir, command string) string {
	return shell.Script("cd -- {{dir}} && exec sh -c {{command}} </dev/null", shell.Args{"dir": dir, "command": command})
}
