package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/deploy"
	"github.com/slipway-deploy/slipway/internal/ui"
)

// slipway shared push | diff | pull: the files of shared.files (.env),
// changed on every host at once, compared, fetched. The domain work is in
// internal/deploy (shared_push.go, shared_diff.go); here are the flags,
// the local files, the question asked before a push, and the diff as
// people read it.

func newSharedCmd(g *globalOptions, streams IO) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "shared",
		Short: "Push, compare and fetch the shared files (shared.files, such as .env) of a stage's hosts",
		Long: `The files listed in shared.files (.env, say) live once per host in shared/ and are
linked into every release. slipway shared changes them on every host at once and
tells you when the hosts disagree:

  push   writes a local file as a shared file on every host, after showing the diff
         against each host's copy and asking (under the deploy lock; never a
         half-written file; the previous copy kept in shared/.slipway/history/)
  diff   compares a local file with each host's copy (exit 1 when one differs)
  pull   fetches one host's copy into a local file

Secret values never reach the output: lines whose key names a secret (PASSWORD,
SECRET, TOKEN, KEY, PRIVATE, CREDENTIAL) show as KEY=***, and so does any value
of a secret env variable of slipway.yml.`,
		Example: `  slipway shared push production .env.production --as .env
  slipway shared diff production .env --file .env.production
  slipway shared pull production .env -o .env.production`,
	}
	cmd.AddCommand(newSharedPushCmd(g, streams), newSharedDiffCmd(g, streams), newSharedPullCmd(g, streams))
	setExitStatus(cmd, ExitOK, ExitFailed, ExitUsage, ExitLocked, ExitUnreachable, ExitInterrupted)
	return cmd
}

type sharedPushOptions struct {
	as  string
	yes bool
}

func newSharedPushCmd(g *globalOptions, streams IO) *cobra.Command {
	opts := &sharedPushOptions{}
	cmd := &cobra.Command{
		Use:   "push STAGE FILE [--as NAME] [--yes]",
		Short: "Write a local file as a shared file on every host of the stage",
		Long: `push writes FILE (a path on this machine) as the shared file NAME (one of
shared.files; by default FILE's base name) on every host of the stage.

Under the deploy lock it reads each host's copy, shows the diff from it to FILE
(hosts with the same copy together, secret values masked), and asks before
writing anything; --yes skips the question (CI), and without a terminal to ask
at, --yes is required. Each host that differs first gets the new copy beside
the file (checked against FILE's checksum and synced to disk); then each
replaces the file with one rename(2), so the app reads the old file or the new
one, never half of one. The copy replaced is kept in
shared/.slipway/history/NAME/ (the newest 10). The file gets the mode
shared.files_mode (0640 by default) and keeps the group of the copy it replaces.
hooks.after_shared_push then run in the live release (once, roles as other hooks;
SLIPWAY_SHARED_FILE names the file).`,
		Example: `  slipway shared push production .env.production --as .env
  slipway shared push production config/app.yml --yes`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return &UserError{Msg: "shared push needs a stage and a local file, e.g. slipway shared push production .env.production --as .env"}
			}
			return nil
		},
		ValidArgsFunction: completeSharedArgs(g, false),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSharedPush(cmd.Context(), g, streams, args[0], args[1], opts)
		},
	}
	cmd.Flags().StringVar(&opts.as, "as", "", "the shared file to write (one of shared.files); FILE's base name by default")
	cmd.Flags().BoolVarP(&opts.yes, "yes", "y", false, "push without asking (the diff is still shown)")
	setExitStatus(cmd, ExitOK, ExitFailed, ExitUsage, ExitLocked, ExitUnreachable, ExitInterrupted)
	return cmd
}

