package source

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// failingGit runs git as given, which must fail, and returns its stderr:
// the advice is tested on what this machine's git really prints.
func failingGit(t *testing.T, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("git %s succeeded; the test needs it to fail", strings.Join(args, " "))
	}
	return string(out)
}

// closedPort is a port of 127.0.0.1 nothing listens on.
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

type adviceCase struct {
	name, stderr string
	want, never  []string // in the advice; never in it ("" for no advice at all)
}

// TestGitAdviceFollowsGitsOwnWords: each failure gets the advice for its
// cause, as git names it, and one git does not explain gets none: never
// the deploy-key advice for a repository git refused for its owner.
func TestGitAdviceFollowsGitsOwnWords(t *testing.T) {
	gitTestEnv(t)
	dir := t.TempDir()
	repo := filepath.Join(dir, "app")
	newTestRepo(t, repo, map[string]string{"index.php": "<?php"})
	mirror := filepath.Join(dir, "mirror.git")
	testGit(t, "", "clone", "-q", "--mirror", repo, mirror)
	missing := filepath.Join(dir, "missing.git")
	port := strconv.Itoa(closedPort(t))

	cases := []adviceCase{
		{name: "missing repository, a path", stderr: failingGit(t, nil, "clone", "-q", "--mirror", missing, filepath.Join(dir, "m1")),
			want: []string{"no git repository at " + missing}, never: []string{"deploy key"}},
		{name: "missing repository, file://", stderr: failingGit(t, nil, "ls-remote", "file://"+missing),
			want: []string{"no git repository at file://" + missing}, never: []string{"deploy key"}},
		{name: "missing branch", stderr: failingGit(t, nil, "-C", mirror, "fetch", "-q", "origin", "no-such-branch"),
			want: []string{"no branch or tag no-such-branch", "git ls-remote"}},
		{name: "git not installed", stderr: func() string {
			out, _ := exec.Command("/bin/sh", "-c", "PATH=/nonexistent; git --version").CombinedOutput()
			return string(out)
		}(), want: []string{"git is not installed on the host", "apt-get install git", "apk add git", "dnf install git"}},
		{name: "https server refusing connections", stderr: failingGit(t, nil, "ls-remote", "https://127.0.0.1:"+port+"/app.git"),
			want: []string{"cannot connect to the git server 127.0.0.1 port " + port}, never: []string{"deploy key"}},
	}
	if _, err := exec.LookPath("ssh"); err == nil {
		cases = append(cases, adviceCase{name: "ssh server refusing connections",
			stderr: failingGit(t, []string{"GIT_SSH_COMMAND=ssh -o BatchMode=yes"}, "ls-remote", "ssh://git@127.0.0.1:"+port+"/app.git"),
			want:   []string{"cannot connect to the git server 127.0.0.1 port " + port, "Connection refused"}, never: []string{"deploy key"}})
	}
	if os.Geteuid() == 0 {
		// A repository another user owns: git refuses it whatever the
		// file modes say.
		foreign := filepath.Join(dir, "foreign")
		newTestRepo(t, foreign, map[string]string{"index.php": "<?php"})
		if out, err := exec.Command("chown", "-R", "65534", foreign).CombinedOutput(); err != nil {
			t.Fatalf("chown: %v %s", err, out)
		}
		for _, url := range []string{foreign, "file://" + foreign} {
			cases = append(cases, adviceCase{name: "dubious ownership, " + url,
				stderr: failingGit(t, nil, "clone", "-q", "--mirror", url, filepath.Join(dir, "m-"+strconv.Itoa(len(cases)))),
				want:   []string{"another user owns it", "git config --global --add safe.directory " + foreign},
				never:  []string{"deploy key", "forward_agent"}})
		}
	} else {
		t.Log("not root: the dubious-ownership case runs on its recorded text only")
	}

	// Failures this machine cannot produce offline or without a second
	// user, as git 2.39 and OpenSSH 9.2 print them.
	const cannotRead = "fatal: Could not read from remote repository.\n\nPlease make sure you have the correct access rights\nand the repository exists.\n"
	cases = append(cases,
		adviceCase{name: "dubious ownership (recorded)",
			stderr: "fatal: detected dubious ownership in repository at '/srv/git/app.git'\nTo add an exception for this directory, call:\n\n\tgit config --global --add safe.directory /srv/git/app.git\n" + cannotRead,
			want:   []string{"git on the host refuses /srv/git/app.git", "git config --global --add safe.directory /srv/git/app.git"}, never: []string{"deploy key"}},
		adviceCase{name: "key refused", stderr: "deploy@git.example.com: Permission denied (publickey).\r\n" + cannotRead,
			want: []string{"refused the host's SSH key", "deploy key", "forward_agent: true"}},
		adviceCase{name: "host key unknown", stderr: "Host key verification failed.\r\n" + cannotRead,
			want: []string{"host key", "known_hosts"}, never: []string{"deploy key"}},
		adviceCase{name: "unknown host name, ssh", stderr: "ssh: Could not resolve hostname gitt.example.com: Name or service not known\r\n" + cannotRead,
			want: []string{"cannot resolve the git server's name gitt.example.com", "getent hosts gitt.example.com"}, never: []string{"deploy key"}},
		adviceCase{name: "unknown host name, https", stderr: "fatal: unable to access 'https://gitt.example.com/app.git/': Could not resolve host: gitt.example.com\n",
			want: []string{"cannot resolve the git server's name gitt.example.com"}},
		adviceCase{name: "https without credentials", stderr: "fatal: could not read Username for 'https://git.example.com': terminal prompts disabled\n",
			want: []string{"wants credentials", "slipway never prompts"}, never: []string{"deploy key"}},
		adviceCase{name: "forge hides the repository", stderr: "ERROR: Repository not found.\n" + cannotRead,
			want: []string{"no git repository at"}, never: []string{"deploy key"}},
		adviceCase{name: "mirror not writable", stderr: "/srv/app/repo: Permission denied\n",
			want: []string{"may not write (or read) /srv/app/repo"}, never: []string{"deploy key"}},
		adviceCase{name: "cannot read alone", stderr: cannotRead},
		adviceCase{name: "unknown", stderr: "fatal: the remote end hung up unexpectedly\n"},
	)

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			advice := GitAdvice(tc.stderr, GitOnHost, urlIn(tc))
			t.Logf("advice: %s", advice)
			if len(tc.want) == 0 && advice != "" {
				t.Errorf("advice %q for a failure git does not explain:\n%s", advice, tc.stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(advice, w) {
					t.Errorf("advice %q lacks %q; git said:\n%s", advice, w, tc.stderr)
				}
			}
			for _, n := range tc.never {
				if strings.Contains(advice, n) {
					t.Errorf("advice %q says %q; git said:\n%s", advice, n, tc.stderr)
				}
			}
		})
	}
}

