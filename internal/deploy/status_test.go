package deploy

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

// withStates gives each target the state of a host live on current[i] ("" for
// nothing live) with the given releases; a nil entry leaves it unread.
func withStates(ts []*Target, states ...*State) []*Target {
	for i, s := range states {
		ts[i].State = s
	}
	return ts
}

func hostState(current string, releases ...string) *State {
	return &State{Current: current, Releases: releases, Meta: map[string]*ReleaseMeta{}}
}

func TestDriftAgreeingFleets(t *testing.T) {
	for name, ts := range map[string][]*Target{
		"all live on one release": withStates(targets("web1", "web2", "web3"),
			hostState("20261122103015", "20261121090000", "20261122103015"),
			hostState("20261122103015", "20261122103015"),
			hostState("20261122103015", "20261122103015")),
		"all fresh": withStates(targets("web1", "web2"), &State{}, hostState("")),
		"unread hosts do not count": withStates(targets("web1", "web2", "web3"),
			hostState("20261122103015"), nil, hostState("20261122103015")),
		"nothing read": targets("web1", "web2"),
	} {
		if d := Drift(ts); d != nil {
			t.Errorf("%s: Drift = %v, want nil", name, d)
		}
	}
}

func TestDriftGroupsAndMessage(t *testing.T) {
	ts := withStates(targets("web1", "web2", "web3"),
		hostState("20261122103015"), hostState("20261122103015"), hostState("20261121090000"))
	d := Drift(ts)
	if d == nil {
		t.Fatal("Drift = nil for hosts on two releases")
	}
	want := map[string][]string{"20261122103015": {"web1", "web2"}, "20261121090000": {"web3"}}
	if !reflect.DeepEqual(d.Groups, want) {
		t.Errorf("Groups = %v, want %v", d.Groups, want)
	}
	d.Stage = "production"
	msg := "hosts disagree on the live release: 20261122103015 on web1, web2; 20261121090000 on web3; " +
		"to deploy anyway, run: slipway deploy production --force (or roll the odd hosts back/forward first; slipway status production shows the details)"
	if d.Error() != msg {
		t.Errorf("Error() =\n%s\nwant\n%s", d.Error(), msg)
	}
	var err error = d
	var de *DriftError
	if !errors.As(err, &de) {
		t.Error("errors.As does not find the *DriftError")
	}
}

func TestDriftFreshHostBesideLiveOnes(t *testing.T) {
	// A fresh host beside live ones is its own group, and among groups of
	// one size the newest release comes first and "nothing live" last.
	ts := withStates(targets("web1", "web2", "web3"),
		&State{}, hostState("20261121090000"), hostState("20261122103015"))
	d := Drift(ts)
	if d == nil {
		t.Fatal("Drift = nil for a fresh host beside live ones")
	}
	if got := d.Groups[""]; !reflect.DeepEqual(got, []string{"web1"}) {
		t.Errorf("fresh group = %v, want [web1]", got)
	}
	want := "hosts disagree on the live release: 20261122103015 on web3; 20261121090000 on web2; nothing live on web1; "
	if got := d.Error(); len(got) < len(want) || got[:len(want)] != want {
		t.Errorf("Error() = %s\nwant it to start with %s", got, want)
	}
}

