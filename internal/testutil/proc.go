package testutil

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Process is a live (not zombie) process of a host, seen in /proc.
type Process struct {
	PID  int
	Name string // the program's name, as /proc/PID/stat gives it
}

// IsSSHD reports whether p is sshd: the listener, or a program serving one
// connection (sshd, or from OpenSSH 9.8 on sshd-session and sshd-auth).
func (p Process) IsSSHD() bool {
	return p.Name == "sshd" || p.Name == "sshd-session" || p.Name == "sshd-auth"
}

// processesInMountNamespace lists the live processes whose mount namespace
// is nsLink (the target of /proc/PID/ns/mnt, "mnt:[4026532...]"). A
// namespace's number can be reused once the namespace is gone; the caller
// keeps it alive by holding it open.
func processesInMountNamespace(nsLink string) ([]Process, error) {
	dir, err := os.Open("/proc")
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	var procs []Process
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		// Errors mean the process ended meanwhile, or is a zombie (whose
		// namespaces are already released).
		link, err := os.Readlink("/proc/" + name + "/ns/mnt")
		if err != nil || link != nsLink {
			continue
		}
		comm, alive := processState(pid)
		if alive {
			procs = append(procs, Process{PID: pid, Name: comm})
		}
	}
	return procs, nil
}

// processState returns the command name of pid and whether it is alive,
// that is exists and is not a zombie.
func processState(pid int) (comm string, alive bool) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return "", false
	}
	// pid (comm) state ...; comm may itself hold parentheses and spaces.
	s := string(stat)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open || closing+2 >= len(s) {
		return "", false
	}
	return s[open+1 : closing], s[closing+2] != 'Z' && s[closing+2] != 'X'
}

// killUntilGone sends SIGKILL to the processes that match, again and again
// (a dying sshd listener may still fork), until none is left or the timeout
// passes.
func killUntilGone(nsLink string, match func(Process) bool, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		procs, err := processesInMountNamespace(nsLink)
		if err != nil {
			return err
		}
		var left []Process
		for _, p := range procs {
			if match(p) {
				left = append(left, p)
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes still running in %s after SIGKILL: %v", nsLink, left)
		}
		for _, p := range left {
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
