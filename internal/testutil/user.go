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
}

var deployAccount struct {
	once sync.Once
	acct account
	err  error
}

// ensureDeployUser creates DeployUser if it is missing and makes sure sshd
// accepts it: without PAM, OpenSSH refuses an account whose password is
// locked ("!"), so the password is set to "*" (no password can match it, the
// account is not locked).
func ensureDeployUser() (account, error) {
	deployAccount.once.Do(func() {
		deployAccount.acct, deployAccount.err = createDeployUser()
	})
	return deployAccount.acct, deployAccount.err
}

func createDeployUser() (account, error) {
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

	u, err := user.Lookup(DeployUser)
	if errors.As(err, new(user.UnknownUserError)) {
		out, addErr := exec.Command("useradd", "--create-home", "--shell", "/bin/bash",
			"--comment", "slipway end-to-end tests", DeployUser).CombinedOutput()
		if addErr != nil {
			return account{}, fmt.Errorf("useradd %s: %w: %s", DeployUser, addErr, strings.TrimSpace(string(out)))
		}
		u, err = user.Lookup(DeployUser)
	}
	if err != nil {
		return account{}, fmt.Errorf("look up user %s: %w", DeployUser, err)
	}
	if out, err := exec.Command("usermod", "--password", "*", DeployUser).CombinedOutput(); err != nil {
		return account{}, fmt.Errorf("usermod --password '*' %s: %w: %s", DeployUser, err, strings.TrimSpace(string(out)))
	}
	acct := account{name: u.Username, home: u.HomeDir}
	if acct.uid, err = strconv.Atoi(u.Uid); err != nil {
		return account{}, fmt.Errorf("user %s: uid %q: %w", DeployUser, u.Uid, err)
	}
	if acct.gid, err = strconv.Atoi(u.Gid); err != nil {
		return account{}, fmt.Errorf("user %s: gid %q: %w", DeployUser, u.Gid, err)
	}
	if !filepath.IsAbs(acct.home) || acct.home == "/" {
		return account{}, fmt.Errorf("user %s: home directory %q cannot be replaced per host; give it a home under /home", DeployUser, acct.home)
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
