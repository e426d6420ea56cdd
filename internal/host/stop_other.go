//go:build !unix

package host

import (
	"fmt"
	"os"
	"os/exec"
)

// setGroup does nothing: without process groups (Windows), a cancelled
// command's own process is killed, and processes it started may outlive
// it.
func setGroup(*exec.Cmd) {}

// group is the command's process alone.
type group struct {
	leader *os.Process
	gone   <-chan struct{}
}

func newGroup(leader *os.Process, gone <-chan struct{}) group {
	return group{leader: leader, gone: gone}
}

// terminate kills the process: Windows has no SIGTERM to send.
func (g group) terminate() { _ = g.leader.Kill() }

func (g group) kill() { _ = g.leader.Kill() }

func (g group) running() (bool, string) {
	select {
	case <-g.gone:
		return false, ""
	default:
		return true, fmt.Sprintf("process %d", g.leader.Pid)
	}
}
