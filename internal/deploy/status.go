package deploy

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// FleetStatus is what `slipway status` reports: what each host serves and
// whether the fleet agrees on it.
type FleetStatus struct {
	Stage string       `json:"stage"`
	Hosts []HostStatus `json:"hosts"` // in stage order
	// OK is true when every host was read and all are live on one release.
	OK bool `json:"ok"`
	// Agree is true when every host that was read is live on the same
	// release, or none has anything live yet.
	Agree bool   `json:"agree"`
	Live  string `json:"live,omitempty"` // the release they agree on
	// Groups are the hosts by live release when they disagree, the
	// largest group first.
	Groups []LiveGroup `json:"groups,omitempty"`
	// Partial are the releases present on some hosts that were read and
	// missing on others, newest first.
	Partial     []PartialRelease `json:"partial,omitempty"`
	Unreachable []string         `json:"unreachable,omitempty"` // hosts that could not be connected to
	// SharedDrift are the shared files whose copies differ between the
	// hosts that were read, in shared.files order.
	SharedDrift []SharedDrift `json:"shared_drift,omitempty"`
}

// SharedDrift is a shared file the hosts hold different copies of.
type SharedDrift struct {
	Name string `json:"name"`
	// Copies are the hosts by their copy, the largest group first (the
	// odd hosts last).
	Copies []SharedCopies `json:"copies"`
}

// SharedCopies are the hosts holding one copy of a shared file.
type SharedCopies struct {
	// Sum is the copy's SHA-256; "" where the file is missing, "?" where
	// it could not be read.
	Sum   string   `json:"sha256"`
	Hosts []string `json:"hosts"`
}

// HostStatus is one host as `slipway status` shows it.
type HostStatus struct {
	Host      string `json:"host"`
	Reachable bool   `json:"reachable"`
	// Error says why the host could not be reached or read; the other
	// fields are then unknown.
	Error string `json:"error,omitempty"`
	Live  string `json:"live,omitempty"` // the release current points at
	// LiveMeta is what slipway recorded about the live release; nil for a
	// release another tool made.
	LiveMeta *ReleaseMeta `json:"live_meta,omitempty"`
	Lock     *LockOwner   `json:"lock,omitempty"` // who holds the deploy lock, if anyone
	// LockStatus is the lock's: live, manual, or stale (see
	// LockOwner.LockStatus).
	LockStatus string   `json:"lock_status,omitempty"`
	Releases   []string `json:"releases"` // the release directories present, oldest first
	// Shared is the SHA-256 of each shared file on the host: "" when it
	// is missing, "?" when it could not be read; nil when the deploy
	// directory does not exist.
	Shared map[string]string `json:"shared,omitempty"`
}

// LiveGroup is the hosts live on one release.
type LiveGroup struct {
	Release string   `json:"release"` // "" for hosts where nothing is live
	Hosts   []string `json:"hosts"`
}

// PartialRelease is a release some hosts have and others lack.
type PartialRelease struct {
	ID      string   `json:"id"`
	Hosts   []string `json:"hosts"`
	Missing []string `json:"missing"`
}

// Status reads every selected host and reports what it serves. It takes no
// lock and changes nothing. A host that cannot be reached or read is
// reported in the result, not as an error: the rest of the fleet is still
// worth seeing. The error is only for a run that could not happen at all
// (interrupted).
func Status(ctx context.Context, opts Options) (*FleetStatus, error) {
	r := newRun(ctx, opts)
	failures := make([]*HostError, len(r.targets))
	connect, inspect := connectStep{r: r}, inspectStep{r: r, sums: opts.Config.Shared.Files}
	// One step that records failures instead of returning them: the runner
	// stops a pipeline at the first failing host, and status must go on.
	read := stepFunc{name: "status", fn: func(ctx context.Context, t *Target) error {
		if err := connect.Run(ctx, t); err != nil {
			failures[t.Index] = &HostError{Host: t.Name(), Step: connect.Name(), Err: err}
			return nil
		}
		// The state is read by then; a failed close loses nothing.
		defer t.Exec.Close()
		if err := inspect.Run(ctx, t); err != nil {
			failures[t.Index] = &HostError{Host: t.Name(), Step: inspect.Name(), Err: err}
		}
		return nil
	}}
	if err := r.pipeline([]Step{perHost(read)}); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	st := fleetStatus(opts.Stage.Name, r.targets, failures, r.opts.Now())
	st.SharedDrift = sharedDrift(withState(r.targets), opts.Config.Shared.Files)
	st.OK = st.OK && len(st.SharedDrift) == 0
	return st, nil
}

