package cli

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway-deploy/slipway/internal/artifact"
	"github.com/slipway-deploy/slipway/internal/ui"
)

type artifactsOptions struct {
	json      bool
	keep      int
	keepSet   bool
	olderThan string
}

func newArtifactsCmd(streams IO) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "artifacts",
		Short: "List or prune the release trees built here and kept for reuse (the artifact cache)",
		Long: `A tree slipway builds (source.build) is kept in the artifact cache, named by its digest:
a deploy of the same revision with the same build configuration ships it instead of
building again, and deploy --from ships it to another stage as it is. The cache is
` + "`" + `~/.cache/slipway/artifacts` + "`" + ` (the system's user cache directory). It keeps at most
` + artifact.EnvMaxSize + ` bytes (default 5GB) and ` + artifact.EnvMaxEntries + ` trees
(default 50), dropping the least recently used; 0 for either turns it off.`,
		Args: cobra.NoArgs,
	}
	opts := &artifactsOptions{}
	ls := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the cached trees: digest, revision, stages deployed to, size, last use",
		Example: `  slipway artifacts ls
  slipway artifacts ls --json | jq '.[0].digest'`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error { return runArtifactsList(streams, opts) },
	}
	ls.Flags().BoolVar(&opts.json, "json", false, "print JSON for machines")
	setExitStatus(ls, ExitOK, ExitFailed, ExitUsage)
	prune := &cobra.Command{
		Use:   "prune",
		Short: "Remove cached trees: beyond the cache's bounds, or as --keep / --older-than say",
		Example: `  slipway artifacts prune                  # down to the cache's bounds
  slipway artifacts prune --keep 5         # all but the 5 most recently used
  slipway artifacts prune --older-than 30d # those unused for 30 days`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			opts.keepSet = cmd.Flags().Changed("keep")
			return runArtifactsPrune(streams, opts)
		},
	}
	prune.Flags().IntVar(&opts.keep, "keep", 0, "keep the N most recently used trees, remove the rest")
	prune.Flags().StringVar(&opts.olderThan, "older-than", "", "remove the trees not used for this long (72h, 30d)")
	setExitStatus(prune, ExitOK, ExitFailed, ExitUsage)
	cmd.AddCommand(ls, prune)
	setExitStatus(cmd, ExitOK, ExitFailed, ExitUsage)
	return cmd
}

func runArtifactsList(streams IO, opts *artifactsOptions) error {
	cache, err := openCache()
	if err != nil {
		return err
	}
	records, err := cache.List()
	if err != nil {
		return err
	}
	if opts.json {
		if records == nil {
			records = []*artifact.Record{}
		}
		return writeJSON(streams.Out, records)
	}
	var rows [][]string
	var total int64
	for _, r := range records {
		total += r.DiskSize
		rows = append(rows, []string{ui.Short(r.Digest), orDash(revisionsOf(r)), orDash(stagesOf(r)), ui.HumanBytes(r.DiskSize),
			r.LastUsed.UTC().Format("2006-01-02 15:04:05")})
	}
	if len(rows) > 0 {
		ui.Table(streams.Out, []string{"DIGEST", "REVISION", "STAGES", "SIZE", "LAST USED (UTC)"}, rows)
	}
	fmt.Fprintf(streams.Out, "%d tree(s), %s, in %s (%s)\n", len(records), ui.HumanBytes(total), cache.Dir, bounds(cache))
	return nil
}

// revisionsOf is the revisions a tree was built from, with the branch of
// the latest build, for a table.
func revisionsOf(r *artifact.Record) string {
	var revs []string
	for _, rev := range r.Revisions() {
		revs = append(revs, ui.Short(rev))
	}
	s := strings.Join(revs, ",")
	if n := len(r.Builds); n > 0 {
		b := r.Builds[n-1]
		if b.Branch != "" {
			s += " " + b.Branch
		}
		if b.Dirty {
			s += " (dirty)"
		}
	}
	return s
}

func stagesOf(r *artifact.Record) string {
	var stages []string
	for _, d := range r.Stages {
		stages = append(stages, d.Stage)
	}
	return strings.Join(stages, ",")
}

func bounds(c *artifact.Cache) string {
	if !c.Enabled() {
		return "off: " + artifact.EnvMaxSize + " or " + artifact.EnvMaxEntries + " is 0"
	}
	size := ui.HumanBytes(c.MaxBytes)
	if c.MaxBytes >= 1<<30 {
		size = fmt.Sprintf("%.1f GB", float64(c.MaxBytes)/(1<<30))
	}
	return fmt.Sprintf("keeps at most %s and %d trees", size, c.MaxEntries)
}

func runArtifactsPrune(streams IO, opts *artifactsOptions) error {
	if opts.keepSet && opts.olderThan != "" {
		return &UserError{Msg: "give one of --keep and --older-than"}
	}
	if opts.keepSet && opts.keep < 0 {
		return &UserError{Msg: fmt.Sprintf("--keep %d: give a number of trees, 0 or more", opts.keep)}
	}
	cache, err := openCache()
	if err != nil {
		return err
	}
	var removed []*artifact.Record
	switch {
	case opts.keepSet:
		removed, err = cache.KeepNewest(opts.keep)
	case opts.olderThan != "":
		age, parseErr := parseAge(opts.olderThan)
		if parseErr != nil {
			return parseErr
		}
		removed, err = cache.RemoveUnused(age)
	default:
		removed, err = cache.Fit()
	}
	var freed int64
	for _, r := range removed {
		freed += r.DiskSize
		fmt.Fprintf(streams.Out, "removed %s  %s  %s\n", ui.Short(r.Digest), orDash(revisionsOf(r)), ui.HumanBytes(r.DiskSize))
	}
	if err != nil {
		return err
	}
	left, err := cache.List()
	if err != nil {
		return err
	}
	fmt.Fprintf(streams.Out, "removed %d tree(s), %s; %d left\n", len(removed), ui.HumanBytes(freed), len(left))
	return nil
}

// parseAge reads --older-than: a Go duration (72h, 90m) or a number of
// days (30d).
func parseAge(s string) (time.Duration, error) {
	bad := &UserError{Msg: fmt.Sprintf("--older-than %s: give a duration such as 72h or 30d", s)}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseFloat(days, 64)
		if err != nil || n < 0 {
			return 0, bad
		}
		return time.Duration(n * float64(24*time.Hour)), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, bad
	}
	return d, nil
}
