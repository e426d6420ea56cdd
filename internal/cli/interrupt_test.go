package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/slipway-deploy/slipway/internal/deploy"
	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/ui"
)

// cancelled is what a run's pipeline returns when its context is
// cancelled in a hook: the host's error wrapping context.Canceled.
func cancelled() error {
	return errors.Join(&deploy.HostError{Host: "local", Step: "before_switch: sleep 30", Err: context.Canceled})
}

func TestInterruptExitCodes(t *testing.T) {
	for _, tc := range []struct {
		interrupt *Interrupt
		by        string
		code      int
	}{
		{signalInterrupt(os.Interrupt), "SIGINT", 130},
		{signalInterrupt(syscall.SIGTERM), "SIGTERM", 143},
		{signalInterrupt(syscall.SIGHUP), "SIGHUP", 129},
		{outputClosed("stdout"), "stdout closed", 141},
	} {
		err := &interruptedError{interrupt: tc.interrupt, err: cancelled()}
		if tc.interrupt.By != tc.by || exitCode(err) != tc.code || !isInterrupt(tc.code) {
			t.Errorf("%s: interrupt %+v, exit %d, want %s and %d", tc.by, tc.interrupt, exitCode(err), tc.by, tc.code)
		}
		if want := "interrupted (" + tc.by + ")"; err.Error() != want {
			t.Errorf("error %q, want %q", err, want)
		}
	}
	// Without a known interrupt (a runX called directly), a cancelled run
	// is a Ctrl-C.
	if code := exitCode(cancelled()); code != ExitInterrupted {
		t.Errorf("cancelled run without an interrupt: exit %d", code)
	}
	// The release went live before the interrupt: that matters more.
	switched := &interruptedError{interrupt: signalInterrupt(syscall.SIGTERM), err: &deploy.SwitchedError{ReleaseID: "1", Err: context.Canceled}}
	if code := exitCode(switched); code != ExitAfterSwitch {
		t.Errorf("interrupted after the switch: exit %d, want %d", code, ExitAfterSwitch)
	}
}

// TestInterruptedErrorKeepsWhatIsNotTheCancel: the cancellations are said
// by the interrupt; a failed cleanup and processes still running are not,
// so they are printed under it.
func TestInterruptedErrorKeepsWhatIsNotTheCancel(t *testing.T) {
	still := &deploy.HostError{Host: "local", Step: "before_switch: sleep 30", Err: &host.StillRunningError{Host: "local", What: "process group 42: sleep (pid 43)", Err: context.Canceled}}
	cleanup := &deploy.CleanupError{Err: errors.New("local: finish unlock: disk full")}
	err := &interruptedError{interrupt: signalInterrupt(syscall.SIGTERM), err: errors.Join(still, cancelled(), cleanup)}
	text := err.Error()
	if !strings.HasPrefix(text, "interrupted (SIGTERM); besides:\n  ") || !strings.Contains(text, "sleep (pid 43)") || !strings.Contains(text, "disk full") {
		t.Errorf("error:\n%s", text)
	}
	if strings.Contains(text, "context canceled") {
		t.Errorf("error says context canceled:\n%s", text)
	}
	var stillRunning *host.StillRunningError
	if !errors.As(err, &stillRunning) || exitCode(err) != ExitTerminated {
		t.Errorf("the StillRunningError is not found in %v (exit %d)", err, exitCode(err))
	}
}

// fakeInterrupts is an interrupts whose exit is recorded, not made.
func fakeInterrupts() (*interrupts, context.Context, *bytes.Buffer, *[]int) {
	ctx, cancel := context.WithCancelCause(context.Background())
	var errOut bytes.Buffer
	var exits []int
	return &interrupts{cancel: cancel, errOut: &errOut, exit: func(code int) { exits = append(exits, code) }}, ctx, &errOut, &exits
}

