package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"

	"github.com/spf13/cobra"

	"github.com/slipway-deploy/slipway/internal/deploy"
	"github.com/slipway-deploy/slipway/internal/source"
	"github.com/slipway-deploy/slipway/internal/ui"
)

type diffOptions struct {
	json bool
}

func newDiffCmd(g *globalOptions, streams IO) *cobra.Command {
	opts := &diffOptions{}
	cmd := &cobra.Command{
		Use:   "diff STAGE STAGE",
		Short: "List the files that differ between the live releases of two stages",
		Long: `diff reads the live release of each stage (every host of a stage must serve the same
one) and compares their manifests, the list of every file, directory and link each
release shipped with its checksum: what the second stage's release has that the first's
has not (+), what it lacks (-), and what both have but differently (~). It takes no lock
and changes nothing; files the app wrote at run time are not part of a release.`,
		Example: `  slipway diff production staging          # what promoting staging to production would change
  slipway diff production staging --json`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return &UserError{Msg: "diff needs two stage names, e.g. slipway diff production staging"}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runDiff(cmd.Context(), g, streams, args[0], args[1], opts)
		},
	}
	cmd.Flags().BoolVar(&opts.json, "json", false, "print JSON for machines")
	setExitStatus(cmd, ExitOK, ExitFailed, ExitUsage, ExitUnreachable, ExitInterrupted)
	return cmd
}

// diffRelease is one side of a diff.
type diffRelease struct {
	Stage        string `json:"stage"`
	Release      string `json:"release"`
	Revision     string `json:"revision,omitempty"`
	Branch       string `json:"branch,omitempty"`
	Digest       string `json:"digest,omitempty"`
	PromotedFrom string `json:"promoted_from,omitempty"`
}

type diffResult struct {
	From diffRelease `json:"from"`
	To   diffRelease `json:"to"`
	deploy.ReleaseDiff
}

func runDiff(ctx context.Context, g *globalOptions, streams IO, from, to string, opts *diffOptions) error {
	if from == to {
		return &UserError{Msg: fmt.Sprintf("diff %s %s: give two different stages", from, to)}
	}
	if len(g.hosts)+len(g.roles) > 0 {
		return &UserError{Msg: "--hosts and --roles do not apply to diff: it reads every host of both stages, which must agree"}
	}
	gq := *g
	gq.quiet = true // the result is the output; step lines would only repeat it
	var stages [2]deploy.Options
	for i, name := range []string{from, to} {
		o, err := loadOptions(&gq, streams, name, "diff "+from+" "+to)
		if err != nil {
			return err
		}
		stages[i] = o
	}
	var lives [2]*deploy.LiveRelease
	var errs [2]error
	var wg sync.WaitGroup
	for i := range stages {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lives[i], errs[i] = deploy.ReadLive(ctx, stages[i], true)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs[0], errs[1]); err != nil {
		return err
	}
	res := diffResult{From: describeLive(lives[0]), To: describeLive(lives[1]), ReleaseDiff: deploy.DiffManifests(lives[0].Manifest, lives[1].Manifest)}
	if opts.json {
		return writeJSON(streams.Out, res)
	}
	printDiff(streams.Out, res)
	return nil
}

func describeLive(l *deploy.LiveRelease) diffRelease {
	return diffRelease{Stage: l.Stage, Release: l.ID, Revision: l.Meta.Revision, Branch: l.Meta.Branch, Digest: l.Meta.Digest, PromotedFrom: l.Meta.PromotedFrom}
}

func printDiff(w io.Writer, res diffResult) {
	var rows [][]string
	for _, r := range []diffRelease{res.From, res.To} {
		rev := ui.Short(r.Revision)
		if r.Branch != "" {
			rev += " " + r.Branch
		}
		tree := "-"
		if r.Digest != "" {
			tree = ui.Short(r.Digest)
		}
		from := ""
		if r.PromotedFrom != "" {
			from = "from " + r.PromotedFrom
		}
		rows = append(rows, []string{r.Stage, r.Release, orDash(rev), tree, from})
	}
	ui.Table(w, []string{"STAGE", "LIVE", "REVISION", "TREE", ""}, rows)
	d := res.ReleaseDiff
	n := len(d.Added) + len(d.Removed) + len(d.Changed)
	if n == 0 {
		fmt.Fprintf(w, "\nthe live releases of %s and %s ship the same files\n", res.From.Stage, res.To.Stage)
		return
	}
	fmt.Fprintln(w)
	for _, group := range []struct {
		mark    string
		changes []deploy.Change
	}{{"+", d.Added}, {"-", d.Removed}, {"~", d.Changed}} {
		for _, c := range group.changes {
			name := c.Path
			if !source.PlainName(name) {
				name = strconv.QuoteToASCII(name) // no name moves the terminal's cursor
			}
			if c.Type == "dir" {
				name += "/"
			}
			fmt.Fprintf(w, "%s %s\n", group.mark, name)
		}
	}
	fmt.Fprintf(w, "\n%d entries differ from %s's release to %s's: %d added, %d removed, %d changed\n",
		n, res.From.Stage, res.To.Stage, len(d.Added), len(d.Removed), len(d.Changed))
}
