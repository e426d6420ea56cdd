package host

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/slipway-deploy/slipway/internal/shell"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// HostKeyError reports a host key that known_hosts does not vouch for: an
// unknown key that may not be accepted, or a changed key, which is never
// accepted.
type HostKeyError struct {
	Host           string // display name; for a jump host "web1: jump host bastion"
	Addr           string // host:port dialled, as looked up in known_hosts
	KeyType        string // type of the key the server presented
	Fingerprint    string // SHA256:... of that key
	Changed        bool   // known_hosts has other keys for this host
	KnownHostsFile string // where an accepted key is recorded; for a changed key, the file holding the old one
	// KnownKeys describes the keys known_hosts has for the host when it
	// changed: "ssh-ed25519 SHA256:... (/home/u/.ssh/known_hosts:3)".
	KnownKeys []string

	strict bool   // StrictHostKeyChecking yes forbade accepting an unknown key
	fix    string // the ssh-keygen command that removes the old key
}

func (e *HostKeyError) Error() string {
	key := e.KeyType + " " + e.Fingerprint
	if e.Changed {
		return fmt.Sprintf("%s (%s): HOST KEY CHANGED (now %s, known_hosts has %s); someone may be intercepting the connection. If the change is expected, remove the old key with: %s",
			e.Host, e.Addr, key, strings.Join(e.KnownKeys, ", "), e.fix)
	}
	file := e.KnownHostsFile
	if file == "" {
		file = "known_hosts (UserKnownHostsFile is none in the ssh config)"
	}
	if e.strict {
		return fmt.Sprintf("%s (%s): unknown host key %s, and the ssh config sets StrictHostKeyChecking yes for it, so it is not recorded even with --accept-new-host-keys; check the fingerprint with the server's administrator, then add the key to %s yourself",
			e.Host, e.Addr, key, file)
	}
	return fmt.Sprintf("%s (%s): unknown host key %s; check the fingerprint with the server's administrator, then run again with --accept-new-host-keys to record it in %s",
		e.Host, e.Addr, key, file)
}

// hostKeyChecker verifies one server's host key against known_hosts, as
// the HostKeyCallback of its connection.
type hostKeyChecker struct {
	label string // names the host in errors
	ep    *sshEndpoint
	db    ssh.HostKeyCallback // nil when no known_hosts file exists
	// accept: an unknown key is recorded and accepted. A changed key never is.
	accept bool
	// home is the user's home, for the ssh-keygen hint.
	home string
	// err is why the last check refused the key: the handshake error that
	// wraps it would hide the host name at the front of the message.
	err error
	// trusted is the key the first key exchange accepted; the key exchanges
	// that renew the session keys must present it again.
	trusted ssh.PublicKey
}

func newHostKeyChecker(label string, ep *sshEndpoint, opts SSHOptions) (*hostKeyChecker, error) {
	c := &hostKeyChecker{label: label, ep: ep, home: opts.Home}
	switch ep.strict {
	case "yes":
		c.accept = false
	case "accept-new", "no":
		c.accept = true
	default:
		c.accept = opts.AcceptNewHostKeys
	}
	var files []string
	for _, f := range append(append([]string(nil), ep.userKnownHosts...), ep.globalKnownHosts...) {
		_, err := os.Stat(f)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s: known hosts: %w", label, err)
		}
		files = append(files, f)
	}
	if len(files) > 0 {
		db, err := knownhosts.New(files...)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", label, err)
		}
		c.db = db
	}
	return c, nil
}

// recordFile is the known_hosts file new keys go to, "" if there is none.
func (c *hostKeyChecker) recordFile() string {
	if len(c.ep.userKnownHosts) == 0 {
		return ""
	}
	return c.ep.userKnownHosts[0]
}

// knownKeys returns the plain keys known_hosts has for the host.
func (c *hostKeyChecker) knownKeys() []knownhosts.KnownKey {
	if c.db == nil {
		return nil
	}
	// Asking about a key no file can hold makes the database list the keys
	// it does hold for the address.
	var keyErr *knownhosts.KeyError
	if err := c.db(c.ep.addr, dialAddr(c.ep.addr), probeKey{}); errors.As(err, &keyErr) {
		return keyErr.Want
	}
	return nil
}

// hostKeyAlgorithms returns the algorithms of the keys known_hosts has for
// the host, nil when it has none. Offering only those makes the server show
// the key we can check; offering the default list would let it pick another
// type and a valid host would look changed.
func (c *hostKeyChecker) hostKeyAlgorithms() []string {
	var algos []string
	for _, k := range c.knownKeys() {
		for _, a := range algorithmsForKeyType(k.Key.Type()) {
			if !slices.Contains(algos, a) {
				algos = append(algos, a)
			}
		}
	}
	return algos
}

func algorithmsForKeyType(t string) []string {
	if t == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{t}
}

