package deploy

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/layout"
	"github.com/slipway-deploy/slipway/internal/shell"
)

// The deploy lock is a directory, .slipway/lock, made with mkdir (atomic
// on every file system: of two runs racing for it exactly one makes it),
// holding owner.json: who holds it, and a token no other run has. A run
// holds the lock of each of its hosts through one Lock, which refreshes
// them while the run lasts and cancels the run's context when one of them
// is lost.

// LockOwner says who holds a deploy lock, so a refused run can name them.
type LockOwner struct {
	User    string    `json:"user"`
	Machine string    `json:"machine"`
	PID     int       `json:"pid"`
	Command string    `json:"command"`
	Stage   string    `json:"stage"`
	Started time.Time `json:"started"`
	// Expires is when the lock lapses unless its holder refreshes it;
	// zero for a lock that never lapses.
	Expires time.Time `json:"expires,omitzero"`
	// Token tells this run's lock from any other's, so a run never
	// refreshes or removes a lock that is no longer its own.
	Token string `json:"token,omitempty"`
	// Manual marks a lock taken with slipway lock, held until slipway
	// unlock, never stale; Message says why.
	Manual  bool   `json:"manual,omitempty"`
	Message string `json:"message,omitempty"`
}

func newLockToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}

// stale says why a lock found on a host can be taken over, or "": its
// holder ran on this machine and is gone, or it lapsed without refresh.
func (o LockOwner) stale(machine string, now time.Time, alive func(int) bool) string {
	switch {
	case o.Manual:
		return ""
	case o.Machine != "" && o.Machine == machine && o.PID > 0 && !alive(o.PID):
		return fmt.Sprintf("its holder, pid %d on this machine, is no longer running", o.PID)
	case !o.Expires.IsZero() && now.After(o.Expires):
		return fmt.Sprintf("it expired at %s without being refreshed", o.Expires.UTC().Format(time.RFC3339))
	}
	return ""
}

func (o LockOwner) String() string {
	if o.User == "" && o.Machine == "" {
		return "an unknown holder (the lock has no owner details)"
	}
	if o.Manual {
		return fmt.Sprintf("%s@%s with slipway lock since %s: %q", o.User, o.Machine, o.Started.UTC().Format(time.RFC3339), o.Message)
	}
	return fmt.Sprintf("%s@%s (pid %d, %q, since %s)", o.User, o.Machine, o.PID, o.Command, o.Started.UTC().Format(time.RFC3339))
}

// LockStatus says what a lock found on a host is: "manual" (slipway
// lock), "stale: WHY" (its holder is gone or it lapsed: the next run
// takes it over), or "live" (a run holds it, or may: slipway unlock
// refuses it without --force).
func (o LockOwner) LockStatus(now time.Time) string {
	machine, _ := os.Hostname()
	switch why := o.stale(machine, now, processAlive); {
	case o.Manual:
		return "manual"
	case why != "":
		return "stale: " + why
	}
	return "live"
}

// LockedError reports a deploy directory locked by another run.
type LockedError struct {
	Host  string
	Owner LockOwner
	Hint  string // what to do about it, when there is more to say
}

func (e *LockedError) Error() string {
	msg := fmt.Sprintf("deploy directory is locked by %s", e.Owner)
	if e.Hint != "" {
		msg += "; " + e.Hint
	}
	return msg
}

// LockLostError reports a run whose lock on a host was removed or taken
// over while it ran (slipway unlock, a lapse): it stops, and changes
// nothing more.
type LockLostError struct {
	Host string
}

func (e *LockLostError) Error() string {
	return fmt.Sprintf("%s: this run lost its deploy lock (removed by slipway unlock or taken over after it lapsed), so it stopped", e.Host)
}

// joinLost reports a run stopped by the loss of its lock: the loss, and
// any failure other than the cancellation it caused.
func joinLost(lost *LockLostError, err error) error {
	out := []error{lost}
	for _, e := range Errors(err) {
		if !errors.Is(e, context.Canceled) {
			out = append(out, e)
		}
	}
	return errors.Join(out...)
}

// Exit statuses of the lock scripts, distinct from any failure of the
// commands in them: held by someone else, and no longer ours.
const (
	lockedStatus = 75
	lostStatus   = 76
)

// ownerWaitTries is how many times, a tenth of a second apart, a run
// looks again for the owner of a lock that has none yet.
const ownerWaitTries = 30