func TestFirstSignalCancelsSecondExits(t *testing.T) {
	in, ctx, errOut, exits := fakeInterrupts()
	in.signal(signalInterrupt(syscall.SIGTERM))
	var cause *Interrupt
	if !errors.As(context.Cause(ctx), &cause) || cause.Code != ExitTerminated {
		t.Fatalf("the run's context: err %v, cause %v", ctx.Err(), context.Cause(ctx))
	}
	want := "interrupted (SIGTERM): stopping every command this run started, then cleaning up; interrupt again to exit at once\n"
	if errOut.String() != want || len(*exits) != 0 {
		t.Fatalf("after one signal: exits %v, stderr %q", *exits, errOut.String())
	}
	// A closed output while stopping is no second interrupt.
	in.closed("stdout")
	if len(*exits) != 0 || errOut.String() != want {
		t.Fatalf("a closed output after the signal: exits %v, stderr %q", *exits, errOut.String())
	}
	in.signal(signalInterrupt(os.Interrupt))
	if fmt.Sprint(*exits) != "[143]" {
		t.Errorf("second signal: exits %v, want [143] (the first interrupt's code)", *exits)
	}
	for _, part := range []string{"interrupted again (SIGINT): exiting at once", "deploy lock", "takes over", "slipway unlock STAGE", "the next deploy removes it"} {
		if !strings.Contains(errOut.String(), part) {
			t.Errorf("second signal: stderr lacks %q:\n%s", part, errOut.String())
		}
	}
}

// TestClosedOutputInterrupts writes to a pipe whose reader is gone, as
// stdout is under `slipway … | head -3`: the run is interrupted, with exit
// 141, and the output is dropped from then on without failing the writer.
func TestClosedOutputInterrupts(t *testing.T) {
	in, ctx, errOut, exits := fakeInterrupts()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	out := in.watch(w, "stdout")
	if n, err := out.Write([]byte("first\n")); n != 6 || err != nil {
		t.Fatalf("write to an open pipe: %d, %v", n, err)
	}
	r.Close()
	for range 2 {
		if n, err := out.Write([]byte("lost\n")); n != 5 || err != nil {
			t.Errorf("write after the reader went away: %d, %v; want it dropped quietly", n, err)
		}
	}
	var cause *Interrupt
	if !errors.As(context.Cause(ctx), &cause) || cause.Code != ExitOutputClosed || cause.By != "stdout closed" {
		t.Fatalf("cause %v, want stdout closed", context.Cause(ctx))
	}
	if strings.Count(errOut.String(), "interrupted (stdout closed): stopping") != 1 || len(*exits) != 0 {
		t.Errorf("exits %v, stderr %q", *exits, errOut.String())
	}
	// The run succeeded otherwise: its output was lost all the same.
	if code := exitCode(in.explain(nil)); code != ExitOutputClosed {
		t.Errorf("a run whose output was closed exits %d, want %d", code, ExitOutputClosed)
	}
	// A writer that is not a file (a test's buffer) is left alone.
	var buf bytes.Buffer
	if in.watch(&buf, "stdout") != &buf {
		t.Error("a buffer was wrapped")
	}
}

// TestSignalAfterSuccessIsSuccess: a signal that came after the work was
// done stopped nothing; the run succeeded.
func TestSignalAfterSuccessIsSuccess(t *testing.T) {
	in, _, _, _ := fakeInterrupts()
	in.signal(signalInterrupt(os.Interrupt))
	if err := in.explain(nil); err != nil {
		t.Errorf("a successful run after a signal: %v", err)
	}
	if code := exitCode(in.explain(cancelled())); code != ExitInterrupted {
		t.Errorf("a cancelled run after SIGINT: exit %d", code)
	}
}

func TestJSONRunFinishedOfAnInterruptedRun(t *testing.T) {
	in, _, _, _ := fakeInterrupts()
	in.signal(signalInterrupt(syscall.SIGHUP))
	var out bytes.Buffer
	s := jsonStream{j: ui.NewJSON(&out), interrupts: in}
	s.finished(&deploy.Result{ReleaseID: "20260101000000"}, cancelled())
	var e ui.JSONEvent
	if err := json.Unmarshal(out.Bytes(), &e); err != nil {
		t.Fatal(err)
	}
	if e.Type != "run_finished" || e.Outcome != "interrupted" || e.ExitCode == nil || *e.ExitCode != ExitHangup || e.Error != "interrupted (SIGHUP)" {
		t.Errorf("run_finished %s", out.String())
	}
}
