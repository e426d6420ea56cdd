package testutil

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// hostInit is the first process of a host's PID namespace. The kernel
// makes it the parent of every orphan in the namespace (a job a session
// left running, once its shell is gone), so it must reap them, or they
// would stay as zombies; and while it lives the namespace and its mounts
// live, across Stop and Start. Perl (perl-base, part of every Debian) waits
// without forking, so the host shows no process of its own; SIGCHLD cuts
// its sleep short, so an orphan is reaped as it exits.
const hostInit = `$SIG{CHLD} = sub {}; while (1) { wait == -1 and sleep 1 }`

// createHostInit makes the host's namespaces for Options.PIDNamespaces or
// HostOptions.FileSystem: a process started in new mount and PID
// namespaces (and network, with a private network) mounts the host's /proc
// and its /srv (Root bound, or the file system image on a loop device) and
// the user's home, then execs hostInit, which stays until release. The
// descriptors of its namespaces are held as createNamespace's are. The
// mount of an image is in the host's namespace only: this machine reaches
// it through init's root, /proc/PID/root/srv, which is then Root.
func (h *Host) createHostInit(privateNetwork bool) error {
	srv := `mount --bind "$1" "$5"`
	source := h.Root
	if h.opts.FileSystem != "" {
		srv = `mount -o loop "$1" "$5" && chown "$4" "$5" && chmod 0755 "$5"`
		source = h.imagePath()
	}
	script := `set -e
mount --make-rprivate /
mount -t proc proc /proc
` + srv + `
mount --bind "$2" "$3"
`
	flags := uintptr(syscall.CLONE_NEWNS | syscall.CLONE_NEWPID)
	if privateNetwork {
		flags |= syscall.CLONE_NEWNET
		script += "ip link set lo up\n"
	}
	script += `echo ready
exec perl -e '` + hostInit + `' </dev/null >/dev/null 2>&1
`
	cmd := exec.Command("/bin/sh", "-c", script, "sh", source, h.UserHome, h.account.home,
		fmt.Sprintf("%d:%d", h.account.uid, h.account.gid), HostRoot)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C"}
	// Pdeathsig: should this process die without cleaning up, init dies,
	// and with it every process of the host.
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start the host's init in new namespaces: %w", err)
	}
	exited := make(chan struct{})
	line, _ := bufio.NewReader(stdout).ReadString('\n')
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	if line != "ready\n" {
		<-exited
		return fmt.Errorf("set up the host's namespaces: %v: %s", cmd.ProcessState, strings.TrimSpace(stderr.String()))
	}
	pid := cmd.Process.Pid
	h.init, h.initPID, h.initExited = cmd, pid, exited
	if err := h.openHostNamespaces(privateNetwork); err != nil {
		// Nothing else knows of init yet: its end ends the namespaces.
		return errors.Join(err, h.stopInit())
	}
	if h.opts.FileSystem != "" {
		h.Root = fmt.Sprintf("/proc/%d/root%s", pid, HostRoot)
	}
	return nil
}

// openHostNamespaces opens the namespaces of the host's init, which hold
// them as createNamespace's descriptors do.
func (h *Host) openHostNamespaces(privateNetwork bool) error {
	var err error
	for _, ns := range []struct {
		file **os.File
		name string
		want bool
	}{{&h.nsFile, "mnt", true}, {&h.pidFile, "pid", true}, {&h.netFile, "net", privateNetwork}} {
		if !ns.want {
			continue
		}
		if *ns.file, err = os.Open(fmt.Sprintf("/proc/%d/ns/%s", h.initPID, ns.name)); err != nil {
			return fmt.Errorf("open the host's %s namespace: %w", ns.name, err)
		}
	}
	h.nsLink, err = os.Readlink(fdPath(h.nsFile))
	return err
}

// stopInit kills the host's init, and with it, by the kernel, whatever is
// left in its PID namespace.
func (h *Host) stopInit() error {
	_ = h.init.Process.Kill()
	select {
	case <-h.initExited:
	case <-time.After(5 * time.Second):
		return fmt.Errorf("the host's init (pid %d) did not exit after SIGKILL", h.init.Process.Pid)
	}
	h.init = nil
	return nil
}

// unmountFileSystem unmounts the host's file system, once no process of
// the host is left, and makes sure its loop device is detached (mount -o
// loop sets autoclear; detaching may lag the unmount a little).
func (h *Host) unmountFileSystem() error {
	out, err := exec.Command("nsenter", "--mount="+fdPath(h.nsFile), "--", "umount", HostRoot).CombinedOutput()
	if err != nil {
		return fmt.Errorf("unmount the host's %s: %w: %s", h.opts.FileSystem, err, strings.TrimSpace(string(out)))
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := exec.Command("losetup", "--associated", h.imagePath(), "--noheadings", "--output", "NAME").Output()
		devices := strings.Fields(string(out))
		if err != nil || len(devices) == 0 {
			return err
		}
		if time.Now().After(deadline) {
			for _, dev := range devices {
				if out, err := exec.Command("losetup", "--detach", dev).CombinedOutput(); err != nil {
					return fmt.Errorf("detach %s from %s: %w: %s", dev, h.imagePath(), err, strings.TrimSpace(string(out)))
				}
			}
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// imageSize is the size of a host's file system image. The file is
// sparse: it takes on disk what the host writes. XFS needs 300 MB at
// least.
const imageSize = 512 << 20

// makeFileSystem creates the sparse image file and a file system of kind
// on it.
func makeFileSystem(image, kind string) error {
	f, err := os.OpenFile(image, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	err = f.Truncate(imageSize)
	if closeErr := f.Close(); err == nil {
		err = closeErr
	}
	if err != nil {
		return err
	}
	mkfs, ok := fileSystems[kind]
	if !ok {
		return fmt.Errorf("file system %q: the choices are xfs and ext4", kind)
	}
	if out, err := exec.Command(mkfs.command[0], append(mkfs.command[1:], image)...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(mkfs.command, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// fileSystems are the file systems HostOptions.FileSystem offers: how to
// make one and the package that has the tool.
var fileSystems = map[string]struct {
	command []string
	pkg     string
}{
	// reflink=1 is mkfs.xfs's default since xfsprogs 5.1; said here, so
	// that an older one makes the same.
	"xfs":  {[]string{"mkfs.xfs", "-q", "-m", "reflink=1"}, "xfsprogs"},
	"ext4": {[]string{"mkfs.ext4", "-q", "-F"}, "e2fsprogs"},
}

// busyBoxDirName is the directory, in the deploy user's home, that holds
// a BusyBox host's PATH: one link to busybox per applet.
const busyBoxDirName = ".busybox-applets"

func (h *Host) busyBoxDir() string { return filepath.Join(h.UserHome, busyBoxDirName) }

// writeBusyBoxApplets makes dir a directory with a link to busybox for
// every applet it lists, as a BusyBox system's /bin has.
func writeBusyBoxApplets(dir string, acct account) error {
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		return err
	}
	out, err := exec.Command(busybox, "--list").Output()
	if err != nil {
		return fmt.Errorf("busybox --list: %w", err)
	}
	applets := strings.Fields(string(out))
	if len(applets) == 0 {
		return errors.New("busybox --list lists no applets")
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	for _, applet := range applets {
		if err := os.Symlink(busybox, filepath.Join(dir, applet)); err != nil {
			return err
		}
	}
	return os.Lchown(dir, acct.uid, acct.gid)
}