// goneTries is how often the lock script tries again when its mkdir failed
// and no lock is there: each time, another run released a lock (or slipway
// unlock removed it) in between, so the count is bounded by the runs that
// race; a mkdir that fails for want of permission fails every time.
const goneTries = 20

// acquireScript takes the lock. The owner file is written under another
// name and renamed into place, so a reader sees no owner or the whole of
// it, never half. A run that finds a lock just made, its owner not yet in
// place, looks again for up to three seconds rather than refusing with no
// name to give; if the lock goes meanwhile, it takes it. A lock whose
// owner could not be written (a full disk) would be nobody's, never stale,
// and refuse every later run: it goes at once. A lock that cannot be made
// at all (no permission) is a failure with mkdir's reason, never taken
// for someone else's lock; a lock that was there when mkdir failed and is
// gone the moment after (released, or removed by slipway unlock) is tried
// again, as is a deploy directory made by another run and removed again
// by its release (it had made it on a fresh host) between this run's
// mkdir -p and its mkdir of the lock. From the mkdir until the owner is in
// place the script ignores the signals that stop a cancelled command
// (until SIGKILL, seconds later): stopped in between, it would leave a
// lock without an owner, which no run could tell from a live one.
func acquireScript(l layout.Layout, owner []byte, token string) string {
	return shell.Script(`umask 022
[ -d {{deploy_to}} ] || echo {{created_deploy_to}}
[ -d {{meta}} ] || echo {{created_meta}}
tries=0 gone=0
while :; do
trap '' TERM INT HUP
if why=$(mkdir -- {{lock}} 2>/dev/null || { mkdir -p -- {{meta}} && mkdir -- {{lock}}; } 2>&1); then
  if why=$( { printf '%s\n' {{owner}} | cat > {{tmp}} && mv -f -- {{tmp}} {{file}}; } 2>&1); then
    trap - TERM INT HUP
    break
  else
    status=$?
  fi
  trap - TERM INT HUP
  # The owner could not be written. A forced unlock that removed the lock
  # just made: take it again. Another run's lock made since: locked, or,
  # its owner not yet in place (no file of this run's in it), try again,
  # which waits for that owner. Else (a full disk): remove the lock made,
  # and say why.
  if [ ! -d {{lock}} ]; then
    gone=$((gone + 1)); [ "$gone" -le {{gone}} ] && continue
  elif [ -s {{file}} ]; then
    head -c {{max}} -- {{file}} 2>/dev/null; exit {{locked}}
  elif [ ! -e {{tmp}} ]; then
    gone=$((gone + 1)); [ "$gone" -le {{gone}} ] && continue
  else
    rm -rf -- {{lock}}
  fi
  echo "$why" >&2; exit $status
fi
trap - TERM INT HUP
if [ ! -d {{lock}} ]; then
  gone=$((gone + 1)); [ "$gone" -le {{gone}} ] && continue
  echo "$why" >&2; exit 1
fi
if [ -s {{file}} ] || [ "$tries" -ge {{tries}} ]; then head -c {{max}} -- {{file}} 2>/dev/null; exit {{locked}}; fi
tries=$((tries + 1)); sleep 0.1 2>/dev/null || sleep 1
done`, shell.Args{
		"deploy_to": l.DeployTo, "created_deploy_to": createdDeployTo, "created_meta": createdMeta,
		"meta": l.MetaDir(), "lock": l.LockDir(), "owner": string(owner),
		"tmp": l.LockOwnerFile() + "." + token + ".tmp", "file": l.LockOwnerFile(),
		"tries": ownerWaitTries, "gone": goneTries, "locked": lockedStatus, "max": maxRecordFile,
	})
}

// Lines the lock script prints when it made the deploy directory or
// slipway's own directory in it: releasing the lock removes them again
// while they are empty, so a run that stops before it made a release (a
// failed build, an interrupt) leaves a fresh host as it found it.
const (
	createdDeployTo = "slipway-created deploy_to"
	createdMeta     = "slipway-created .slipway"
)

// refreshScript pushes the lock's expiry forward. The owner file is
// written once, when the lock is taken; a refresh writes the new expiry in
// a file of the lock named after the run's token (expires.TOKEN). The run's
// executor fences it; and should the lock be taken over between the fence
// and the write, what is written can only be a file no other run reads,
// never the new holder's owner file.
func refreshScript(l layout.Layout, token string, expires time.Time) string {
	file := path.Join(l.LockDir(), "expires."+token)
	return shell.Script(`printf '%s\n' {{expires}} > {{tmp}} && mv -f -- {{tmp}} {{file}}`, shell.Args{
		"expires": expires.UTC().Format(time.RFC3339Nano), "tmp": file + ".tmp", "file": file,
	})
}

