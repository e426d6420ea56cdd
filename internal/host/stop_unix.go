//go:build unix

package host

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// setGroup makes c the leader of a process group of its own, which holds
// every process it starts (unless one leaves it with setsid or setpgid).
func setGroup(c *exec.Cmd) {
	if c.SysProcAttr == nil {
		c.SysProcAttr = &syscall.SysProcAttr{}
	}
	c.SysProcAttr.Setpgid = true
}

// group is the process group of a command: its id is the leader's pid.
type group struct{ id int }

func newGroup(leader *os.Process, _ <-chan struct{}) group { return group{id: leader.Pid} }

// terminate sends SIGTERM to the group, and SIGCONT so that a stopped
// process gets it too.
func (g group) terminate() {
	_ = syscall.Kill(-g.id, syscall.SIGTERM)
	_ = syscall.Kill(-g.id, syscall.SIGCONT)
}

func (g group) kill() { _ = syscall.Kill(-g.id, syscall.SIGKILL) }

// running reports whether a process of the group is alive, and which. A
// zombie does not count: it has exited, and is gone once its parent (or
// init, for an orphan) reaps it, which a container's init may never do.
// Where /proc is missing (macOS), any process of the group counts.
func (g group) running() (bool, string) {
	if err := syscall.Kill(-g.id, 0); errors.Is(err, syscall.ESRCH) {
		return false, ""
	}
	members, err := liveMembers(g.id)
	if err != nil {
		return true, fmt.Sprintf("process group %d", g.id)
	}
	if len(members) == 0 {
		return false, ""
	}
	return true, fmt.Sprintf("process group %d: %s", g.id, strings.Join(members, ", "))
}

// liveMembers lists the processes of group id that are not zombies, as
// "name (pid N)", from /proc.
func liveMembers(id int) ([]string, error) {
	dir, err := os.Open("/proc")
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	var members []string
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + name + "/stat")
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces and ")".
		open, closing := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
		if open < 0 || closing < open {
			continue
		}
		fields := strings.Fields(string(stat[closing+1:]))
		if len(fields) < 3 || fields[0] == "Z" || fields[0] == "X" || fields[2] != strconv.Itoa(id) {
			continue
		}
		members = append(members, fmt.Sprintf("%s (pid %d)", stat[open+1:closing], pid))
	}
	return members, nil
}