func runSharedPush(ctx context.Context, g *globalOptions, streams IO, stage, file string, popts *sharedPushOptions) error {
	name := popts.as
	if name == "" {
		name = filepath.Base(file)
	}
	opts, err := loadOptions(g, streams, stage, "shared push "+stage+" "+name)
	if err != nil {
		return err
	}
	if err := checkSharedName(opts.Config, name, "--as NAME"); err != nil {
		return err
	}
	if err := checkLocalFile(file, "push"); err != nil {
		return err
	}
	if !popts.yes && !stdinTerminal(streams) {
		return &UserError{Msg: fmt.Sprintf("shared push asks before it writes, and there is no terminal to ask at: pass --yes to push without asking (slipway shared diff %s %s --file %s shows what would change)", stage, name, file)}
	}
	// The question must not be drawn over by a live progress view.
	opts.Events = ui.NewProgress(streams.Err, hostNames(opts.Hosts), g.quiet)
	local := deploy.SharedLocal{Name: name, Path: file}
	confirm := func(ctx context.Context, diff *deploy.SharedDiff) error {
		printSharedDiff(streams.Out, diff)
		if popts.yes {
			return nil
		}
		hosts := diff.Differing()
		ok, err := askYes(ctx, streams, fmt.Sprintf("write %s as %s on %s?", file, diff.Path, hostList(hosts)))
		if err != nil {
			return err
		}
		if !ok {
			return errors.New("not pushed (the answer was no); nothing was changed")
		}
		return nil
	}
	res, err := deploy.PushShared(ctx, opts, deploy.PushRequest{Local: local, Confirm: confirm})
	if res == nil {
		return err
	}
	switch {
	case res.Unchanged:
		fmt.Fprintf(streams.Err, "%s: every host has %s already; nothing pushed\n", name, file)
	case len(res.Pushed) > 0:
		kept := ""
		if len(res.Kept) > 0 {
			kept = "; the copies it replaced are kept in " + res.History
		}
		fmt.Fprintf(streams.Err, "%s: pushed %s to %s%s\n", name, file, hostList(res.Pushed), kept)
	}
	if err != nil && len(res.Pushed) > 0 && res.Diff != nil {
		// Some hosts have the new copy, the others the old: say which.
		var left []string
		for _, h := range res.Diff.Differing() {
			if !slices.Contains(res.Pushed, h) {
				left = append(left, h)
			}
		}
		if len(left) > 0 {
			fmt.Fprintf(streams.Err, "%s: %s still %s the previous copy; push again once the failure below is fixed\n", name, hostList(left), hasHave(len(left)))
		}
	}
	return err
}

type sharedDiffOptions struct {
	file string
}

func newSharedDiffCmd(g *globalOptions, streams IO) *cobra.Command {
	opts := &sharedDiffOptions{}
	cmd := &cobra.Command{
		Use:   "diff STAGE [NAME] [--file FILE]",
		Short: "Compare a local file with each host's copy of a shared file; changes nothing",
		Long: `diff compares the local copy of the shared file NAME with each host's copy, and
shows the unified diff from each distinct host copy to the local file (hosts with
the same copy together, secret values masked). The local copy is --file FILE, or
by default NAME in the directory of slipway.yml (where slipway shared pull puts
it). Without NAME it compares every shared file that has a local copy there.

It takes no lock and changes nothing. It succeeds when every host has the local
copy, and fails (exit 1) when one differs.`,
		Example: `  slipway shared diff production
  slipway shared diff production .env --file .env.production`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return &UserError{Msg: "shared diff needs a stage and, optionally, a shared file, e.g. slipway shared diff production .env"}
			}
			return nil
		},
		ValidArgsFunction: completeSharedArgs(g, true),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSharedDiff(cmd.Context(), g, streams, args[0], args[1:], opts)
		},
	}
	cmd.Flags().StringVarP(&opts.file, "file", "f", "", "the local copy to compare (default: NAME beside slipway.yml)")
	setExitStatus(cmd, ExitOK, ExitFailed, ExitUsage, ExitUnreachable, ExitInterrupted)
	return cmd
}