// releaseScript removes the lock, if it is still the one with token (a
// run that lost its lock leaves the new holder's alone, and says nothing),
// then the directories made, which rmdir removes only while empty. A lock
// it cannot remove fails it, whatever the rmdir after it does. It reads
// the owner file as the fence does (readOwnerScript).
func releaseScript(l layout.Layout, token string, made []string) string {
	script := readOwnerScript(l) + shell.Script(`case $slipway_lock in *{{token}}*) rm -rf -- {{lock}} || exit;; esac`, shell.Args{
		"token": tokenField(token), "lock": l.LockDir(),
	})
	if len(made) > 0 {
		script += shell.Script("\nrmdir -- {{made}} 2>/dev/null || true", shell.Args{"made": made})
	}
	return script
}

// acquire takes the lock on one host and, once it holds it, runs then in
// the same round trip (a run reads the host's state right after locking
// it), returning its output. Whatever then does, the lock stays taken.
func acquire(ctx context.Context, ex host.Executor, l layout.Layout, owner LockOwner, then string) ([]byte, error) {
	body, err := json.Marshal(owner)
	if err != nil {
		return nil, err
	}
	script := acquireScript(l, body, owner.Token)
	if then != "" {
		script += "\n( " + then + "\n) || true"
	}
	res, err := ex.Exec(ctx, host.Command{Script: script})
	var exitErr *host.ExitError
	if errors.As(err, &exitErr) && exitErr.Code == lockedStatus {
		var holder LockOwner
		out := string(res.Stdout)
		for _, marker := range []string{createdDeployTo, createdMeta} {
			out = strings.Replace(out, marker+"\n", "", 1)
		}
		_ = json.Unmarshal([]byte(strings.TrimSpace(out)), &holder)
		return nil, &LockedError{Host: ex.Name(), Owner: holder}
	}
	return res.Stdout, err
}

// removeLock removes the lock on one host, whoever holds it (slipway
// unlock, and the takeover of a stale lock). A holder that is alive may be
// writing its refreshed owner file in the lock meanwhile, which makes one
// rm -rf fail ("Directory not empty"): it tries again.
func removeLock(ctx context.Context, ex host.Executor, l layout.Layout) error {
	_, err := ex.Exec(ctx, host.Command{Script: removeLockScript(l)})
	return err
}

func removeLockScript(l layout.Layout) string {
	return shell.Script(`for i in 1 2 3 4 5; do rm -rf -- {{lock}} 2>/dev/null && exit 0; sleep 0.1 2>/dev/null || sleep 1; done
rm -rf -- {{lock}}`, shell.Args{"lock": l.LockDir()})
}

// takeOver removes a stale lock, stale's: only while its owner file still
// holds that owner's token. The lock may have changed hands since it was
// read (its holder released it as it exited, and another run took it):
// that run's lock stays, and the acquire that follows finds it. A lock
// of an older slipway, with no token, is removed as it is.
func takeOver(ctx context.Context, ex host.Executor, l layout.Layout, stale LockOwner) error {
	script := removeLockScript(l)
	if stale.Token != "" {
		script = readOwnerScript(l) + shell.Script(`case $slipway_lock in *{{token}}*) ;; *) exit 0;; esac`, shell.Args{"token": tokenField(stale.Token)}) + "\n" + script
	}
	_, err := ex.Exec(ctx, host.Command{Script: script})
	return err
}

// Lock is one run's hold on the deploy locks of its hosts. It owns their
// lifetime: Acquire takes a host's lock (taking over a stale one), the
// Lock refreshes every lock it holds while the run lasts (when locks have
// a TTL), Release gives one back, and Context is cancelled, with a
// *LockLostError as its cause, as soon as a lock is found removed or taken
// over: a run that works under that context stops when its lock goes.
type Lock struct {
	layout layout.Layout
	owner  LockOwner
	ttl    time.Duration
	now    func() time.Time
	warn   func(t *Target, format string, args ...any)

	ctx    context.Context
	cancel context.CancelCauseFunc

	mu       sync.Mutex
	held     []*Target
	made     map[*Target][]string // directories the lock script made, innermost first
	released bool                 // release began: refreshing stops

	startRefresh sync.Once
	closeOnce    sync.Once
	stopRefresh  chan struct{}
	refreshDone  chan struct{}
}

