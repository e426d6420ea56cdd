package host

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/kevinburke/ssh_config"
)

// ParseSSHTarget parses a host as written in slipway.yml or in a ProxyJump
// list: [user@]host[:port], with an IPv6 address in brackets when a port
// follows ([::1]:2222), or the URI form ssh://[user@]host[:port]. The whole
// string becomes the target's Name.
func ParseSSHTarget(s string) (SSHTarget, error) {
	t := SSHTarget{Name: s}
	rest := strings.TrimPrefix(s, "ssh://")
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		t.User, rest = rest[:i], rest[i+1:]
		if t.User == "" {
			return SSHTarget{}, fmt.Errorf("host %q: empty user name before @", s)
		}
	}
	port := ""
	switch {
	case strings.HasPrefix(rest, "["):
		end := strings.Index(rest, "]")
		if end < 0 {
			return SSHTarget{}, fmt.Errorf("host %q: missing ] after the IPv6 address", s)
		}
		t.Host = rest[1:end]
		after := rest[end+1:]
		if after != "" {
			if !strings.HasPrefix(after, ":") {
				return SSHTarget{}, fmt.Errorf("host %q: unexpected %q after ]", s, after)
			}
			port = after[1:]
		}
	case strings.Count(rest, ":") == 1:
		t.Host, port, _ = strings.Cut(rest, ":")
	default:
		// No colon, or a bare IPv6 address without a port.
		t.Host = rest
	}
	if err := checkHostName(t.Host); err != nil {
		return SSHTarget{}, fmt.Errorf("host %q: %w", s, err)
	}
	if strings.ContainsAny(t.User, " \t\r\n:/") {
		return SSHTarget{}, fmt.Errorf("host %q: invalid user name %q", s, t.User)
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 {
			return SSHTarget{}, fmt.Errorf("host %q: port %q is not a number from 1 to 65535", s, port)
		}
		t.Port = n
	}
	return t, nil
}

// checkHostName rejects what cannot be a host name or ssh config alias, so
// that it fails here with a clear message rather than in a DNS lookup.
func checkHostName(h string) error {
	switch {
	case h == "":
		return errors.New("empty host name")
	case strings.HasPrefix(h, "-"):
		return fmt.Errorf("host name %q starts with '-'", h)
	case strings.ContainsFunc(h, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '/' || r == '@' }):
		return fmt.Errorf("host name %q contains a space, a control character, '/' or '@'", h)
	}
	return nil
}

// sshConfig is the user's and the system's ssh_config. As with OpenSSH, the
// user's file is read first and the first value found for a key wins.
type sshConfig struct {
	files     []sshConfigFile
	home      string
	systemDir string
	localUser string
}

type sshConfigFile struct {
	path string
	cfg  *ssh_config.Config
}

func loadSSHConfig(home, systemDir string) (*sshConfig, error) {
	c := &sshConfig{home: home, systemDir: systemDir, localUser: localUserName()}
	for _, path := range []string{filepath.Join(home, ".ssh", "config"), filepath.Join(systemDir, "ssh_config")} {
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read ssh config: %w", err)
		}
		cfg, err := ssh_config.DecodeBytes(data)
		if err != nil {
			return nil, fmt.Errorf("ssh config %s: %w", path, err)
		}
		c.files = append(c.files, sshConfigFile{path: path, cfg: cfg})
	}
	return c, nil
}

func localUserName() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return os.Getenv("USER")
}

// get returns the first value of key for alias and the file it came from.
func (c *sshConfig) get(alias, key string) (value, path string, err error) {
	for _, f := range c.files {
		v, err := f.cfg.Get(alias, key)
		if err != nil {
			return "", f.path, fmt.Errorf("ssh config %s: %w", f.path, err)
		}
		if v != "" {
			return v, f.path, nil
		}
	}
	return "", "", nil
}

// getAll returns every value of key for alias from all files, for the keys
// OpenSSH accumulates (IdentityFile).
func (c *sshConfig) getAll(alias, key string) ([]string, error) {
	var all []string
	for _, f := range c.files {
		v, err := f.cfg.GetAll(alias, key)
		if err != nil {
			return nil, fmt.Errorf("ssh config %s: %w", f.path, err)
		}
		all = append(all, v...)
	}
	return all, nil
}

// sshEndpoint is one SSH server to connect to, with everything the ssh
// config says about it.
type sshEndpoint struct {
	alias    string // the host as written, looked up in the ssh config
	hostName string
	port     int
	user     string
	addr     string // hostName:port, dialled and looked up in known_hosts

	identityFiles  []string // IdentityFile entries, expanded
	noIdentityFile bool     // IdentityFile none: no key files at all
	identitiesOnly bool
	agentSocket    string // "" = no agent
	agentDisabled  bool   // IdentityAgent none

	userKnownHosts   []string // the first one records new keys
	globalKnownHosts []string
	strict           string // StrictHostKeyChecking: "", yes, no, ask or accept-new
	hashKnownHosts   bool

	proxyJump string         // ProxyJump as configured, "" for none
	jumps     []*sshEndpoint // hosts to go through, the first dialled directly
}