func TestFleetStatusSummary(t *testing.T) {
	const older, live, rolledBack, newest = "20261120080000", "20261121090000", "20261122103015", "20261123120000"
	when := time.Date(2026, 11, 22, 10, 30, 15, 0, time.UTC)
	ts := targets("host1", "host2", "host3", "host4", "host5", "host6")
	ts[0].State = hostState(newest, older, live, rolledBack, newest)
	ts[0].State.Meta[newest] = &ReleaseMeta{ID: newest, State: StateDeployed, LiveAt: when, User: "alice", Revision: "abc123", Branch: "main"}
	ts[1].State = hostState(rolledBack, older, live, rolledBack)
	ts[1].State.Lock = &LockOwner{User: "ghost", Machine: "ci-7", PID: 4242, Command: "deploy production"}
	ts[2].State = hostState(rolledBack, older, live, rolledBack)
	ts[3].State = hostState(live, live, rolledBack)
	ts[4].State = hostState(live, live, rolledBack)
	failures := make([]*HostError, len(ts))
	failures[5] = &HostError{Host: "host6", Step: "connect", Err: &ConnectError{Host: "host6", Err: errors.New("host6: dial tcp 127.0.0.1:2222: connection refused")}}

	fs := fleetStatus("production", ts, failures, time.Now())

	if fs.OK || fs.Agree || fs.Live != "" {
		t.Errorf("OK, Agree, Live = %v, %v, %q; want a fleet that disagrees", fs.OK, fs.Agree, fs.Live)
	}
	wantGroups := []LiveGroup{
		{Release: rolledBack, Hosts: []string{"host2", "host3"}},
		{Release: live, Hosts: []string{"host4", "host5"}},
		{Release: newest, Hosts: []string{"host1"}},
	}
	if !reflect.DeepEqual(fs.Groups, wantGroups) {
		t.Errorf("Groups = %v, want %v", fs.Groups, wantGroups)
	}
	wantPartial := []PartialRelease{
		{ID: newest, Hosts: []string{"host1"}, Missing: []string{"host2", "host3", "host4", "host5"}},
		{ID: older, Hosts: []string{"host1", "host2", "host3"}, Missing: []string{"host4", "host5"}},
	}
	if !reflect.DeepEqual(fs.Partial, wantPartial) {
		t.Errorf("Partial = %+v, want %+v", fs.Partial, wantPartial)
	}
	if !reflect.DeepEqual(fs.Unreachable, []string{"host6"}) {
		t.Errorf("Unreachable = %v", fs.Unreachable)
	}
	if len(fs.Hosts) != 6 {
		t.Fatalf("got %d hosts, want 6", len(fs.Hosts))
	}
	h1, h2, h6 := fs.Hosts[0], fs.Hosts[1], fs.Hosts[5]
	if h1.Live != newest || h1.LiveMeta == nil || h1.LiveMeta.User != "alice" || !h1.LiveMeta.LiveAt.Equal(when) || h1.Lock != nil {
		t.Errorf("host1 = %+v", h1)
	}
	if !reflect.DeepEqual(h1.Releases, []string{older, live, rolledBack, newest}) {
		t.Errorf("host1 releases = %v", h1.Releases)
	}
	if h2.LiveMeta != nil || h2.Lock == nil || h2.Lock.User != "ghost" {
		t.Errorf("host2 = %+v, want no metadata (adopted release) and ghost's lock", h2)
	}
	if h6.Reachable || h6.Error != "connect: dial tcp 127.0.0.1:2222: connection refused" || h6.Live != "" {
		t.Errorf("host6 = %+v, want unreachable with the connect error", h6)
	}
}

func TestFleetStatusAgreeing(t *testing.T) {
	const live = "20261122103015"
	ts := withStates(targets("host1", "host2"), hostState(live, live), hostState(live, live))
	fs := fleetStatus("production", ts, make([]*HostError, 2), time.Now())
	if !fs.OK || !fs.Agree || fs.Live != live || fs.Groups != nil || fs.Partial != nil || fs.Unreachable != nil {
		t.Errorf("status = %+v, want all agreeing on %s", fs, live)
	}

	// A host that was reached but not read is not unreachable, yet the
	// fleet is not OK: its state is unknown.
	failures := make([]*HostError, 2)
	failures[1] = &HostError{Host: "host2", Step: "inspect", Err: errors.New("permission denied")}
	ts[1].State = nil
	fs = fleetStatus("production", ts, failures, time.Now())
	if fs.OK || !fs.Agree || fs.Live != live || fs.Unreachable != nil {
		t.Errorf("status = %+v, want agreeing but not OK", fs)
	}
	if h := fs.Hosts[1]; !h.Reachable || h.Error != "inspect: permission denied" {
		t.Errorf("host2 = %+v", h)
	}
}
