package deploy

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/layout"
	"github.com/slipway-deploy/slipway/internal/shell"
)

// The switch, the same for deploy, rollback and a switch back: a symlink
// to the release under a temporary name (prepareSwitch), then one
// rename(2) of it over current (the executor's Rename: SFTP's
// posix-rename, or mv -T where the host has no SFTP), then a sync of the
// deploy directory and a read of the link (verifySwitch). current is never
// removed or rewritten in place.
//
// A run holding the deploy lock makes its temporary link inside the lock
// directory (layout.LockedSwitchLink): the switch is fenced by the lock
// itself, atomically. If the lock was removed (slipway unlock --force) or
// taken over, the link is gone with it and the rename fails; a run that
// lost its lock never switches.

// prepareSwitchStep makes the release durable and creates the temporary link
// that the switch renames over current, so the switch itself is one rename.
type prepareSwitchStep struct {
	releaseHosts
	d *deployRun
}

func (prepareSwitchStep) Name() string { return "sync" }

func (s prepareSwitchStep) Run(ctx context.Context, t *Target) error { return runScripted(ctx, s, t) }

func (s prepareSwitchStep) script(context.Context, *Target) (string, error) {
	l, id := s.d.layout, s.d.releaseID
	return prepareSwitchScript(l, l.LockedSwitchLink(id), id, true), nil
}

// done opens the rename channel now, so the switch is one round trip.
func (prepareSwitchStep) done(ctx context.Context, t *Target) error {
	return t.Exec.PrepareRename(ctx)
}

func (prepareSwitchStep) Plan(context.Context, *Target) error { return nil }

func (s prepareSwitchStep) Undo(ctx context.Context, t *Target) error {
	_, err := t.Exec.Exec(ctx, host.Command{Script: "rm -f -- " + shell.Quote(s.d.layout.LockedSwitchLink(s.d.releaseID))})
	return err
}

// prepareSwitch creates link, pointing at release id, after syncing the
// release with syncRelease.
func prepareSwitch(ctx context.Context, ex host.Executor, l layout.Layout, link, id string, syncRelease bool) error {
	_, err := ex.Exec(ctx, host.Command{Script: prepareSwitchScript(l, link, id, syncRelease)})
	return err
}

func prepareSwitchScript(l layout.Layout, link, id string, syncRelease bool) string {
	script := shell.Script("rm -f -- {{link}} && ln -s -- {{target}} {{link}}", shell.Args{
		"link": link, "target": l.CurrentTarget(id),
	})
	if syncRelease {
		// sync -f flushes the file system holding the release (syncfs).
		script = syncScript("-f", l.ReleaseDir(id)) + " && " + script
	}
	return script
}

// syncScript flushes path to disk with sync (opt "-f": the whole file
// system holding it, "": path itself), and fails with sync's message if
// that fails: a write-back error (a failing disk, a thin pool full)
// stops the run before it switches to what may not be on disk. Only a
// sync that does not take the option or the path (an old coreutils or
// BusyBox) falls back to a plain sync, of every file system.
func syncScript(opt, path string) string {
	sync := "sync"
	if opt != "" {
		sync += " " + opt
	}
	return shell.Script(`{ slipway_sync=$(LC_ALL=C {{sync}} -- {{path}} 2>&1) || case $slipway_sync in *option*|*operand*|*sage*) sync;; *) printf '%s\n' "$slipway_sync" >&2; exit 1;; esac; }`,
		shell.Args{"sync": shell.Raw(sync), "path": path})
}

// switchTo renames link over current, syncs the deploy directory so the
// rename is durable, and reads the link back.
func switchTo(ctx context.Context, ex host.Executor, l layout.Layout, link, id string) error {
	if err := ex.Rename(ctx, link, l.CurrentLink()); err != nil {
		return fmt.Errorf("rename %s over %s: %w", link, l.CurrentLink(), err)
	}
	_, err := verifySwitch(ctx, ex, l, id)
	return err
}

// Switch points current at release id on one host with the same two-step
// switch a deploy uses: a temporary link, then one rename over current. It
// takes no lock.
func Switch(ctx context.Context, ex host.Executor, l layout.Layout, id string) error {
	link := l.SwitchTempLink(id)
	if err := prepareSwitch(ctx, ex, l, link, id, false); err != nil {
		return err
	}
	return switchTo(ctx, ex, l, link, id)
}

// lockedSwitch is the switch of a run that holds the lock (a rollback, a
// switch back), in one script: the link made in the lock directory, one
// rename(2) of it over current (mv -T, GNU or BusyBox), the sync and the
// read back. One round trip, where preparing, renaming over SFTP and
// verifying take three; a deploy's rollout, which fires many hosts'
// renames at one moment, prepares instead (prepareSwitchStep).
func lockedSwitch(ctx context.Context, ex host.Executor, l layout.Layout, id string) error {
	return markedSwitch(ctx, ex, l, id, "", "")
}

// markedSwitch is lockedSwitch with the scripts of markedSwitchScript.
func markedSwitch(ctx context.Context, ex host.Executor, l layout.Layout, id, mark, unmark string) error {
	res, err := ex.Exec(ctx, host.Command{Script: markedSwitchScript(l, id, mark, unmark)})
	if err != nil {
		return fmt.Errorf("switching %s to release %s: %w", l.CurrentLink(), id, err)
	}
	_, err = readSwitch(res.Stdout, l, id)
	return err
}