// maxJumpDepth bounds ProxyJump chains that lead through hosts with their
// own ProxyJump, which also stops a configuration that loops.
const maxJumpDepth = 8

// resolve applies the ssh config to t and resolves its ProxyJump chain.
func (c *sshConfig) resolve(t SSHTarget) (*sshEndpoint, error) {
	ep, err := c.endpoint(t.Host, t.User, t.Port)
	if err != nil {
		return nil, err
	}
	if ep.proxyJump != "" {
		if ep.jumps, err = c.jumpChain(ep.proxyJump, 0); err != nil {
			return nil, err
		}
	}
	return ep, nil
}

// jumpChain resolves a ProxyJump list the way OpenSSH does for "-J a,b":
// a is reached through its own ProxyJump if it has one, then b through a,
// and the target through b.
func (c *sshConfig) jumpChain(spec string, depth int) ([]*sshEndpoint, error) {
	if depth >= maxJumpDepth {
		return nil, fmt.Errorf("ProxyJump leads through more than %d hosts; does the ssh config loop?", maxJumpDepth)
	}
	var chain []*sshEndpoint
	for i, hop := range strings.Split(spec, ",") {
		t, err := ParseSSHTarget(strings.TrimSpace(hop))
		if err != nil {
			return nil, fmt.Errorf("ProxyJump %q: %w", spec, err)
		}
		ep, err := c.endpoint(t.Host, t.User, t.Port)
		if err != nil {
			return nil, fmt.Errorf("ProxyJump host %s: %w", t.Host, err)
		}
		if i == 0 && ep.proxyJump != "" {
			before, err := c.jumpChain(ep.proxyJump, depth+1)
			if err != nil {
				return nil, err
			}
			chain = append(chain, before...)
		}
		chain = append(chain, ep)
	}
	return chain, nil
}

// endpoint applies the ssh config for alias; a non-empty user or non-zero
// port overrides it.
func (c *sshConfig) endpoint(alias, userName string, port int) (*sshEndpoint, error) {
	ep := &sshEndpoint{alias: alias, user: userName, port: port}
	value := func(key string) (string, error) {
		v, _, err := c.get(alias, key)
		return v, err
	}

	hostName, err := value("HostName")
	if err != nil {
		return nil, err
	}
	ep.hostName = alias
	if hostName != "" {
		// HostName may refer to the alias (%h), e.g. "HostName %h.internal".
		if ep.hostName, err = expandTokens(hostName, map[byte]string{'h': alias}); err != nil {
			return nil, fmt.Errorf("ssh config HostName for %s: %w", alias, err)
		}
	}
	if ep.port == 0 {
		p, path, err := c.get(alias, "Port")
		if err != nil {
			return nil, err
		}
		ep.port = 22
		if p != "" {
			n, err := strconv.Atoi(p)
			if err != nil || n < 1 || n > 65535 {
				return nil, fmt.Errorf("ssh config %s: Port %q for %s is not a number from 1 to 65535", path, p, alias)
			}
			ep.port = n
		}
	}
	if ep.user == "" {
		if ep.user, err = value("User"); err != nil {
			return nil, err
		}
	}
	if ep.user == "" {
		ep.user = c.localUser
	}
	if ep.user == "" {
		return nil, fmt.Errorf("no user name for %s: set one in slipway.yml (user@host) or in the ssh config (User)", alias)
	}
	ep.addr = net.JoinHostPort(ep.hostName, strconv.Itoa(ep.port))

	if err := c.fillKeys(ep); err != nil {
		return nil, err
	}
	if err := c.fillHostKeyChecking(ep); err != nil {
		return nil, err
	}

	jump, err := value("ProxyJump")
	if err != nil {
		return nil, err
	}
	if jump != "" && !strings.EqualFold(jump, "none") {
		ep.proxyJump = jump
	}
	command, path, err := c.get(alias, "ProxyCommand")
	if err != nil {
		return nil, err
	}
	if ep.proxyJump == "" && command != "" && !strings.EqualFold(command, "none") {
		// Running it would mean running a local command from the config;
		// connecting directly instead would fail in a confusing way.
		return nil, fmt.Errorf("ssh config %s sets ProxyCommand for %s, which slipway does not run; use ProxyJump instead", path, alias)
	}
	return ep, nil
}

