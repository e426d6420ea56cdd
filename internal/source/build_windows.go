package source

import (
	"os"
	"os/exec"
	"syscall"
)

// shellCommand runs a build command with the platform's shell, cmd.exe /C
// (%ComSpec%). The command line is given whole: cmd.exe does not parse its
// arguments the way Go quotes them, and /S makes it run exactly what is
// between the outer quotes. Windows has no process groups, so cancelling a
// build kills this cmd.exe process only (host.RunGroup); a program it
// started may run on.
func shellCommand(command string) *exec.Cmd {
	shell := os.Getenv("ComSpec")
	if shell == "" {
		shell = "cmd.exe"
	}
	c := exec.Command(shell)
	c.SysProcAttr = &syscall.SysProcAttr{CmdLine: syscall.EscapeArg(shell) + ` /d /s /c "` + command + `"`}
	return c
}
