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
	s.trips.Add(1)
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

// sftpOpen is the opening of the connection's SFTP client, started once
// (by DialSSH, ahead of need) and shared by every caller.
type sftpOpen struct {
	done   chan struct{}
	client *sftp.Client
	err    error // errNoSFTP where the server has none
}

// openSFTP starts opening the SFTP client, once: a switch then finds it
// open, and pays none of its three round trips.
func (s *SSH) openSFTP() *sftpOpen {
	s.sftpMu.Lock()
	defer s.sftpMu.Unlock()
	if s.sftpOpen == nil {
		o := &sftpOpen{done: make(chan struct{})}
		s.sftpOpen = o
		go func() {
			defer close(o.done)
			o.client, o.err = s.newSFTP()
		}()
	}
	return s.sftpOpen
}

// sftpClient returns the connection's SFTP client, waiting for it to open;
// errNoSFTP where the server has none.
func (s *SSH) sftpClient() (*sftp.Client, error) {
	o := s.openSFTP()
	select {
	case <-o.done:
	default:
		s.trips.Add(3) // waited for it: channel, subsystem, version (trips.go)
		<-o.done
	}
	return o.client, o.err
}

func (s *SSH) newSFTP() (*sftp.Client, error) {
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
		return nil, errNoSFTP
	}
	if _, ok := client.HasExtension("posix-rename@openssh.com"); !ok {
		client.Close()
		return nil, errNoSFTP
	}
	return client, nil
}
