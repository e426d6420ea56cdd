package host

import (
	"context"
	"errors"
	"fmt"

	"github.com/pkg/sftp"

	"github.com/slipway-deploy/slipway/internal/shell"
)

// errNoSFTP says the server offers no SFTP (its subsystem is disabled, a
// common hardening) or no posix-rename@openssh.com in it.
var errNoSFTP = errors.New("no SFTP with posix-rename")

// Rename renames oldpath over newpath on the host with one rename(2): by
// SFTP's posix-rename@openssh.com where the server offers it (one round
// trip on the channel PrepareRename opened), else by running mv -T (GNU
// and BusyBox mv both make one rename(2) of it), for servers without SFTP.
// Once the request is sent it is not abandoned on cancellation, so the
// caller learns whether the switch happened.
func (s *SSH) Rename(ctx context.Context, oldpath, newpath string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	client, err := s.sftpClient()
	if errors.Is(err, errNoSFTP) {
		script := shell.Script("mv -f -T -- {{old}} {{new}}", shell.Args{"old": oldpath, "new": newpath})
		if _, err := s.run(context.WithoutCancel(ctx), Command{Script: script}); err != nil {
			return fmt.Errorf("%s: rename %s to %s: %w", s.name, oldpath, newpath, err)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if err := client.PosixRename(oldpath, newpath); err != nil {
		what := fmt.Sprintf("rename %s to %s", oldpath, newpath)
		var status *sftp.StatusError
		if errors.As(err, &status) {
			return fmt.Errorf("%s: %s: %w", s.name, what, err)
		}
		return s.connectionError(what, err)
	}
	return nil
}

// PrepareRename opens the SFTP channel ahead of a switch, so the switch
// itself costs one round trip; on a server without SFTP there is nothing
// to open.
func (s *SSH) PrepareRename(context.Context) error {
	_, err := s.sftpClient()
	if errors.Is(err, errNoSFTP) {
		return nil
	}
	return err
}

// RenamePath says how Rename renames on this host: "sftp", or "exec" (mv -T
// in a command) where the server has no SFTP.
func (s *SSH) RenamePath() string {
	if _, err := s.sftpClient(); errors.Is(err, errNoSFTP) {
		return "exec"
	}
	return "sftp"
}

// sftpClient returns the connection's SFTP client, opening it on first
// use; errNoSFTP, remembered, where the server has none.
func (s *SSH) sftpClient() (*sftp.Client, error) {
	s.sftpMu.Lock()
	defer s.sftpMu.Unlock()
	if s.sftp != nil || s.noSFTP {
		if s.noSFTP {
			return nil, errNoSFTP
		}
		return s.sftp, nil
	}
	client, err := sftp.NewClient(s.client)
	if err != nil {
		select {
		case <-s.lost:
			return nil, s.connectionError("start SFTP", err)
		default:
		}
		if s.closed.Load() {
			return nil, s.connectionError("start SFTP", err)
		}
		s.noSFTP = true
		return nil, errNoSFTP
	}
	if _, ok := client.HasExtension("posix-rename@openssh.com"); !ok {
		client.Close()
		s.noSFTP = true
		return nil, errNoSFTP
	}
	s.sftp = client
	return client, nil
}
