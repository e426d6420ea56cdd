// Package cli is slipway's command line: one file per command
// (cmd_<name>.go) with its options and its runX function over the domain
// packages, and shared files for what several commands use. No deploy logic
// lives here.
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/deploy"
)

// IO is where a command reads and writes; tests capture it.
type IO struct {
	In  io.Reader
	Out io.Writer // results: tables, JSON
	Err io.Writer // progress, warnings, errors
	// ErrTerminal says Err is a terminal: progress is then drawn live,
	// in colour unless NO_COLOR is set.
	ErrTerminal bool

	// interrupts is the run's interruption, set by Main; nil when a test
	// calls a runX directly.
	interrupts *interrupts
}

// Main runs slipway with args and returns the exit code.
//
// SIGINT, SIGTERM, SIGHUP and a closed stdout or stderr interrupt the run:
// its context is cancelled with the *Interrupt as the cause, every command
// it started is stopped, and the deploy cleans up (undo, unlock) before
// Main returns the interrupt's exit code. A second signal exits at once.
func Main(ctx context.Context, args []string, streams IO) int {
	if f, ok := streams.Err.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		streams.ErrTerminal = true
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	in := &interrupts{cancel: cancel, exit: os.Exit}
	streams.Out = in.watch(streams.Out, "stdout")
	streams.Err = in.watch(streams.Err, "stderr")
	in.errOut, streams.interrupts = streams.Err, in
	defer in.notify()()

	root := newRootCmd(streams)
	root.SetArgs(args)
	err := in.explain(root.ExecuteContext(ctx))
	var interrupted *interruptedError
	switch {
	case errors.As(err, &interrupted):
		// A run that only lost its reader did nothing wrong: its exit
		// code says the output was cut short.
		if interrupted.err != nil {
			fmt.Fprintf(streams.Err, "error: %v\n", err)
		}
	case err != nil:
		printError(streams.Err, err)
	}
	return exitCode(err)
}

// interrupts turns signals and a closed stdout or stderr into the
// interruption of a run.
type interrupts struct {
	cancel context.CancelCauseFunc
	errOut io.Writer // stderr, for the notices
	exit   func(code int)

	mu      sync.Mutex
	first   *Interrupt
	signals int // signals seen since the first interrupt
	// live is the live terminal view, when one draws on stderr: the
	// notice then goes above it, or its redraw would cover the notice.
	live deploy.Observer
}

// drawnBy routes the notices through a live view.
func (in *interrupts) drawnBy(live deploy.Observer) {
	if in == nil {
		return
	}
	in.mu.Lock()
	in.live = live
	in.mu.Unlock()
}

// notify starts turning SIGINT, SIGTERM and SIGHUP (those not ignored)
// into interrupts, and returns the function that stops it.
//
// SIGPIPE is notified too, only so that a write to a closed stdout or
// stderr fails with EPIPE (which watch turns into an interrupt) instead of
// killing slipway on the spot, its lock held and its temporary directory
// left. The signal itself says nothing: writes to any closed pipe raise it.
func (in *interrupts) notify() (stop func()) {
	signals := make(chan os.Signal, 4)
	for _, sig := range []os.Signal{os.Interrupt, syscall.SIGTERM, syscall.SIGHUP} {
		// A signal ignored when slipway started stays ignored: nohup
		// ignores SIGHUP, a shell ignores SIGINT for a background job
		// of a script, and Notify would catch it again.
		if !signal.Ignored(sig) {
			signal.Notify(signals, sig)
		}
	}
	pipes := make(chan os.Signal, 1)
	signal.Notify(pipes, syscall.SIGPIPE)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case sig := <-signals:
				in.signal(signalInterrupt(sig))
			case <-pipes:
			case <-done:
				return
			}
		}
	}()
	return func() {
		signal.Stop(signals)
		signal.Stop(pipes)
		close(done)
	}
}

// signal handles a signal: the first interrupts the run, the next (after
// any interrupt) exits at once, with the first interrupt's code.
func (in *interrupts) signal(i *Interrupt) {
	in.mu.Lock()
	first := in.first
	if first == nil {
		in.first = i
	}
	in.mu.Unlock()
	if first == nil {
		in.interrupted(i)
		return
	}
	fmt.Fprintf(in.errOut, "interrupted again (%s): exiting at once, before the cleanup is done; this run may leave\n%s", i.By, leftBehind)
	in.exit(first.Code)
}

// leftBehind is what a run exiting in the middle may leave, and how each
// thing gets cleaned up.
const leftBehind = `  - the deploy lock, if this run held it: the next deploy from this machine takes over
    a lock whose holder is gone; from another machine, run slipway unlock STAGE
  - a release being prepared: the next deploy removes it
  - its temporary copy of the source ($TMPDIR/slipway-export-*, slipway-build-*): delete it
  - a command it started that ignores SIGTERM: it got SIGTERM, not yet SIGKILL
`

// closed handles a closed stdout or stderr: an interrupt, unless the run
// already is interrupted (closed output is then no news, and never counts
// as a second interrupt).
func (in *interrupts) closed(stream string) {
	i := outputClosed(stream)
	in.mu.Lock()
	first := in.first
	if first == nil {
		in.first = i
	}
	in.mu.Unlock()
	if first == nil {
		in.interrupted(i)
	}
}

