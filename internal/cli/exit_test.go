package cli

import (
	"bytes"
	"context"
	"maps"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestHelpListsTheExitCodesOfEachCommand reads the EXIT STATUS section of
// every command's help: exactly the codes the command can return, each with
// its meaning from exitMeaning.
func TestHelpListsTheExitCodesOfEachCommand(t *testing.T) {
	// Every command can fail (1) and be called wrongly (2). Those that
	// connect can find a host unreachable (4) and be interrupted (129
	// SIGHUP, 130 SIGINT, 141 closed output, 143 SIGTERM); those that take
	// the deploy lock can find it held (3), and unlock refuses a live one
	// (3); only deploy and rollback
	// switch, so only they can fail after the switch (5), and only a
	// deploy's rollout switches back (6). ssh replaces itself with the ssh
	// client, whose exit status is the shell's.
	interrupted := []int{ExitHangup, ExitInterrupted, ExitOutputClosed, ExitTerminated}
	with := func(codes ...int) []int { return append(codes, interrupted...) }
	connects := with(ExitOK, ExitFailed, ExitUsage, ExitUnreachable)
	want := map[string][]int{
		"deploy":   with(ExitOK, ExitFailed, ExitUsage, ExitLocked, ExitUnreachable, ExitAfterSwitch, ExitRolledBack),
		"rollback": with(ExitOK, ExitFailed, ExitUsage, ExitLocked, ExitUnreachable, ExitAfterSwitch),
		"cleanup":  with(ExitOK, ExitFailed, ExitUsage, ExitLocked, ExitUnreachable),
		"releases": connects,
		"setup":    connects,
		"check":    connects,
		"unlock":   with(ExitOK, ExitFailed, ExitUsage, ExitLocked, ExitUnreachable),
		"lock":     with(ExitOK, ExitFailed, ExitUsage, ExitLocked, ExitUnreachable),
		"plan":     connects,
		"exec":     connects,
		"shared":   with(ExitOK, ExitFailed, ExitUsage, ExitLocked, ExitUnreachable), // push, diff, pull: cmd_shared_test.go
		"diff":     connects,
		// status reports an unreachable host in its output and fails with 1.
		"status":  with(ExitOK, ExitFailed, ExitUsage),
		"init":    {ExitOK, ExitFailed, ExitUsage},
		"ssh":     {ExitFailed, ExitUsage},
		"version": {ExitOK, ExitUsage},
		// artifacts only reads and writes the cache on this machine.
		"artifacts": {ExitOK, ExitFailed, ExitUsage},
	}
	var commands []string
	for _, cmd := range newRootCmd(IO{}).Commands() {
		commands = append(commands, cmd.Name())
	}
	if got := slices.Sorted(maps.Keys(want)); !slices.Equal(slices.Sorted(slices.Values(commands)), got) {
		t.Fatalf("commands %v; this test knows the exit codes of %v", commands, got)
	}
	for name, codes := range want {
		var out, errOut bytes.Buffer
		if code := Main(context.Background(), []string{name, "--help"}, IO{In: strings.NewReader(""), Out: &out, Err: &errOut}); code != ExitOK {
			t.Fatalf("%s --help: exit %d\n%s", name, code, errOut.String())
		}
		_, section, found := strings.Cut(out.String(), "\nEXIT STATUS\n")
		if !found {
			t.Errorf("%s --help has no EXIT STATUS section:\n%s", name, out.String())
			continue
		}
		section, _, _ = strings.Cut(section, "\n\n")
		var listed []int
		for _, line := range strings.Split(section, "\n") {
			number, meaning, _ := strings.Cut(strings.TrimSpace(line), " ")
			code, err := strconv.Atoi(number)
			if err != nil {
				t.Errorf("%s --help: EXIT STATUS line %q does not start with a code", name, line)
				continue
			}
			if meaning = strings.TrimSpace(meaning); meaning != exitMeaning(code) {
				t.Errorf("%s --help: exit %d means %q, want %q", name, code, meaning, exitMeaning(code))
			}
			listed = append(listed, code)
		}
		if !slices.Equal(listed, codes) {
			t.Errorf("%s --help lists exit codes %v, want %v", name, listed, codes)
		}
	}
}
