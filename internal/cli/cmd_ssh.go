package cli

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/slipway-deploy/slipway/internal/shell"
)

func newSSHCmd(g *globalOptions, streams IO) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "ssh STAGE [HOST]",
		Short: "Open an interactive shell in the live release of a host (the first one by default)",
		Long: `Opens an interactive login shell in the live release of a host of the stage: the
first host, or the one named. slipway hands the terminal to the system's ssh client
(for a local host, to sh), so once it has, the exit status is the shell's, or 255
when ssh cannot connect; the codes below are slipway's own, before that.`,
		Example: `  slipway ssh production
  slipway ssh production web2`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runSSH(g, streams, args)
		},
	}
	setExitStatus(cmd, ExitFailed, ExitUsage)
	return cmd
}

// runSSH replaces slipway with the system's ssh client (or a local shell),
// which handles the terminal; it checks host keys the same strict way.
func runSSH(g *globalOptions, streams IO, args []string) error {
	opts, err := loadOptions(g, streams, args[0], "ssh "+args[0])
	if err != nil {
		return err
	}
	h := opts.Hosts[0]
	if len(args) == 2 {
		found := false
		for _, c := range opts.Hosts {
			if c.Name == args[1] || c.Host == args[1] {
				h, found = c, true
			}
		}
		if !found {
			return &UserError{Msg: fmt.Sprintf("%q is not a host of stage %s", args[1], args[0])}
		}
	}
	current := opts.Layout().CurrentLink()
	shellCmd := "cd -- " + shell.Quote(current) + " && exec \"${SHELL:-/bin/sh}\" -l"
	if h.Local {
		return execv("/bin/sh", []string{"sh", "-c", shellCmd})
	}
	sshPath, err := exec.LookPath("ssh")
	if err != nil {
		return &UserError{Msg: "slipway ssh uses the ssh client, which is not installed here"}
	}
	argv := []string{"ssh", "-t"}
	// slipway reads $HOME/.ssh/config; the ssh client would read the
	// passwd entry's home instead, so hand it the same file.
	if home, err := os.UserHomeDir(); err == nil {
		if cfg := filepath.Join(home, ".ssh", "config"); fileExists(cfg) {
			argv = append(argv, "-F", cfg)
		}
	}
	if h.Port != 0 {
		argv = append(argv, "-p", strconv.Itoa(h.Port))
	}
	target := h.Host
	if h.User != "" {
		target = h.User + "@" + h.Host
	}
	argv = append(argv, "--", target, shellCmd)
	fmt.Fprintf(streams.Err, "%s: %s\n", h.Name, strings.Join(argv, " "))
	return execv(sshPath, argv)
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func execv(path string, argv []string) error {
	return syscall.Exec(path, argv, os.Environ())
}
