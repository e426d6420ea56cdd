package cli

import (
	"context"

	"github.com/spf13/cobra"

	"github.com/slipway-deploy/slipway/internal/deploy"
	"github.com/slipway-deploy/slipway/internal/shell"
	"github.com/slipway-deploy/slipway/internal/ui"
)

func newExecCmd(g *globalOptions, streams IO) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "exec STAGE -- COMMAND [ARG...]",
		Short: "Run a command in the live release of every host, output prefixed by host",
		Example: `  slipway exec production -- php artisan about
  slipway exec production --hosts web1 -- tail -n 20 storage/logs/laravel.log
  slipway exec production --roles worker -- 'php artisan queue:restart'`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 2 || cmd.ArgsLenAtDash() != 1 {
				return &UserError{Msg: "exec needs a stage and a command after --, e.g. slipway exec production -- php artisan about"}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runExec(cmd.Context(), g, streams, args[0], args[1:])
		},
	}
	setExitStatus(cmd, ExitOK, ExitFailed, ExitUsage, ExitUnreachable, ExitInterrupted)
	return cmd
}

func runExec(ctx context.Context, g *globalOptions, streams IO, stage string, argv []string) error {
	opts, err := loadOptions(g, streams, stage, "exec "+stage)
	if err != nil {
		return err
	}
	width := 0
	for _, h := range opts.Hosts {
		width = max(width, len(h.Name))
	}
	opts.Events = &ui.HostOutput{Out: streams.Out, Err: streams.Err, Width: width}
	// One argument is a shell command line as typed ('a && b'); several are
	// a command and its arguments, each quoted.
	command := argv[0]
	if len(argv) > 1 {
		command = shell.Join(argv...)
	}
	return deploy.Exec(ctx, opts, command)
}