func newLock(ctx context.Context, r *run) *Lock {
	l := &Lock{
		layout: r.layout, owner: r.owner, ttl: r.opts.LockTTL, now: r.opts.Now, warn: r.warn,
		stopRefresh: make(chan struct{}),
	}
	l.ctx, l.cancel = context.WithCancelCause(ctx)
	return l
}

// Context is cancelled when the run's context is, or when a lock of the
// run is lost.
func (l *Lock) Context() context.Context { return l.ctx }

// Lost says which lock was lost, if one was.
func (l *Lock) Lost() *LockLostError {
	var lost *LockLostError
	if errors.As(context.Cause(l.ctx), &lost) {
		return lost
	}
	return nil
}

// Acquire takes the lock on t, taking over a stale one (with a warning),
// and runs then once it holds it, returning its output.
func (l *Lock) Acquire(ctx context.Context, t *Target, then string) ([]byte, error) {
	owner := l.freshOwner()
	out, err := acquire(ctx, t.Exec, l.layout, owner, then)
	var locked *LockedError
	if errors.As(err, &locked) {
		why := locked.Owner.stale(l.owner.Machine, l.now(), processAlive)
		if why == "" {
			return nil, err
		}
		l.warn(t, "taking over the lock held by %s: %s", locked.Owner, why)
		if err := takeOver(ctx, t.Exec, l.layout, locked.Owner); err != nil {
			return nil, err
		}
		out, err = acquire(ctx, t.Exec, l.layout, owner, then)
	}
	if err != nil {
		if ctx.Err() != nil {
			l.giveBack(ctx, t)
		}
		return nil, err
	}
	// From now on every change on t is fenced by the lock's token.
	t.Exec = fenced{Executor: t.Exec, fence: fenceScript(l.layout, l.owner.Token)}
	l.mu.Lock()
	l.held = append(l.held, t)
	if made := madeDirs(out, l.layout); len(made) > 0 {
		if l.made == nil {
			l.made = map[*Target][]string{}
		}
		l.made[t] = made
	}
	l.mu.Unlock()
	if l.ttl > 0 {
		l.startRefresh.Do(func() {
			l.refreshDone = make(chan struct{})
			go l.refresh()
		})
	}
	return out, nil
}

// retake takes t's lock again, with the run's own token, after it was
// removed under the run (slipway unlock --force): a run whose lock went in
// the middle of its switch puts the hosts it switched back, rather than
// leave the fleet split, and it needs the lock for that. The fenced
// executor then passes again, and the run's Finish releases the lock as
// usual. A lock another run took meanwhile is waited for, up to
// retakeWait: a run that started just as the lock went finds the fleet
// half switched (or loses the race for the primary host to this one) and
// gives the lock back within a round trip or two; the caller must then
// check that no run switched the host meanwhile. A lock still held after
// retakeWait, or slipway lock's, is a *LockedError, and nothing changed.
func (l *Lock) retake(ctx context.Context, t *Target) error {
	ex := t.Exec
	if f, ok := ex.(fenced); ok {
		ex = f.Executor
	}
	try := func() error {
		_, err := acquire(ctx, ex, l.layout, l.freshOwner(), "")
		return err
	}
	return retryLocked(ctx, retakeWait, try(), try)
}

// retryLocked tries again, a tenth of a second apart for up to wait, while
// err (the last try's) is a lock another run holds, and returns the last
// try's error.
func retryLocked(ctx context.Context, wait time.Duration, err error, try func() error) error {
	for end := time.Now().Add(wait); lockedByRun(err) && time.Now().Before(end); {
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
		err = try()
	}
	return err
}

// retakeWait bounds how long a run that lost its lock during its switch
// waits for another run to give a host's lock back. It is longer than
// lockRaceWait, so that of a run waiting for it in a lock race (which
// holds hosts this one needs) and this one, the other gives up first. (A
// variable for tests.)
var retakeWait = 2 * lockRaceWait

// freshOwner is the run's owner as a lock script writes it: with the
// expiry of a lock taken now, when locks have a TTL.
func (l *Lock) freshOwner() LockOwner {
	owner := l.owner
	if l.ttl > 0 {
		owner.Expires = l.now().Add(l.ttl).UTC()
	}
	return owner
}

