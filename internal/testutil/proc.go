package testutil

import (
	"fmt"
	"os"
	"slices"
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
	byNamespace, err := processesInMountNamespaces(map[string]bool{nsLink: true})
	return byNamespace[nsLink], err
}

// processesInMountNamespaces lists, in one pass over /proc, the live
// processes of each of the mount namespaces nsLinks holds, by namespace.
func processesInMountNamespaces(nsLinks map[string]bool) (map[string][]Process, error) {
	dir, err := os.Open("/proc")
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	procs := map[string][]Process{}
	for _, name := range names {
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		// Errors mean the process ended meanwhile, or is a zombie (whose
		// namespaces are already released).
		link, err := os.Readlink("/proc/" + name + "/ns/mnt")
		if err != nil || !nsLinks[link] {
			continue
		}
		comm, alive := processState(pid)
		if alive {
			procs[link] = append(procs[link], Process{PID: pid, Name: comm})
		}
	}
	return procs, nil
}

// Here is the name ProcessesOf lists this machine's own processes under.
const Here = ""

// ProcessesOf lists, in one pass over /proc, the live processes of each of
// hosts, by host name (as Processes does, without the sshd listener), and
// under Here those of this machine: the processes in this process's mount
// namespace, which no host's process is in. Unlike Processes it returns an
// error instead of failing a test, so a goroutine that watches the hosts
// while a test acts may call it.
func ProcessesOf(hosts []*Host) (map[string][]Process, error) {
	own, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return nil, err
	}
	links := map[string]bool{own: true}
	for _, h := range hosts {
		links[h.nsLink] = true
	}
	byNamespace, err := processesInMountNamespaces(links)
	if err != nil {
		return nil, err
	}
	out := map[string][]Process{Here: byNamespace[own]}
	for _, h := range hosts {
		listener, initPID := h.SSHDPid(), h.InitPID()
		out[h.Name] = slices.DeleteFunc(byNamespace[h.nsLink], func(p Process) bool { return p.PID == listener || p.PID == initPID })
	}
	return out, nil
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

// Cmdline is p's command line, its arguments joined by spaces; "" once p
// is gone.
func (p Process) Cmdline() string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.PID) + "/cmdline")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}

// Cwd is p's working directory as p's host sees it (for a process of a
// Host, a path under HostRoot, not under Host.Root); "" once p is gone.
// The kernel names a directory from the root of the mount namespace it was
// reached in, and every host's namespace has /srv where this machine has
// Host.Root.
func (p Process) Cwd() string {
	cwd, err := os.Readlink("/proc/" + strconv.Itoa(p.PID) + "/cwd")
	if err != nil {
		return ""
	}
	return cwd
}

// UID is the real user id p runs as, or -1 once p is gone.
func (p Process) UID() int {
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/"+strconv.Itoa(p.PID), &st); err != nil {
		return -1
	}
	return int(st.Uid)
}

// Describe is "name (pid N) `cmdline` in cwd", for failure messages.
func (p Process) Describe() string {
	return fmt.Sprintf("%s (pid %d) `%s` in %s", p.Name, p.PID, p.Cmdline(), p.Cwd())
}