func lockedSwitchScript(l layout.Layout, id string) string { return markedSwitchScript(l, id, "", "") }

// markedSwitchScript is lockedSwitchScript with the script mark run
// before the switch and unmark should the rename not happen ("" for
// neither): a rollback marks the release it leaves in its switch's
// command.
func markedSwitchScript(l layout.Layout, id, mark, unmark string) string {
	rename := prepareSwitchScript(l, l.LockedSwitchLink(id), id, false) + shell.Script(` && mv -f -T -- {{link}} {{current}}`,
		shell.Args{"link": l.LockedSwitchLink(id), "current": l.CurrentLink()})
	if mark == "" {
		return rename + " || exit\n" + verifySwitchScript(l)
	}
	return "{ " + mark + "; } || exit\n{ " + rename + "; } || { s=$?; " + unmark + "; exit $s; }\n" + verifySwitchScript(l)
}

// switchBack points current at previous again with the same atomic switch;
// with no previous release (a first deploy) it removes current, as it was.
func switchBack(ctx context.Context, ex host.Executor, l layout.Layout, previous string) error {
	if previous == "" {
		_, err := ex.Exec(ctx, host.Command{Script: "rm -f -- " + shell.Quote(l.CurrentLink())})
		return err
	}
	return lockedSwitch(ctx, ex, l, previous)
}

// movedStatus is the exit status of switchBackFromScript when current no
// longer points at the release the run switched to.
const movedStatus = 77

// MovedOnError reports a host that another run switched, while this run's
// lock was gone, away from the release this run had put live there: the
// host is that run's now, and this run leaves it as it is.
type MovedOnError struct {
	Host string
	Link string // what current points at now
}

func (e *MovedOnError) Error() string {
	to := e.Link
	if to == "" {
		to = "nothing (current removed)"
	}
	return fmt.Sprintf("another run switched %s to %s while this run's lock was gone; left as it is", e.Host, to)
}

// live is the release current points at now, "" for none.
func (e *MovedOnError) live() string {
	if e.Link == "" {
		return ""
	}
	return path.Base(e.Link)
}

// switchBackFrom is switchBack for a run that took its lock again after
// losing it: it switches only while current still points at release from,
// the one this run put live there; else it changes nothing and returns a
// *MovedOnError. The check and the switch are one script under the lock.
func switchBackFrom(ctx context.Context, ex host.Executor, l layout.Layout, from, previous string) error {
	res, err := ex.Exec(ctx, host.Command{Script: switchBackFromScript(l, from, previous)})
	var exitErr *host.ExitError
	if errors.As(err, &exitErr) && exitErr.Code == movedStatus {
		return &MovedOnError{Host: ex.Name(), Link: strings.TrimSpace(string(res.Stdout))}
	}
	if err != nil {
		return fmt.Errorf("switching %s back to release %q: %w", l.CurrentLink(), previous, err)
	}
	if previous == "" {
		return nil
	}
	_, err = readSwitch(res.Stdout, l, previous)
	return err
}

func switchBackFromScript(l layout.Layout, from, previous string) string {
	script := shell.Script(`slipway_live=$(readlink -- {{current}}) || { [ ! -L {{current}} ] || exit 1; slipway_live=; }
[ "$slipway_live" = {{from}} ] || { printf '%s\n' "$slipway_live"; exit {{moved}}; }
`, shell.Args{"current": l.CurrentLink(), "from": l.CurrentTarget(from), "moved": movedStatus})
	if previous == "" {
		return script + "rm -f -- " + shell.Quote(l.CurrentLink())
	}
	return script + lockedSwitchScript(l, previous)
}

// verifySwitch syncs the deploy directory, so the rename survives a crash,
// reads current back, and returns the host's time of the rename.
func verifySwitch(ctx context.Context, ex host.Executor, l layout.Layout, id string) (time.Time, error) {
	res, err := ex.Exec(ctx, host.Command{Script: verifySwitchScript(l)})
	if err != nil {
		return time.Time{}, err
	}
	return readSwitch(res.Stdout, l, id)
}

// readSwitch reads what verifySwitchScript printed: the link, which must
// point at release id, and the host's time of the rename.
func readSwitch(out []byte, l layout.Layout, id string) (time.Time, error) {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 1 || lines[0] != l.CurrentTarget(id) {
		return time.Time{}, fmt.Errorf("%s points at %q after the switch, want %q", l.CurrentLink(), lines[0], l.CurrentTarget(id))
	}
	var remote time.Time
	if len(lines) > 1 {
		// BusyBox's date has no %N: its seconds are what there is.
		sec, frac, _ := strings.Cut(lines[1], ".")
		if n, err := strconv.ParseInt(sec, 10, 64); err == nil {
			ns, _ := strconv.ParseInt((frac + "000000000")[:9], 10, 64)
			remote = time.Unix(n, ns)
		}
	}
	return remote, nil
}

func verifySwitchScript(l layout.Layout) string {
	return syncScript("", l.DeployTo) + shell.Script(" && readlink -- {{current}} && date -r {{deploy_to}} +%s.%N", shell.Args{
		"deploy_to": l.DeployTo, "current": l.CurrentLink(),
	})
}