// fillKeys sets the key files and the agent to authenticate with.
func (c *sshConfig) fillKeys(ep *sshEndpoint) error {
	files, err := c.getAll(ep.alias, "IdentityFile")
	if err != nil {
		return err
	}
	for _, f := range files {
		if strings.EqualFold(f, "none") {
			ep.noIdentityFile = true
			continue
		}
		path, err := c.expandPath(ep, f)
		if err != nil {
			return fmt.Errorf("ssh config IdentityFile %q for %s: %w", f, ep.alias, err)
		}
		ep.identityFiles = append(ep.identityFiles, path)
	}
	if len(ep.identityFiles) > 0 {
		ep.noIdentityFile = false
	}

	only, _, err := c.get(ep.alias, "IdentitiesOnly")
	if err != nil {
		return err
	}
	ep.identitiesOnly = strings.EqualFold(only, "yes")

	agentSetting, _, err := c.get(ep.alias, "IdentityAgent")
	if err != nil {
		return err
	}
	switch {
	case agentSetting == "" || agentSetting == "SSH_AUTH_SOCK":
		ep.agentSocket = os.Getenv("SSH_AUTH_SOCK")
	case strings.EqualFold(agentSetting, "none"):
		ep.agentDisabled = true
	case strings.HasPrefix(agentSetting, "$"):
		ep.agentSocket = os.Getenv(strings.Trim(agentSetting[1:], "{}"))
	default:
		if ep.agentSocket, err = c.expandPath(ep, agentSetting); err != nil {
			return fmt.Errorf("ssh config IdentityAgent %q for %s: %w", agentSetting, ep.alias, err)
		}
	}
	return nil
}

// fillHostKeyChecking sets the known_hosts files and how unknown keys are
// treated.
func (c *sshConfig) fillHostKeyChecking(ep *sshEndpoint) error {
	userFiles, _, err := c.get(ep.alias, "UserKnownHostsFile")
	if err != nil {
		return err
	}
	if userFiles == "" {
		ep.userKnownHosts = []string{filepath.Join(c.home, ".ssh", "known_hosts")}
	} else if !strings.EqualFold(userFiles, "none") {
		for _, f := range strings.Fields(userFiles) {
			path, err := c.expandPath(ep, f)
			if err != nil {
				return fmt.Errorf("ssh config UserKnownHostsFile %q for %s: %w", f, ep.alias, err)
			}
			ep.userKnownHosts = append(ep.userKnownHosts, path)
		}
	}
	globalFiles, _, err := c.get(ep.alias, "GlobalKnownHostsFile")
	if err != nil {
		return err
	}
	if globalFiles == "" {
		ep.globalKnownHosts = []string{filepath.Join(c.systemDir, "ssh_known_hosts")}
	} else if !strings.EqualFold(globalFiles, "none") {
		for _, f := range strings.Fields(globalFiles) {
			path, err := c.expandPath(ep, f)
			if err != nil {
				return fmt.Errorf("ssh config GlobalKnownHostsFile %q for %s: %w", f, ep.alias, err)
			}
			ep.globalKnownHosts = append(ep.globalKnownHosts, path)
		}
	}

	strict, path, err := c.get(ep.alias, "StrictHostKeyChecking")
	if err != nil {
		return err
	}
	switch strings.ToLower(strict) {
	case "":
	case "yes", "true":
		ep.strict = "yes"
	case "no", "off", "false":
		ep.strict = "no"
	case "ask":
		ep.strict = "ask"
	case "accept-new":
		ep.strict = "accept-new"
	default:
		return fmt.Errorf("ssh config %s: StrictHostKeyChecking %q for %s is not one of yes, accept-new, no, off, ask", path, strict, ep.alias)
	}

	hash, _, err := c.get(ep.alias, "HashKnownHosts")
	if err != nil {
		return err
	}
	ep.hashKnownHosts = strings.EqualFold(hash, "yes")
	return nil
}

// expandPath expands a leading ~ to the home directory and the % tokens
// OpenSSH documents for file names in ssh_config.
func (c *sshConfig) expandPath(ep *sshEndpoint, s string) (string, error) {
	s, err := expandTokens(s, map[byte]string{
		'd': c.home,
		'u': c.localUser,
		'h': ep.hostName,
		'n': ep.alias,
		'p': strconv.Itoa(ep.port),
		'r': ep.user,
		'i': strconv.Itoa(os.Getuid()),
	})
	if err != nil {
		return "", err
	}
	switch {
	case s == "~":
		return c.home, nil
	case strings.HasPrefix(s, "~/"):
		return filepath.Join(c.home, s[2:]), nil
	case strings.HasPrefix(s, "~"):
		return "", errors.New("~user paths are not supported; write the path out")
	}
	return s, nil
}

// expandTokens replaces %x by values['x'] and %% by %; any other token is an
// error rather than a path that silently does not exist.
func expandTokens(s string, values map[byte]string) (string, error) {
	if !strings.Contains(s, "%") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 == len(s) {
			return "", errors.New("% at the end")
		}
		i++
		if s[i] == '%' {
			b.WriteByte('%')
			continue
		}
		v, ok := values[s[i]]
		if !ok {
			return "", fmt.Errorf("token %%%c is not supported here", s[i])
		}
		b.WriteString(v)
	}
	return b.String(), nil
}
