package host

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// AuthError reports a server that accepted none of the keys offered.
type AuthError struct {
	Host  string   // display name; for a jump host "web1: jump host bastion"
	Addr  string   // host:port dialled
	User  string   // remote user name
	Tried []string // the keys offered and the ones skipped, with why
}

func (e *AuthError) Error() string {
	return fmt.Sprintf("%s (%s): the server accepted no key for user %s; tried %s",
		e.Host, e.Addr, e.User, strings.Join(e.Tried, ", "))
}

// defaultIdentityFiles are the key files tried when the ssh config names
// none, in OpenSSH's order.
var defaultIdentityFiles = []string{"id_ed25519", "id_ecdsa", "id_rsa"}

// agentDialTimeout bounds connecting to the local ssh-agent socket.
const agentDialTimeout = 5 * time.Second

// sshAuth is the keys to offer one server, in the order they are offered.
type sshAuth struct {
	signers []ssh.Signer
	tried   []string // for AuthError
	agent   net.Conn // open until the handshake is over
}

func (a *sshAuth) close() {
	if a.agent != nil {
		a.agent.Close()
	}
}

// identity is one key file.
type identity struct {
	path   string
	signer ssh.Signer    // nil if the file could not be used directly
	public ssh.PublicKey // known even for an encrypted key, where the file tells
	note   string        // why signer is nil
}

// loadAuth collects the keys for ep like OpenSSH: the IdentityFile keys
// first (signed by the agent when it holds them, which covers encrypted
// files), then the agent's other keys unless IdentitiesOnly, then the
// default key files when the config names none.
func loadAuth(ep *sshEndpoint, home string) *sshAuth {
	a := &sshAuth{}
	explicit := loadIdentities(ep.identityFiles, true)
	var defaults []identity
	if len(ep.identityFiles) == 0 && !ep.noIdentityFile {
		paths := make([]string, len(defaultIdentityFiles))
		for i, name := range defaultIdentityFiles {
			paths[i] = filepath.Join(home, ".ssh", name)
		}
		defaults = loadIdentities(paths, false)
	}

	agentSigners := map[string]ssh.Signer{}
	var agentOrder []ssh.Signer
	agentListed := false
	switch {
	case ep.agentDisabled:
		a.tried = append(a.tried, "no ssh-agent (IdentityAgent none)")
	case ep.agentSocket == "":
		a.tried = append(a.tried, "no ssh-agent (SSH_AUTH_SOCK is not set)")
	default:
		conn, err := net.DialTimeout("unix", ep.agentSocket, agentDialTimeout)
		if err != nil {
			a.tried = append(a.tried, fmt.Sprintf("no ssh-agent (cannot reach %s: %v)", ep.agentSocket, err))
			break
		}
		a.agent = conn
		signers, err := agent.NewClient(conn).Signers()
		if err != nil {
			a.tried = append(a.tried, fmt.Sprintf("no ssh-agent (listing its keys failed: %v)", err))
			break
		}
		for _, s := range signers {
			agentSigners[string(s.PublicKey().Marshal())] = s
		}
		agentOrder = signers
		agentListed = true
	}

	offered := map[string]bool{}
	offer := func(s ssh.Signer) bool {
		blob := string(s.PublicKey().Marshal())
		if offered[blob] {
			return false
		}
		offered[blob] = true
		a.signers = append(a.signers, s)
		return true
	}
	offerIdentity := func(id identity) {
		if id.public != nil {
			if s, ok := agentSigners[string(id.public.Marshal())]; ok {
				offer(s)
				a.tried = append(a.tried, fmt.Sprintf("%s (%s, through ssh-agent)", id.path, describeKey(id.public)))
				return
			}
		}
		if id.signer == nil {
			a.tried = append(a.tried, fmt.Sprintf("%s (%s)", id.path, id.note))
			return
		}
		if offer(id.signer) {
			a.tried = append(a.tried, fmt.Sprintf("%s (%s)", id.path, describeKey(id.public)))
		}
	}

	for _, id := range explicit {
		offerIdentity(id)
	}
	switch {
	case !agentListed:
	case len(agentOrder) == 0:
		a.tried = append(a.tried, "ssh-agent (holds no keys)")
	case ep.identitiesOnly:
		a.tried = append(a.tried, fmt.Sprintf("ssh-agent (%d keys, not offered: IdentitiesOnly yes)", len(agentOrder)))
	default:
		n := 0
		for _, s := range agentOrder {
			if offer(s) {
				n++
			}
		}
		if n > 0 {
			a.tried = append(a.tried, fmt.Sprintf("ssh-agent (%d keys)", n))
		}
	}
	for _, id := range defaults {
		offerIdentity(id)
	}
	if len(explicit) == 0 && len(defaults) == 0 && !ep.noIdentityFile {
		a.tried = append(a.tried, "no key file (none of ~/.ssh/"+strings.Join(defaultIdentityFiles, ", ")+" exists)")
	}
	return a
}

func (a *sshAuth) methods() []ssh.AuthMethod {
	return []ssh.AuthMethod{ssh.PublicKeys(a.signers...)}
}

// loadIdentities reads key files. A missing file is reported only when the
// config named it (reportMissing); the default ones are optional.
func loadIdentities(paths []string, reportMissing bool) []identity {
	var ids []identity
	for _, path := range paths {
		id := identity{path: path}
		data, err := os.ReadFile(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			if !reportMissing {
				continue
			}
			id.note = "missing"
		case err != nil:
			id.note = fmt.Sprintf("unreadable: %v", err)
		default:
			id.signer, id.public, id.note = parseIdentity(path, data)
		}
		ids = append(ids, id)
	}
	return ids
}

// parseIdentity returns the signer of a private key file, or only its public
// key when the file is encrypted (a passphrase cannot be asked for: deploys
// run unattended) or holds a public key meant to select an agent key.
func parseIdentity(path string, data []byte) (ssh.Signer, ssh.PublicKey, string) {
	signer, err := ssh.ParsePrivateKey(data)
	if err == nil {
		return signer, signer.PublicKey(), ""
	}
	var encrypted *ssh.PassphraseMissingError
	if errors.As(err, &encrypted) {
		public := encrypted.PublicKey
		if public == nil {
			public = readPublicKey(path + ".pub")
		}
		return nil, public, "encrypted, skipped: load it into ssh-agent with ssh-add"
	}
	if public, _, _, _, perr := ssh.ParseAuthorizedKey(data); perr == nil {
		return nil, public, "a public key, and ssh-agent does not hold its private key"
	}
	return nil, nil, fmt.Sprintf("not a usable private key: %v", err)
}

func readPublicKey(path string) ssh.PublicKey {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	public, _, _, _, err := ssh.ParseAuthorizedKey(data)
	if err != nil {
		return nil
	}
	return public
}

func describeKey(k ssh.PublicKey) string {
	if k == nil {
		return "unknown key"
	}
	return k.Type() + " " + ssh.FingerprintSHA256(k)
}

// isAuthFailure reports whether a handshake failed because the server took
// none of the keys; x/crypto/ssh has no error type for it.
func isAuthFailure(err error) bool {
	return err != nil && strings.Contains(err.Error(), "unable to authenticate")
}