// urlIn is the repository URL the advice should name: the one in the
// case's own expectations, for the cases that name it.
func urlIn(tc adviceCase) string {
	for _, w := range tc.want {
		if rest, ok := strings.CutPrefix(w, "no git repository at "); ok {
			return rest
		}
	}
	return "ssh://git@git.example.com/app.git"
}

// TestExportAdviceFollowsTheCause: the upload flow's export says why git
// refused, on this machine: a repository another user owns gets the
// safe.directory advice, not "run slipway inside a repository".
func TestExportAdviceFollowsTheCause(t *testing.T) {
	gitTestEnv(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root, to give the repository to another user")
	}
	dir := t.TempDir()
	repo := filepath.Join(dir, "app")
	newTestRepo(t, repo, map[string]string{"index.php": "<?php"})
	if out, err := exec.Command("chown", "-R", "65534", repo).CombinedOutput(); err != nil {
		t.Fatalf("chown: %v %s", err, out)
	}
	_, err := ExportGit(context.Background(), GitExport{RepoDir: repo})
	wantErrorContaining(t, err, "another user owns it", "git config --global --add safe.directory "+repo)
	if strings.Contains(err.Error(), "run slipway inside one") {
		t.Errorf("wrong advice: %v", err)
	}
	_, err = ExportGit(context.Background(), GitExport{RepoURL: repo, CacheDir: filepath.Join(dir, "cache")})
	wantErrorContaining(t, err, "cannot clone "+repo, "git config --global --add safe.directory "+repo)
	if strings.Contains(err.Error(), "ls-remote") {
		t.Errorf("generic advice beside the cause: %v", err)
	}
}