func runSharedDiff(ctx context.Context, g *globalOptions, streams IO, stage string, names []string, dopts *sharedDiffOptions) error {
	gq := *g
	gq.quiet = true // the diff is the output
	opts, err := loadOptions(&gq, streams, stage, "shared diff "+stage)
	if err != nil {
		return err
	}
	cfg := opts.Config
	var locals []deploy.SharedLocal
	switch {
	case len(names) == 1:
		if err := checkSharedName(cfg, names[0], "NAME"); err != nil {
			return err
		}
		file := dopts.file
		if file == "" {
			file = defaultLocalPath(cfg, names[0])
		}
		if err := checkLocalFile(file, "diff"); err != nil {
			return err
		}
		locals = append(locals, deploy.SharedLocal{Name: names[0], Path: file})
	case dopts.file != "":
		return &UserError{Msg: fmt.Sprintf("--file %s: name the shared file it is a copy of, e.g. slipway shared diff %s .env --file %s", dopts.file, stage, dopts.file)}
	default:
		if len(cfg.Shared.Files) == 0 {
			return noSharedFiles()
		}
		var missing []string
		for _, name := range cfg.Shared.Files {
			file := defaultLocalPath(cfg, name)
			if info, err := os.Stat(file); err != nil || !info.Mode().IsRegular() {
				missing = append(missing, name)
				continue
			}
			locals = append(locals, deploy.SharedLocal{Name: name, Path: file})
		}
		if len(locals) == 0 {
			return &UserError{Msg: fmt.Sprintf("no shared file has a local copy beside %s (%s); name one and its copy: slipway shared diff %s %s --file FILE, or fetch one: slipway shared pull %s %s",
				cfg.File, strings.Join(missing, ", "), stage, missing[0], stage, missing[0])}
		}
		for _, name := range missing {
			fmt.Fprintf(streams.Err, "%s: no local copy %s; not compared\n", name, defaultLocalPath(cfg, name))
		}
	}
	diffs, err := deploy.DiffShared(ctx, opts, locals)
	if err != nil {
		return err
	}
	var differ []string
	for i, d := range diffs {
		if i > 0 {
			fmt.Fprintln(streams.Out)
		}
		printSharedDiff(streams.Out, d)
		if d.Differs() {
			differ = append(differ, d.Name)
		}
	}
	if len(differ) > 0 {
		return fmt.Errorf("stage %s: the hosts' copies of %s differ from the local ones", stage, strings.Join(differ, ", "))
	}
	return nil
}

type sharedPullOptions struct {
	host   string
	output string
	force  bool
}

func newSharedPullCmd(g *globalOptions, streams IO) *cobra.Command {
	opts := &sharedPullOptions{}
	cmd := &cobra.Command{
		Use:   "pull STAGE NAME [--host HOST] [-o FILE]",
		Short: "Fetch one host's copy of a shared file into a local file",
		Long: `pull fetches the shared file NAME from one host of the stage (the first host that
takes releases, or --host) into a local file: -o FILE, or by default NAME in the
directory of slipway.yml (where slipway shared diff looks for it); -o - writes it
to standard output. It never overwrites a file without --force, and writes it
with mode 0600 (it usually holds secrets). It takes no lock and changes nothing
on the host.`,
		Example: `  slipway shared pull production .env -o .env.production
  slipway shared pull production .env --host web2 -o - | grep APP_URL`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 2 {
				return &UserError{Msg: "shared pull needs a stage and a shared file, e.g. slipway shared pull production .env"}
			}
			return nil
		},
		ValidArgsFunction: completeSharedArgs(g, true),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSharedPull(cmd.Context(), g, streams, args[0], args[1], opts)
		},
	}
	f := cmd.Flags()
	f.StringVar(&opts.host, "host", "", "the host to fetch from (default: the first host of the stage that takes releases)")
	f.StringVarP(&opts.output, "output", "o", "", "the local file to write, - for standard output (default: NAME beside slipway.yml)")
	f.BoolVar(&opts.force, "force", false, "overwrite the local file if it exists")
	setExitStatus(cmd, ExitOK, ExitFailed, ExitUsage, ExitUnreachable, ExitInterrupted)
	return cmd
}

