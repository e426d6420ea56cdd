package host

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseSSHTarget(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want SSHTarget
	}{
		{"web1", SSHTarget{Host: "web1"}},
		{"deploy@web2.example.com:2222", SSHTarget{Host: "web2.example.com", User: "deploy", Port: 2222}},
		{"10.0.0.5:22", SSHTarget{Host: "10.0.0.5", Port: 22}},
		{"[::1]:2222", SSHTarget{Host: "::1", Port: 2222}},
		{"deploy@[2001:db8::1]", SSHTarget{Host: "2001:db8::1", User: "deploy"}},
		{"2001:db8::1", SSHTarget{Host: "2001:db8::1"}},
		{"ssh://ci@bastion:2200", SSHTarget{Host: "bastion", User: "ci", Port: 2200}},
	} {
		got, err := ParseSSHTarget(tc.in)
		tc.want.Name = tc.in
		if err != nil || got != tc.want {
			t.Errorf("ParseSSHTarget(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
	for _, in := range []string{"", "@web", "web:0", "web:70000", "web:ssh", "-oProxyCommand=x", "we b", "[::1", "[::1]x", "a/b"} {
		if got, err := ParseSSHTarget(in); err == nil {
			t.Errorf("ParseSSHTarget(%q) = %+v, want an error", in, got)
		}
	}
}

func TestSSHConfigResolve(t *testing.T) {
	home := t.TempDir()
	system := t.TempDir()
	write := func(path, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(home, ".ssh", "config"), `
Host web
  HostName %h.internal
  User app
  Port 2222
  IdentityFile ~/.ssh/%r@%h
  UserKnownHostsFile ~/.ssh/kh1 %d/kh2
  ProxyJump a,b

Host a
  ProxyJump c

Host loop
  ProxyJump loop

Host piped
  ProxyCommand nc %h %p

Host badport
  Port many
`)
	write(filepath.Join(system, "ssh_config"), "Host *\n  IdentityFile /etc/ssh/shared_key\n  StrictHostKeyChecking accept-new\n")
	t.Setenv("SSH_AUTH_SOCK", "/run/agent.sock")

	cfg, err := loadSSHConfig(home, system)
	if err != nil {
		t.Fatal(err)
	}
	ep, err := cfg.resolve(SSHTarget{Host: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if ep.addr != "web.internal:2222" || ep.user != "app" {
		t.Errorf("addr %s user %s", ep.addr, ep.user)
	}
	wantIDs := []string{filepath.Join(home, ".ssh", "app@web.internal"), "/etc/ssh/shared_key"}
	if !reflect.DeepEqual(ep.identityFiles, wantIDs) {
		t.Errorf("identity files %q, want %q", ep.identityFiles, wantIDs)
	}
	wantKH := []string{filepath.Join(home, ".ssh", "kh1"), filepath.Join(home, "kh2")}
	if !reflect.DeepEqual(ep.userKnownHosts, wantKH) || !reflect.DeepEqual(ep.globalKnownHosts, []string{filepath.Join(system, "ssh_known_hosts")}) {
		t.Errorf("known hosts %q / %q", ep.userKnownHosts, ep.globalKnownHosts)
	}
	if ep.strict != "accept-new" || ep.agentSocket != "/run/agent.sock" {
		t.Errorf("strict %q agent %q", ep.strict, ep.agentSocket)
	}
	var hops []string
	for _, j := range ep.jumps {
		hops = append(hops, j.alias)
	}
	if strings.Join(hops, ",") != "c,a,b" {
		t.Errorf("jump chain %v, want c,a,b (a's own ProxyJump first)", hops)
	}

	explicit, err := cfg.resolve(SSHTarget{Host: "web", User: "root", Port: 22})
	if err != nil || explicit.addr != "web.internal:22" || explicit.user != "root" {
		t.Errorf("explicit user and port: %+v, %v", explicit, err)
	}

	for host, want := range map[string]string{
		"loop":    "loop",
		"piped":   "ProxyCommand",
		"badport": `Port "many"`,
	} {
		if _, err := cfg.resolve(SSHTarget{Host: host}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("resolve %s: %v, want an error about %s", host, err, want)
		}
	}
}

func TestExpandTokens(t *testing.T) {
	got, err := expandTokens("%d/%%/%h", map[byte]string{'d': "/home/u", 'h': "web"})
	if err != nil || got != "/home/u/%/web" {
		t.Errorf("got %q, %v", got, err)
	}
	for _, bad := range []string{"%C", "trailing%"} {
		if _, err := expandTokens(bad, map[byte]string{}); err == nil {
			t.Errorf("expandTokens(%q): want an error", bad)
		}
	}
}