// sharedDrift lists the shared files whose copies differ between the
// hosts that were read.
func sharedDrift(read []*Target, names []string) []SharedDrift {
	var out []SharedDrift
	for _, name := range names {
		var copies []SharedCopies
		index := map[string]int{}
		for _, t := range read {
			sum := t.State.SharedSums[name]
			i, ok := index[sum]
			if !ok {
				i = len(copies)
				index[sum] = i
				copies = append(copies, SharedCopies{Sum: sum})
			}
			copies[i].Hosts = append(copies[i].Hosts, t.Name())
		}
		if len(copies) <= 1 {
			continue
		}
		sort.SliceStable(copies, func(i, j int) bool { return len(copies[i].Hosts) > len(copies[j].Hosts) })
		out = append(out, SharedDrift{Name: name, Copies: copies})
	}
	return out
}

// fleetStatus sums up the hosts' states. failures holds, for each target
// in the same position, why it could not be read (nil if it was).
func fleetStatus(stage string, targets []*Target, failures []*HostError, now time.Time) *FleetStatus {
	fs := &FleetStatus{Stage: stage, Hosts: []HostStatus{}}
	var read []*Target
	for i, t := range targets {
		hs := HostStatus{Host: t.Name(), Reachable: true}
		if he := failures[i]; he != nil {
			var unreachable *ConnectError
			hs.Reachable = !errors.As(he, &unreachable)
			hs.Error = strings.TrimPrefix(he.Error(), t.Name()+": ")
			if !hs.Reachable {
				fs.Unreachable = append(fs.Unreachable, t.Name())
			}
			fs.Hosts = append(fs.Hosts, hs)
			continue
		}
		st := t.State
		hs.Live, hs.LiveMeta, hs.Lock = st.Current, st.Meta[st.Current], st.Lock
		if st.Lock != nil {
			hs.LockStatus = st.Lock.LockStatus(now)
		}
		hs.Releases = append([]string{}, st.Releases...)
		hs.Shared = st.SharedSums
		fs.Hosts = append(fs.Hosts, hs)
		read = append(read, t)
	}
	drift := Drift(read)
	fs.Agree = drift == nil
	if fs.Agree && len(read) > 0 {
		fs.Live = read[0].State.Current
	}
	if drift != nil {
		fs.Groups = drift.groups()
	}
	fs.Partial = partialReleases(read)
	fs.OK = fs.Agree && len(read) == len(targets)
	return fs
}

// partialReleases lists the releases that some of the read hosts lack,
// newest first.
func partialReleases(read []*Target) []PartialRelease {
	have := map[string][]string{}
	for _, t := range read {
		for _, id := range t.State.Releases {
			have[id] = append(have[id], t.Name())
		}
	}
	var out []PartialRelease
	for id, hosts := range have {
		if len(hosts) == len(read) {
			continue
		}
		p := PartialRelease{ID: id, Hosts: hosts}
		for _, t := range read {
			if !t.State.HasRelease(id) {
				p.Missing = append(p.Missing, t.Name())
			}
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID > out[j].ID })
	return out
}

// DriftError reports hosts live on different releases: a fleet a deploy
// should not silently paper over.
type DriftError struct {
	Groups map[string][]string // live release ("" for none) -> host names, in stage order
	// Stage names the stage in the hint; the caller sets it.
	Stage string
}

func (e *DriftError) Error() string {
	var parts []string
	for _, g := range e.groups() {
		parts = append(parts, g.String())
	}
	stage := e.Stage
	if stage == "" {
		stage = "STAGE"
	}
	return fmt.Sprintf("hosts disagree on the live release: %s; to deploy anyway, run: slipway deploy %s --force (or roll the odd hosts back/forward first; slipway status %s shows the details)",
		strings.Join(parts, "; "), stage, stage)
}

// groups orders the groups for people: the largest first, so the odd hosts
// come last; among equals the newest release first, and hosts with nothing
// live last.
func (e *DriftError) groups() []LiveGroup {
	var out []LiveGroup
	for id, hosts := range e.Groups {
		out = append(out, LiveGroup{Release: id, Hosts: hosts})
	}
	sort.Slice(out, func(i, j int) bool {
		if len(out[i].Hosts) != len(out[j].Hosts) {
			return len(out[i].Hosts) > len(out[j].Hosts)
		}
		return out[i].Release > out[j].Release
	})
	return out
}

// String reads "20261122103015 on web1, web2" or "nothing live on web3".
func (g LiveGroup) String() string {
	release := g.Release
	if release == "" {
		release = "nothing live"
	}
	return release + " on " + strings.Join(g.Hosts, ", ")
}

// Drift reports whether the hosts that were inspected (those with a State)
// are live on different releases. Fresh hosts, with nothing live, form a
// group of their own only beside hosts that have something live: a fleet
// where every host is fresh agrees.
func Drift(targets []*Target) *DriftError {
	groups := map[string][]string{}
	for _, t := range targets {
		if t.State == nil {
			continue
		}
		groups[t.State.Current] = append(groups[t.State.Current], t.Name())
	}
	if len(groups) <= 1 {
		return nil
	}
	return &DriftError{Groups: groups}
}
