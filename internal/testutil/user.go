package testutil

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// DeployUser is the account the fleet's hosts accept SSH logins for. It is a
// real account on this machine, created on first use and left in place.
const DeployUser = "slipway-e2e"

type account struct {
	name     string
	uid, gid int
	home     string // the home directory in /etc/passwd; every host mounts its own over it
	shell    string // the login shell in /etc/passwd
}

// loginShells are the login shells HostOptions.Shell offers, by name, with
// the account that has each: sshd hands every command to the user's login
// shell, so a host with another shell needs another user. DeployUser keeps
// bash; the others are created beside it, each once per machine.
var loginShells = map[string]struct{ user, path, pkg string }{
	"bash": {DeployUser, "/bin/bash", "bash"},
	"dash": {DeployUser + "-dash", "/bin/dash", "dash"},
	"tcsh": {DeployUser + "-tcsh", "/usr/bin/tcsh", "tcsh"},
	"fish": {DeployUser + "-fish", "/usr/bin/fish", "fish"},
}

var accounts struct {
	mu     sync.Mutex
	byName map[string]account
}

// ensureDeployUser creates DeployUser if it is missing and makes sure sshd
// accepts it.
func ensureDeployUser() (account, error) { return ensureAccount("bash") }

// ensureAccount creates the account whose login shell is the shell named
// (a key of loginShells) if it is missing, sets its login shell, and makes
// sure sshd accepts it: without PAM, OpenSSH refuses an account whose
// password is locked ("!"), as useradd leaves it, so the password is set to
// "*" (no password can match it, the account is not locked).
func ensureAccount(shellName string) (account, error) {
	accounts.mu.Lock()
	defer accounts.mu.Unlock()
	if acct, ok := accounts.byName[shellName]; ok {
		return acct, nil
	}
	login, ok := loginShells[shellName]
	if !ok {
		return account{}, fmt.Errorf("no test account with login shell %q; the shells are bash, dash, tcsh and fish", shellName)
	}
	acct, err := createAccount(login.user, login.path)
	if err != nil {
		return account{}, err
	}
	if accounts.byName == nil {
		accounts.byName = map[string]account{}
	}
	accounts.byName[shellName] = acct
	return acct, nil
}

func createAccount(name, shell string) (account, error) {
	// Test binaries of several packages run at once; useradd and usermod
	// must not race on /etc/passwd and /etc/shadow.
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "slipway-testutil-user.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return account{}, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return account{}, fmt.Errorf("lock %s: %w", lock.Name(), err)
	}

	u, err := user.Lookup(name)
	if errors.As(err, new(user.UnknownUserError)) {
		out, addErr := exec.Command("useradd", "--create-home", "--shell", shell,
			"--comment", "slipway end-to-end tests", name).CombinedOutput()
		if addErr != nil {
			return account{}, fmt.Errorf("useradd %s: %w: %s", name, addErr, strings.TrimSpace(string(out)))
		}
		u, err = user.Lookup(name)
	}
	if err != nil {
		return account{}, fmt.Errorf("look up user %s: %w", name, err)
	}
	// --shell too: an account left by an older run keeps the shell asked for.
	if out, err := exec.Command("usermod", "--password", "*", "--shell", shell, name).CombinedOutput(); err != nil {
		return account{}, fmt.Errorf("usermod --password '*' --shell %s %s: %w: %s", shell, name, err, strings.TrimSpace(string(out)))
	}
	acct := account{name: u.Username, home: u.HomeDir, shell: shell}
	if acct.uid, err = strconv.Atoi(u.Uid); err != nil {
		return account{}, fmt.Errorf("user %s: uid %q: %w", name, u.Uid, err)
	}
	if acct.gid, err = strconv.Atoi(u.Gid); err != nil {
		return account{}, fmt.Errorf("user %s: gid %q: %w", name, u.Gid, err)
	}
	if !filepath.IsAbs(acct.home) || acct.home == "/" {
		return account{}, fmt.Errorf("user %s: home directory %q cannot be replaced per host; give it a home under /home", name, acct.home)
	}
	// Each host bind-mounts its own home over this directory, so it has to
	// exist; its content on this machine is never seen by a host.
	if err := os.MkdirAll(acct.home, 0o700); err != nil {
		return account{}, err
	}
	if err := os.Chown(acct.home, acct.uid, acct.gid); err != nil {
		return account{}, err
	}
	return acct, nil
}