func (in *interrupts) interrupted(i *Interrupt) {
	// The notice first: once cancelled, the run may end and exit before
	// a notice written after it.
	notice := fmt.Sprintf("%s: stopping every command this run started, then cleaning up; interrupt again to exit at once", i)
	in.mu.Lock()
	live := in.live
	in.mu.Unlock()
	if live != nil {
		live.Event(deploy.Event{Kind: deploy.Warning, Line: notice})
	} else {
		fmt.Fprintln(in.errOut, notice)
	}
	in.cancel(i)
}

// cause is the run's interrupt, or nil.
func (in *interrupts) cause() *Interrupt {
	if in == nil {
		return nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.first
}

// explain makes an interrupted run's error an *interruptedError, so it
// prints as the interrupt and exits with its code. A run that succeeded
// all the same stays a success after a signal (it came too late to stop
// anything), but not after a closed output: what it printed was lost.
func (in *interrupts) explain(err error) error {
	i := in.cause()
	if i == nil || (err == nil && i.Code != ExitOutputClosed) {
		return err
	}
	return &interruptedError{interrupt: i, err: err}
}

// watch returns w, if it is a file (stdout, stderr), as a writer that
// turns a closed stream into an interrupt; other writers are returned as
// they are.
func (in *interrupts) watch(w io.Writer, stream string) io.Writer {
	f, ok := w.(*os.File)
	if !ok {
		return w
	}
	return &watchedOutput{f: f, onClose: func() { in.closed(stream) }}
}

// watchedOutput writes to stdout or stderr. The first write that finds it
// closed (its reader quit) interrupts the run, and from then on output to
// it is dropped: nothing fails merely because nobody reads it any more.
type watchedOutput struct {
	f       *os.File
	onClose func()
	closed  atomic.Bool
}

func (w *watchedOutput) Write(p []byte) (int, error) {
	if w.closed.Load() {
		return len(p), nil
	}
	n, err := w.f.Write(p)
	if err != nil && brokenPipe(err) {
		if !w.closed.Swap(true) {
			w.onClose()
		}
		return len(p), nil
	}
	return n, err
}

// brokenPipe reports whether err is a write to a pipe whose reader is
// gone: EPIPE; on Windows, ERROR_BROKEN_PIPE (109) or ERROR_NO_DATA (232).
func brokenPipe(err error) bool {
	if errors.Is(err, syscall.EPIPE) {
		return true
	}
	var errno syscall.Errno
	return runtime.GOOS == "windows" && errors.As(err, &errno) && (errno == 109 || errno == 232)
}

func newRootCmd(streams IO) *cobra.Command {
	g := &globalOptions{configFile: "slipway.yml"}
	root := &cobra.Command{
		Use:   "slipway",
		Short: "Atomic, zero-downtime releases to one server or a fleet over SSH",
		Long: `slipway ships a web application to one server or a fleet over SSH. Each deploy
builds a complete release beside the live one, links shared data into it, and goes
live by one atomic rename of the current symlink; rollback is the same switch back.`,
		Version:       versionLine(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	// --version prints what slipway version does; declared here so that
	// cobra does not take -v, which is --verbose.
	root.Flags().Bool("version", false, "print slipway's version")
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetIn(streams.In)
	root.SetOut(streams.Out)
	root.SetErr(streams.Err)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return &UserError{Msg: err.Error()} })
	pf := root.PersistentFlags()
	pf.VarP(configFlag{g}, "config", "c", "configuration file; without it, the nearest slipway.yml from here up to the repository root")
	pf.BoolVar(&g.acceptNewHostKeys, "accept-new-host-keys", false, "record host keys not yet in known_hosts (a changed key is always refused)")
	pf.StringSliceVar(&g.hosts, "hosts", nil, "only these hosts of the stage (comma-separated names as written in the config)")
	pf.StringSliceVar(&g.roles, "roles", nil, "only the hosts with one of these roles (comma-separated)")
	pf.IntVar(&g.parallel, "parallel", DefaultParallel, "hosts worked on at once")
	pf.BoolVarP(&g.quiet, "quiet", "q", false, "print only errors, warnings and the result")
	pf.BoolVarP(&g.verbose, "verbose", "v", false, "show each remote command and what it printed")
	root.AddCommand(
		newDeployCmd(g, streams),
		newRollbackCmd(g, streams),
		newReleasesCmd(g, streams),
		newStatusCmd(g, streams),
		newSetupCmd(g, streams),
		newCheckCmd(g, streams),
		newUnlockCmd(g, streams),
		newLockCmd(g, streams),
		newCleanupCmd(g, streams),
		newVersionCmd(streams),
		newInitCmd(g, streams),
		newPlanCmd(g, streams),
		newExecCmd(g, streams),
		newSSHCmd(g, streams),
		newSharedCmd(g, streams),
		newArtifactsCmd(streams),
		newDiffCmd(g, streams),
	)
	for _, cmd := range root.Commands() {
		if strings.Contains(cmd.Use, "STAGE") {
			cmd.ValidArgsFunction = completeStages(g)
		}
	}
	return root
}

// completeStages completes a stage name from the configuration file.
func completeStages(g *globalOptions) func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
	return func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		file, err := g.configPath()
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		cfg, err := config.Load(file)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return cfg.StageNames(), cobra.ShellCompDirectiveNoFileComp
	}
}
