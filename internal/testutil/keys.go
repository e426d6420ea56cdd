package testutil

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"

	"golang.org/x/crypto/ssh"
)

// writeEd25519Key generates an ed25519 key pair and writes the private key
// in OpenSSH format to path (mode 0600, as ssh and sshd insist). Generating
// it here costs microseconds; a fleet of a hundred hosts would otherwise run
// a hundred ssh-keygen processes.
func writeEd25519Key(path, comment string) (ssh.PublicKey, error) {
	public, private, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(private, comment)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	sshPublic, err := ssh.NewPublicKey(public)
	if err != nil {
		return nil, fmt.Errorf("public key of %s: %w", path, err)
	}
	return sshPublic, nil
}