func runSharedPull(ctx context.Context, g *globalOptions, streams IO, stage, name string, popts *sharedPullOptions) error {
	gq := *g
	gq.quiet = true
	opts, err := loadOptions(&gq, streams, stage, "shared pull "+stage+" "+name)
	if err != nil {
		return err
	}
	if err := checkSharedName(opts.Config, name, "NAME"); err != nil {
		return err
	}
	from := slices.IndexFunc(opts.Hosts, func(h config.Host) bool {
		if popts.host != "" {
			return h.Name == popts.host || h.Host == popts.host
		}
		return !h.NoRelease
	})
	switch {
	case from < 0 && popts.host != "":
		return &UserError{Msg: fmt.Sprintf("--host %s: not a host of stage %s (among those --hosts and --roles select); its hosts are: %s", popts.host, stage, strings.Join(hostNames(opts.Stage.Hosts), ", "))}
	case from < 0:
		return &UserError{Msg: fmt.Sprintf("none of the selected hosts of stage %s takes releases, so none has shared files", stage)}
	case opts.Hosts[from].NoRelease:
		return &UserError{Msg: fmt.Sprintf("%s takes no releases (no_release: true), so it has no shared files; pick another with --host", opts.Hosts[from].Name)}
	}
	opts.Hosts = opts.Hosts[from : from+1]
	if popts.output == "-" {
		_, err := deploy.PullShared(ctx, opts, name, streams.Out)
		return err
	}
	out := popts.output
	if out == "" {
		out = defaultLocalPath(opts.Config, name)
	}
	if _, err := os.Lstat(out); err == nil && !popts.force {
		return &UserError{Msg: fmt.Sprintf("%s exists; pass --force to overwrite it, or -o another file", out)}
	}
	host, err := pullInto(ctx, opts, name, out, popts.force)
	if err != nil {
		return err
	}
	fmt.Fprintf(streams.Err, "%s: pulled %s from %s into %s (mode 0600)\n", name, opts.Layout().SharedPath(name), host, out)
	return nil
}

// pullInto writes the host's copy to a temporary file beside out, synced,
// then puts it in place: renamed over out with force, else linked to it,
// which fails if a file appeared there meanwhile. A failed pull leaves
// nothing behind.
func pullInto(ctx context.Context, opts deploy.Options, name, out string, force bool) (string, error) {
	dir := filepath.Dir(out)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(out)+".slipway-pull-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	// CreateTemp makes it 0600 already; say so where it matters.
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return "", err
	}
	host, err := deploy.PullShared(ctx, opts, name, tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", err
	}
	if force {
		return host, os.Rename(tmp.Name(), out)
	}
	if err := os.Link(tmp.Name(), out); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return "", &UserError{Msg: fmt.Sprintf("%s exists; pass --force to overwrite it, or -o another file", out)}
		}
		return "", err
	}
	return host, nil
}

// checkSharedName refuses a name that is not one of shared.files, listing
// them.
func checkSharedName(cfg *config.Config, name, what string) error {
	if len(cfg.Shared.Files) == 0 {
		return noSharedFiles()
	}
	if cfg.Shared.HasFile(name) {
		return nil
	}
	return &UserError{Msg: fmt.Sprintf("%q is not a shared file of %s; shared.files: %s (give one as %s)", name, cfg.File, strings.Join(cfg.Shared.Files, ", "), what)}
}

func noSharedFiles() error {
	return &UserError{Msg: "slipway.yml lists no shared files; add them first, e.g. shared: {files: [.env]}"}
}

// checkLocalFile refuses a local file that is missing or not a regular
// file, before any host is touched.
func checkLocalFile(file, verb string) error {
	info, err := os.Stat(file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if verb == "diff" {
			return &UserError{Msg: fmt.Sprintf("no local copy %s to compare; pass --file FILE, or fetch a host's copy there first with slipway shared pull", file)}
		}
		return &UserError{Msg: fmt.Sprintf("no file %s to %s", file, verb)}
	case err != nil:
		return err
	case !info.Mode().IsRegular():
		return &UserError{Msg: fmt.Sprintf("%s is not a regular file", file)}
	}
	return nil
}

// defaultLocalPath is where diff and pull keep a shared file's local copy
// by default: NAME in the directory of slipway.yml.
func defaultLocalPath(cfg *config.Config, name string) string {
	return filepath.Join(filepath.Dir(cfg.File), filepath.FromSlash(name))
}

