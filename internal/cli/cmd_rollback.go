package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway-deploy/slipway/internal/deploy"
	"github.com/slipway-deploy/slipway/internal/layout"
)

type rollbackOptions struct {
	to             string
	json           bool
	dryRun         bool
	withMigrations bool
	force          bool
}

func newRollbackCmd(g *globalOptions, streams IO) *cobra.Command {
	opts := &rollbackOptions{}
	cmd := &cobra.Command{
		Use:   "rollback STAGE",
		Short: "Switch every host back to the previous release (or --to one)",
		Long: `rollback switches every host back to the release before the live one (or --to
one) with the same atomic switch as a deploy. The hooks.before_rollback commands run
first, in the release being left, on every host (or once); a failing one stops the
rollback with no host switched, unless --force.

With migrations.path set, rollback says which migrations the release being left has
that its target does not: the database schema stays ahead of the code rolled back to
unless something reverses them. --with-migrations runs migrations.rollback for exactly
those (SLIPWAY_MIGRATION_STEPS is their count, SLIPWAY_MIGRATIONS their names, newest
first), once, in the release being left, before any host switches; it refuses, changing
nothing, when the count cannot be established safely. --dry-run shows all this and
changes nothing.`,
		Example: `  slipway rollback production
  slipway rollback production --to 20261122103015
  slipway rollback production --dry-run
  slipway rollback production --with-migrations`,
		Args: stageArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runRollback(cmd.Context(), g, streams, args[0], opts)
		},
	}
	cmd.Flags().StringVar(&opts.to, "to", "", "release id to switch to (see slipway releases STAGE)")
	if err := cmd.RegisterFlagCompletionFunc("to", completeReleaseIDs(g)); err != nil {
		panic(err) // only if the flag is not defined just above
	}
	cmd.Flags().BoolVar(&opts.json, "json", false, "print NDJSON events on stdout (schema: docs/json-events.md); with --dry-run, the plan as JSON")
	cmd.Flags().BoolVar(&opts.dryRun, "dry-run", false, "show what the rollback would do on each host (targets, hooks, migrations) and change nothing")
	cmd.Flags().BoolVar(&opts.withMigrations, "with-migrations", false, "reverse the migrations the release being left has that its target does not (migrations.rollback), before the switch")
	cmd.Flags().BoolVar(&opts.force, "force", false, "switch back even if a before_rollback hook fails")
	setExitStatus(cmd, ExitOK, ExitFailed, ExitUsage, ExitLocked, ExitUnreachable, ExitAfterSwitch, ExitInterrupted)
	return cmd
}

// releaseCompletionTimeout bounds the reading of a stage's releases for a
// completion: a shell waits for it, so an unreachable host must not hang
// the prompt.
const releaseCompletionTimeout = 3 * time.Second

// completeReleaseIDs completes --to with the stage's release ids, newest
// first, each described by its state (live, previous, failed, ...). It
// reads the hosts as slipway releases does, without taking the lock and
// printing nothing; a stage it cannot read completes nothing.
func completeReleaseIDs(g *globalOptions) func(*cobra.Command, []string, string) ([]cobra.Completion, cobra.ShellCompDirective) {
	return func(cmd *cobra.Command, args []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(args) != 1 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		silent := *g
		silent.quiet, silent.verbose = true, false
		dopts, err := loadOptions(&silent, IO{Err: io.Discard}, args[0], "rollback completion")
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		dopts.Events = nil
		ctx, cancel := context.WithTimeout(cmd.Context(), releaseCompletionTimeout)
		defer cancel()
		rows, err := deploy.Releases(ctx, dopts)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		var ids []cobra.Completion
		for _, r := range rows {
			if !r.Removed { // only its history is left: nothing to switch to
				ids = append(ids, cobra.CompletionWithDesc(r.ID, r.State))
			}
		}
		return ids, cobra.ShellCompDirectiveNoFileComp | cobra.ShellCompDirectiveKeepOrder
	}
}

func runRollback(ctx context.Context, g *globalOptions, streams IO, stage string, opts *rollbackOptions) error {
	if opts.to != "" && !layout.IsReleaseID(opts.to) {
		return &UserError{Msg: "--to " + opts.to + ": a release id is 14 digits, UTC YYYYMMDDHHMMSS; list them with: slipway releases " + stage}
	}
	ro := deploy.RollbackOptions{To: opts.to, WithMigrations: opts.withMigrations}
	if opts.dryRun {
		gq := *g
		gq.quiet = true
		dopts, err := loadOptions(&gq, streams, stage, "rollback --dry-run "+stage)
		if err != nil {
			return err
		}
		plan, err := deploy.PlanRollback(ctx, dopts, ro)
		if err != nil {
			return err
		}
		if opts.json {
			return writeJSON(streams.Out, plan)
		}
		printRollbackPlan(streams.Out, dopts, plan)
		return nil
	}
	dopts, err := loadOptions(g, streams, stage, "rollback "+stage)
	if err != nil {
		return err
	}
	dopts.Force = opts.force
	events := jsonEvents(&dopts, streams, opts.json, "rollback")
	started := time.Now()
	res, err := deploy.Rollback(ctx, dopts, ro)
	endProgress(dopts.Events)
	events.finished(res, err)
	if res != nil {
		res.Duration = time.Since(started)
	}
	notifyOutcome(ctx, dopts, "rollback", started, res, err, streams)
	printDeployResult(streams.Err, "rollback", res, err)
	return err
}

func printRollbackPlan(w io.Writer, opts deploy.Options, plan *deploy.Plan) {
	fmt.Fprintf(w, "rollback plan for stage %s (nothing was changed)\n", opts.Stage.Name)
	if len(plan.MigrationsAhead) > 0 {
		fmt.Fprintf(w, "migrations the release being left has and its target does not (newest first): %s\n", strings.Join(plan.MigrationsAhead, ", "))
		if plan.Migrations != "" {
			fmt.Fprintf(w, "  reversed by: %s\n", plan.Migrations)
		} else {
			fmt.Fprintln(w, "  the schema stays ahead of the code rolled back to unless something reverses them (--with-migrations)")
		}
	}
	for _, warn := range plan.Warnings {
		fmt.Fprintf(w, "warning: %s\n", warn)
	}
	for _, h := range plan.Hosts {
		fmt.Fprintf(w, "\n%s: %s -> %s\n", h.Host, orDash(h.Live), orDash(h.Target))
		if h.Locked != "" {
			fmt.Fprintf(w, "  rollback would stop: locked by %s\n", h.Locked)
		}
		for _, hook := range h.Hooks {
			fmt.Fprintf(w, "  hook %s\n", hook)
		}
		for _, warn := range h.Warnings {
			fmt.Fprintf(w, "  warning: %s\n", warn)
		}
	}
}