// giveBack removes the lock on t if it holds this run's token: a lock
// script stopped by the run's cancellation may have taken the lock before
// it was stopped (or finished just as the run stopped waiting for it),
// and nothing else would release it.
func (l *Lock) giveBack(ctx context.Context, t *Target) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if _, err := t.Exec.Exec(ctx, host.Command{Script: releaseScript(l.layout, l.owner.Token, nil)}); err != nil {
		l.warn(t, "this run may have left its deploy lock: %v; run slipway unlock %s once it has ended", err, l.owner.Stage)
	}
}

// madeDirs reads from the lock script's output which directories it made,
// innermost first.
func madeDirs(out []byte, l layout.Layout) []string {
	var made []string
	for _, line := range strings.Split(string(out), "\n") {
		switch line {
		case createdMeta:
			made = append([]string{l.MetaDir()}, made...)
		case createdDeployTo:
			made = append(made, l.DeployTo)
		}
	}
	return made
}

// Holds reports whether the run holds the lock on t.
func (l *Lock) Holds(t *Target) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Contains(l.held, t)
}

// Release stops refreshing and removes the lock on t, if the run holds it
// there and it is still the run's own.
func (l *Lock) Release(ctx context.Context, t *Target) error {
	l.mu.Lock()
	l.released = true
	held, made := slices.Contains(l.held, t), l.made[t]
	l.mu.Unlock()
	if !held {
		return nil
	}
	if still := t.stillRunning; still != nil {
		// Another run must not start beside what this one left running.
		l.warn(t, "kept the deploy lock: %v; once it has ended, run slipway unlock %s", still, l.owner.Stage)
		return nil
	}
	// The executor's fence would refuse to remove a lost lock: say nothing
	// of it, the loss is reported already.
	_, err := t.Exec.Exec(ctx, host.Command{Script: releaseScript(l.layout, l.owner.Token, made)})
	var lost *LockLostError
	if errors.As(err, &lost) {
		return nil
	}
	return err
}

// execReleasing runs script on t, the run's last work there, and releases
// t's lock in the same round trip, so the release costs none of its own:
// the lock goes only if script succeeded (as in Release, only while it is
// still the run's own), and Finish then has nothing left to do on t.
// Where the run does not hold the lock on t, it runs script alone. exec,
// if not nil, runs the command in place of t.Exec.Exec (a fold's).
func (l *Lock) execReleasing(ctx context.Context, t *Target, script string, exec execFunc) (host.Result, error) {
	if exec == nil {
		exec = t.Exec.Exec
	}
	l.mu.Lock() // waits for a refresh under way, which must not write into a lock being removed
	i := slices.Index(l.held, t)
	if i < 0 || t.stillRunning != nil {
		l.mu.Unlock()
		return exec(ctx, host.Command{Script: script})
	}
	l.held = slices.Delete(l.held, i, i+1) // no refresh of a lock about to go
	made := l.made[t]
	l.mu.Unlock()
	res, err := exec(ctx, host.Command{Script: "( " + script + "\n) || exit\n" + releaseScript(l.layout, l.owner.Token, made)})
	if err != nil {
		l.mu.Lock()
		l.held = append(l.held, t) // Finish releases it, or keeps it where it must
		l.mu.Unlock()
	}
	return res, err
}

// Close stops refreshing; the run is over.
func (l *Lock) Close() {
	l.closeOnce.Do(func() {
		l.mu.Lock()
		l.released = true
		l.mu.Unlock()
		close(l.stopRefresh)
		l.startRefresh.Do(func() {}) // no refresher starts after this
		if l.refreshDone != nil {
			<-l.refreshDone
		}
		l.cancel(context.Canceled)
	})
}

// refresh keeps the locks of a long run from lapsing: every third of the
// TTL it pushes their expiry forward on every host it holds. A lock found
// removed or taken over cancels the run.
func (l *Lock) refresh() {
	defer close(l.refreshDone)
	ticker := time.NewTicker(l.ttl / 3)
	defer ticker.Stop()
	for {
		select {
		case <-l.stopRefresh:
			return
		case <-l.ctx.Done():
			return
		case <-ticker.C:
		}
		script := refreshScript(l.layout, l.owner.Token, l.now().Add(l.ttl))
		// Holding mu keeps a release from running under a refresh, which
		// could otherwise leave a file in the lock being removed.
		l.mu.Lock()
		if l.released {
			l.mu.Unlock()
			return
		}
		for _, t := range l.held {
			_, err := t.Exec.Exec(l.ctx, host.Command{Script: script})
			var lost *LockLostError
			switch {
			case errors.As(err, &lost):
				l.cancel(lost)
			case err != nil && l.ctx.Err() == nil:
				l.warn(t, "could not refresh the deploy lock: %v", err)
			}
		}
		l.mu.Unlock()
	}
}