// printSharedDiff shows how each group of hosts' copy differs from the
// local file, the differing groups first, as diff -u would, then which
// hosts have the local copy already.
func printSharedDiff(w io.Writer, d *deploy.SharedDiff) {
	var same []string
	for _, c := range d.Copies {
		hosts := strings.Join(c.Hosts, ", ")
		switch {
		case c.Same:
			same = append(same, c.Hosts...)
		case c.Diff == nil:
			fmt.Fprintf(w, "%s: %s differs from %s (%s)\n", hosts, d.Path, d.Local, c.Note)
		default:
			from := d.Path
			if c.Sum == "" {
				from += " (" + c.Note + ")"
			}
			fmt.Fprintf(w, "--- %s: %s\n+++ %s\n", hosts, sanitizeLine(from), sanitizeLine(d.Local))
			for _, line := range c.Diff {
				fmt.Fprintln(w, sanitizeLine(line))
			}
		}
	}
	total := len(same) + len(d.Differing())
	switch {
	case len(same) == total:
		fmt.Fprintf(w, "%s: %s on %s is the same as %s\n", d.Name, d.Path, hostCountOf(total), d.Local)
	case len(same) > 0:
		fmt.Fprintf(w, "%s: %d of %s differ from %s; %s %s the same\n", d.Name, total-len(same), plural(total, "host"), d.Local, hostList(same), hasHave(len(same)))
	default:
		fmt.Fprintf(w, "%s: differs from %s on %s\n", d.Name, d.Local, hostCountOf(total))
	}
}

// sanitizeLine keeps a line of a file from driving the terminal: control
// characters other than tab show as '?'.
func sanitizeLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\t' {
			return r
		}
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return '?'
		}
		return r
	}, s)
}

// askYes asks question at the terminal and reports whether the answer was
// yes. An interrupt while it waits ends the wait.
func askYes(ctx context.Context, streams IO, question string) (bool, error) {
	fmt.Fprintf(streams.Err, "%s [y/N] ", question)
	answer := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(streams.In).ReadString('\n')
		answer <- line
	}()
	select {
	case <-ctx.Done():
		fmt.Fprintln(streams.Err)
		return false, ctx.Err()
	case line := <-answer:
		switch strings.ToLower(strings.TrimSpace(line)) {
		case "y", "yes":
			return true, nil
		}
		return false, nil
	}
}

// terminalReader is an input that knows whether it is a terminal (a test's
// stand-in for one).
type terminalReader interface{ IsTerminal() bool }

// stdinTerminal reports whether streams.In is a terminal a question can be
// asked at.
func stdinTerminal(streams IO) bool {
	switch in := streams.In.(type) {
	case terminalReader:
		return in.IsTerminal()
	case *os.File:
		return term.IsTerminal(int(in.Fd()))
	}
	return false
}

// completeSharedArgs completes the stage, then a shared file (withName) or
// a local file.
func completeSharedArgs(g *globalOptions, withName bool) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	stages := completeStages(g)
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		switch {
		case len(args) == 0:
			return stages(cmd, args, toComplete)
		case len(args) == 1 && withName:
			cfg, err := config.Load(g.configFile)
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			return cfg.Shared.Files, cobra.ShellCompDirectiveNoFileComp
		case len(args) == 1:
			return nil, cobra.ShellCompDirectiveDefault
		}
		return nil, cobra.ShellCompDirectiveNoFileComp
	}
}

func hostNames(hosts []config.Host) []string {
	names := make([]string, len(hosts))
	for i, h := range hosts {
		names[i] = h.Name
	}
	return names
}

// hostList names hosts for a sentence: "web1", "web1 and web2", "web1,
// web2 and web3".
func hostList(hosts []string) string {
	switch len(hosts) {
	case 0:
		return "no host"
	case 1:
		return hosts[0]
	}
	return strings.Join(hosts[:len(hosts)-1], ", ") + " and " + hosts[len(hosts)-1]
}

func hostCountOf(n int) string {
	if n == 1 {
		return "the host"
	}
	return fmt.Sprintf("all %d hosts", n)
}

func isAre(n int) string {
	if n == 1 {
		return "is"
	}
	return "are"
}

func hasHave(n int) string {
	if n == 1 {
		return "has"
	}
	return "have"
}