// check is the ssh.HostKeyCallback.
func (c *hostKeyChecker) check(hostname string, remote net.Addr, key ssh.PublicKey) error {
	if c.trusted != nil {
		if !bytes.Equal(c.trusted.Marshal(), key.Marshal()) {
			return fmt.Errorf("%s (%s): the server presented another host key (%s %s) in the middle of the session; someone may be intercepting the connection",
				c.label, c.ep.addr, key.Type(), ssh.FingerprintSHA256(key))
		}
		return nil
	}
	c.err = c.verify(hostname, remote, key)
	if c.err == nil {
		c.trusted = key
	}
	return c.err
}

func (c *hostKeyChecker) verify(hostname string, remote net.Addr, key ssh.PublicKey) error {
	var err error = &knownhosts.KeyError{}
	if c.db != nil {
		err = c.db(hostname, remote, key)
	}
	if cert, ok := key.(*ssh.Certificate); ok && err != nil && !isKeyError(err) {
		// A certificate no @cert-authority line vouches for: judge the plain
		// key inside it, as OpenSSH does.
		return c.verify(hostname, remote, cert.Key)
	}
	var keyErr *knownhosts.KeyError
	var revoked *knownhosts.RevokedError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &revoked):
		return fmt.Errorf("%s (%s): host key %s %s is marked @revoked in %s:%d; refusing to connect",
			c.label, c.ep.addr, key.Type(), ssh.FingerprintSHA256(key), revoked.Revoked.Filename, revoked.Revoked.Line)
	case errors.As(err, &keyErr) && len(keyErr.Want) > 0:
		return c.changedError(key, keyErr.Want)
	case errors.As(err, &keyErr):
		if !c.accept {
			return &HostKeyError{
				Host: c.label, Addr: c.ep.addr, KeyType: key.Type(), Fingerprint: ssh.FingerprintSHA256(key),
				KnownHostsFile: c.recordFile(), strict: c.ep.strict == "yes",
			}
		}
		return c.record(key)
	default:
		return fmt.Errorf("%s (%s): check the host key: %w", c.label, c.ep.addr, err)
	}
}

func isKeyError(err error) bool {
	var keyErr *knownhosts.KeyError
	return errors.As(err, &keyErr)
}

func (c *hostKeyChecker) changedError(key ssh.PublicKey, known []knownhosts.KnownKey) *HostKeyError {
	e := &HostKeyError{
		Host: c.label, Addr: c.ep.addr, KeyType: key.Type(), Fingerprint: ssh.FingerprintSHA256(key),
		Changed: true, KnownHostsFile: known[0].Filename,
	}
	for _, k := range known {
		e.KnownKeys = append(e.KnownKeys, fmt.Sprintf("%s %s (%s:%d)", k.Key.Type(), ssh.FingerprintSHA256(k.Key), k.Filename, k.Line))
	}
	e.fix = shell.Join("ssh-keygen", "-R", knownhosts.Normalize(c.ep.addr))
	if e.KnownHostsFile != filepath.Join(c.home, ".ssh", "known_hosts") {
		e.fix += " " + shell.Join("-f", e.KnownHostsFile)
	}
	return e
}

// knownHostsMu serialises appends to known_hosts files by the hosts of a
// run that connect at the same time.
var knownHostsMu sync.Mutex

// record appends key for the host to the first user known_hosts file,
// creating the file (0600) and its directory (0700) if needed.
func (c *hostKeyChecker) record(key ssh.PublicKey) error {
	file := c.recordFile()
	if file == "" {
		// UserKnownHostsFile none: accepted for this connection only.
		return nil
	}
	address := knownhosts.Normalize(c.ep.addr)
	if c.ep.hashKnownHosts {
		address = knownhosts.HashHostname(address)
	}
	line := knownhosts.Line([]string{address}, key) + "\n"

	knownHostsMu.Lock()
	defer knownHostsMu.Unlock()
	if err := appendKnownHost(file, line); err != nil {
		return fmt.Errorf("%s (%s): record the new host key in %s: %w", c.label, c.ep.addr, file, err)
	}
	return nil
}

func appendKnownHost(file, line string) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	endsInNewline, err := endsInNewline(file)
	if err != nil {
		return err
	}
	if !endsInNewline {
		line = "\n" + line
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// endsInNewline reports whether a new line can be appended to file as it
// is: it is missing, empty or ends in a newline.
func endsInNewline(file string) (bool, error) {
	f, err := os.Open(file)
	if errors.Is(err, fs.ErrNotExist) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return false, err
	}
	if info.Size() == 0 || !info.Mode().IsRegular() {
		return true, nil
	}
	last := make([]byte, 1)
	if _, err := f.ReadAt(last, info.Size()-1); err != nil {
		return false, err
	}
	return last[0] == '\n', nil
}

// probeKey is a public key no known_hosts line can match.
type probeKey struct{}

func (probeKey) Type() string                        { return "slipway-probe" }
func (probeKey) Marshal() []byte                     { return []byte("slipway-probe") }
func (probeKey) Verify([]byte, *ssh.Signature) error { return errors.New("probe key") }

// dialAddr is a net.Addr for a host:port string.
type dialAddr string

func (dialAddr) Network() string  { return "tcp" }
func (a dialAddr) String() string { return string(a) }