// lockSteps take the deploy lock on every host at once. Of several runs
// racing for one stage, exactly one gets the primary host's lock, and only
// that one goes on: a run that finds another host locked waits for the
// primary's outcome; if it holds the primary, the other run has lost the
// race and gives its locks back within a round trip or two, so it tries
// that host again for up to lockRaceWait; if not, it fails. (Taken one
// after another, primary first, the lock cost every run one round trip
// more.) Finish releases the lock whether the run succeeded or not.
//
// With inspect, each host's state is read in the same round trip as its
// lock is taken, and the inspect step that follows uses it.
func lockSteps(r *run, inspect *inspectStep) []Step {
	return []Step{perHost(lockStep{r: r, inspect: inspect, race: newLockRace(r)})}
}

// lockRaceWait bounds how long a run that holds the primary host's lock
// waits for a run that lost the race to give back another host's.
const lockRaceWait = 10 * time.Second

// lockRace is the outcome of the primary host's lock, which every other
// host's lock waits for when it finds another run's.
type lockRace struct {
	primary *Target
	done    chan struct{} // closed once the primary's lock is taken or refused
	won     bool
}

func newLockRace(r *run) *lockRace {
	return &lockRace{primary: r.primary(), done: make(chan struct{})}
}

func (lr *lockRace) settle(err error) {
	lr.won = err == nil
	close(lr.done)
}

// holdsPrimary waits for the primary's outcome: whether this run holds its
// lock. (The primary's lock is the first the step takes, and it settles
// the race whatever happens; the bound only keeps a mistake from hanging
// the run.)
func (lr *lockRace) holdsPrimary(ctx context.Context) bool {
	if lr.primary == nil {
		return false
	}
	select {
	case <-lr.done:
		return lr.won
	case <-ctx.Done():
	case <-time.After(2 * time.Minute):
	}
	return false
}

type lockStep struct {
	r       *run
	inspect *inspectStep
	race    *lockRace
	// only, for slipway lock's steps, takes the lock on the primary host
	// only (true) or on the others only (false); nil for every host.
	only *bool
}

func (lockStep) Name() string { return "lock" }

// Where keeps the lock to hosts that take releases (for slipway lock, to
// the half that only names), silently.
func (s lockStep) Where(t *Target) Selection {
	if t.Host.NoRelease || (s.only != nil && (t == s.r.primary()) != *s.only) {
		return NotHere
	}
	return RunHere
}

func (s lockStep) Run(ctx context.Context, t *Target) error {
	then := ""
	if s.inspect != nil {
		then = s.inspect.script()
	}
	out, err := s.r.lock.Acquire(ctx, t, then)
	switch {
	case s.race == nil:
	case t == s.race.primary:
		s.race.settle(err)
	case lockedByRun(err) && s.race.holdsPrimary(ctx):
		// The holder lost the race for the primary host: it gives this
		// host's lock back as it stops.
		err = retryLocked(ctx, lockRaceWait, err, func() error {
			var err error
			out, err = s.r.lock.Acquire(ctx, t, then)
			return err
		})
	}
	t.prefetched = out
	return err
}

// lockedByRun says whether err is a lock held by another run (not slipway
// lock's, which is given back only by slipway unlock).
func lockedByRun(err error) bool {
	var locked *LockedError
	return errors.As(err, &locked) && !locked.Owner.Manual
}

// Plan reads the host's state without taking its lock: a dry run shows
// the lock's holder instead of waiting for it.
func (s lockStep) Plan(ctx context.Context, t *Target) error {
	if s.inspect == nil {
		return nil
	}
	res, err := t.Exec.Query(ctx, host.Command{Script: s.inspect.script()})
	t.prefetched = res.Stdout
	return err
}

func (s lockStep) Finish(ctx context.Context, t *Target) error {
	return s.r.lock.Release(ctx, t)
}
