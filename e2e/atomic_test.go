package e2e

import (
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/slipway-deploy/slipway/internal/deploy"
	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/layout"
	"github.com/slipway-deploy/slipway/internal/testutil"
)

// TestSwitchIsAtomic runs 500 switches over a real SSH connection while a
// reader resolves current as fast as it can. Every read must find a complete
// release: never a missing path, never a mix of two releases (both files
// are read through one resolution of current), never the half-prepared
// release that current must not point at.
func TestSwitchIsAtomic(t *testing.T) {
	switchUnderReads(t, testutil.HostOptions{}, 500, "sftp")
}

// TestSwitchIsAtomicWithoutSFTP is TestSwitchIsAtomic on a host whose sshd
// has no sftp subsystem, where the rename is an exec'd mv -T. Each switch
// is then three commands, not two and an SFTP request; 150 switches keep
// the test's time below the one above, with some hundred thousand reads
// of current overlapping them.
func TestSwitchIsAtomicWithoutSFTP(t *testing.T) {
	switchUnderReads(t, testutil.HostOptions{NoSFTP: true}, 150, "exec")
}

// switchUnderReads switches current back and forth switches times with
// deploy.Switch on one host with opts, whose executor must rename by
// renamePath, while a reader checks every resolution of current.
func switchUnderReads(t *testing.T, opts testutil.HostOptions, switches int, renamePath string) {
	fleet := testutil.StartFleet(t, 1, testutil.Options{Hosts: []testutil.HostOptions{opts}})
	h := fleet.Hosts[0]
	const a, b = "20260101000001", "20260101000002"
	h.Run(t, `set -e; mkdir -p /srv/app/releases && cd /srv/app/releases
for r in `+a+` `+b+`; do mkdir $r; echo $r > $r/one; echo $r > $r/two; done
mkdir 20260101000003 && echo partial > 20260101000003/one
ln -s releases/`+a+` /srv/app/current`)

	ctx := context.Background()
	ex, err := host.DialSSH(ctx, host.SSHTarget{Name: h.Name, Host: h.Name}, host.SSHOptions{Home: fleet.Home})
	if err != nil {
		t.Fatal(err)
	}
	defer ex.Close()
	if got := ex.RenamePath(); got != renamePath {
		t.Fatalf("the executor renames by %q on this host, want %q", got, renamePath)
	}
	l := layout.Layout{DeployTo: "/srv/app", Releases: "releases", Shared: "shared", Current: "current"}

	var stop atomic.Bool
	var reads, failures atomic.Int64
	var firstFailure atomic.Value
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		current := h.Path("/srv/app/current")
		for !stop.Load() {
			if err := readRelease(current, a, b); err != nil {
				failures.Add(1)
				firstFailure.CompareAndSwap(nil, err.Error())
			}
			reads.Add(1)
		}
	}()
	for i := 0; i < switches; i++ {
		id := a
		if i%2 == 0 {
			id = b
		}
		if err := deploy.Switch(ctx, ex, l, id); err != nil {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("switch %d: %v", i, err)
		}
	}
	stop.Store(true)
	wg.Wait()
	t.Logf("%d switches by %s, %d reads of current, %d failures", switches, renamePath, reads.Load(), failures.Load())
	if failures.Load() > 0 {
		t.Fatalf("%d of %d reads saw a missing or mixed release; first: %v", failures.Load(), reads.Load(), firstFailure.Load())
	}
	if reads.Load() < int64(switches) {
		t.Fatalf("only %d reads ran during %d switches: the reader did not overlap the switches", reads.Load(), switches)
	}
	if got := live(t, h); got != a {
		t.Fatalf("after %d switches current is %s, want %s", switches, got, a)
	}
}

// readRelease opens current once and reads both files through that one
// resolution, so a switch between the two reads cannot mix releases.
func readRelease(current string, valid ...string) error {
	root, err := os.OpenRoot(current)
	if err != nil {
		return err
	}
	defer root.Close()
	one, err := readAll(root, "one")
	if err != nil {
		return err
	}
	two, err := readAll(root, "two")
	if err != nil {
		return err
	}
	if one != two {
		return errors.New("mixed release: one=" + one + " two=" + two)
	}
	for _, v := range valid {
		if one == v+"\n" {
			return nil
		}
	}
	return errors.New("current resolved to a release that never went live: " + one)
}

func readAll(root *os.Root, name string) (string, error) {
	f, err := root.Open(name)
	if err != nil {
		return "", err
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	return string(b), err
}
