package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/slipway-deploy/slipway/internal/layout"
)

// Release states kept in a release's metadata. What is live and what is the
// rollback target are not stored: they follow from the current link.
const (
	StatePreparing   = "preparing"   // being built; a leftover of a killed run if no run holds the lock
	StateDeployed    = "deployed"    // went live at some point
	StateFailed      = "failed"      // never went live
	StateInterrupted = "interrupted" // never went live: its run was interrupted (Ctrl-C, SIGTERM, …)
	StateRolledBack  = "rolled_back" // went live, then was rolled back from
)

// ReleaseMeta is what slipway records about a release on each host, in
// .slipway/releases/<id>.json. A release directory without one was not made
// by slipway (for instance by Capistrano): it is listed and can be rolled
// back to, but cleanup never deletes it.
type ReleaseMeta struct {
	ID         string    `json:"id"`
	State      string    `json:"state"`
	CreatedAt  time.Time `json:"created_at"`
	LiveAt     time.Time `json:"live_at,omitzero"`
	RolledBack time.Time `json:"rolled_back_at,omitzero"`
	User       string    `json:"user"`
	Machine    string    `json:"machine"`
	Stage      string    `json:"stage"`
	Revision   string    `json:"revision,omitempty"`
	Branch     string    `json:"branch,omitempty"`
	Digest     string    `json:"digest,omitempty"`
	Dirty      bool      `json:"dirty,omitempty"`
	Error      string    `json:"error,omitempty"`
	// Migrations are the names of the files in migrations.path the release
	// shipped, sorted; nil when not recorded (no migrations.path then).
	Migrations *[]string `json:"migrations,omitempty"`

	// PromotedFrom is the release whose tree this one ships, as
	// "STAGE@RELEASE", for a release deployed with --from.
	PromotedFrom string `json:"promoted_from,omitempty"`
}

// State is what a host's deploy directory holds, read in one round trip.
type State struct {
	Current       string // the release id current points at; "" if none
	CurrentIsDir  bool   // current exists and is not a symlink: refused
	Releases      []string
	Meta          map[string]*ReleaseMeta
	BadMeta       []string // metadata files that could not be read: reported, not trusted
	MissingShared []string // shared files that do not exist
	SeedShared    []string // shared directories missing or empty: seeded from the release
	BadShared     []string // shared directories that are there but no directory (a dangling link): refused
	MissingTools  []string // tools a deploy needs that the host lacks
	Tar           string   // the host's tar: tarGNU, tarBusyBox, tarOther; "" when not asked
	Fetcher       string   // what downloads from the artifact store: fetchCurl, fetchWget, fetchNone; "" when not asked
	Zstd          bool     // the host has zstd (asked with the tools)
	Lock          *LockOwner
	// SharedSums are the SHA-256 (hex) of the shared files asked for
	// (inspectStep.sums): "" for a file that is not there, sumUnreadable
	// for one that could not be read. nil when not asked, or when the
	// deploy directory does not exist.
	SharedSums map[string]string

	// ManifestErr says why the live release's manifest, present, was not
	// trusted.
	ManifestErr error
	// live is the live release's manifest, when asked for and readable
	// (manifestStep), shared by the hosts that hold the same one: what a
	// deploy derives from it is derived once for all of them.
	live *parsedManifest
	// manifestSum and manifestSize describe the live manifest as the host
	// read it (its SHA-256, hex); manifestStep fetches each distinct one
	// from one host only.
	manifestSum  string
	manifestSize int64

	// Filled in during a run.
	Previous string // the release that was live before this run
	SwitchTo string // the release this run switches to
}

// HasRelease reports whether the release directory id exists.
func (s *State) HasRelease(id string) bool {
	for _, r := range s.Releases {
		if r == id {
			return true
		}
	}
	return false
}

// The flavours of tar a host may have, which take different flags.
const (
	tarGNU     = "gnu"
	tarBusyBox = "busybox"
	tarOther   = "other"
)

// sumUnreadable is a shared file's checksum when the host could not read
// the file (permissions): it differs from every real copy.
const sumUnreadable = "?"

// maxRecordFile bounds what of a small host file (a release's metadata,
// the lock's owner or expiry) a script prints: a record line stays well
// within the longest line parseState reads.
const maxRecordFile = 64 << 10

// maxManifest bounds the live manifest read from a host (about 500,000
// entries): a larger file is cut, fails to parse, and a full upload is made.
const maxManifest = 64 << 20

func parseState(l layout.Layout, out []byte) (*State, error) {
	s := &State{Meta: map[string]*ReleaseMeta{}}
	refreshed := map[string]time.Time{} // lock expiries by token
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64*1024), 256*1024)
	for sc.Scan() {
		kind, rest, _ := strings.Cut(sc.Text(), " ")
		switch kind {
		case "absent":
			return s, nil
		case "current":
			s.Current = l.ReleaseOfTarget(rest)
		case "current-not-link":
			s.CurrentIsDir = true
		case "release":
			if layout.IsReleaseID(rest) {
				s.Releases = append(s.Releases, rest)
			}
		case "meta":
			file, body, _ := strings.Cut(rest, " ")
			var m ReleaseMeta
			id := strings.TrimSuffix(file, ".json")
			if err := json.Unmarshal([]byte(body), &m); err != nil || m.ID != id || !layout.IsReleaseID(id) || !knownState(m.State) {
				s.BadMeta = append(s.BadMeta, file)
				continue
			}
			s.Meta[id] = &m
		case "missing-shared":
			s.MissingShared = append(s.MissingShared, rest)
		case "seed-shared":
			s.SeedShared = append(s.SeedShared, rest)
		case "bad-shared":
			s.BadShared = append(s.BadShared, rest)
		case "shared-sum":
			i := strings.LastIndexByte(rest, ' ')
			if i < 0 {
				continue
			}
			name, sum := rest[:i], rest[i+1:]
			switch {
			case sum == "-":
				sum = ""
			case sum == sumUnreadable:
			case len(sum) != 64 || strings.Trim(sum, "0123456789abcdef") != "":
				sum = sumUnreadable
			}
			if s.SharedSums == nil {
				s.SharedSums = map[string]string{}
			}
			s.SharedSums[name] = sum
		case "missing-tool":
			s.MissingTools = append(s.MissingTools, rest)
		case "tar":
			s.Tar = rest
		case "fetch":
			s.Fetcher = rest
		case "zstd":
			s.Zstd = true
		case "manifest":
			sum, size, _ := strings.Cut(rest, " ")
			n, err := strconv.ParseInt(strings.TrimSpace(size), 10, 64)
			if len(sum) != 64 || strings.Trim(sum, "0123456789abcdef") != "" || err != nil || n < 0 {
				s.ManifestErr = fmt.Errorf("the host described it as %q", rest)
				continue
			}
			s.manifestSum, s.manifestSize = sum, n
		case "lock":
			var o LockOwner
			if err := json.Unmarshal([]byte(rest), &o); err != nil {
				o = LockOwner{}
			}
			s.Lock = &o
		case "lock-expires":
			token, at, _ := strings.Cut(rest, " ")
			if t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(at)); err == nil {
				refreshed[token] = t
			}
		}
	}
	// A refresh writes the holder's new expiry beside its owner file.
	if o := s.Lock; o != nil && o.Token != "" && refreshed[o.Token].After(o.Expires) {
		o.Expires = refreshed[o.Token]
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the deploy directory's state: %w", err)
	}
	layout.SortIDs(s.Releases)
	sort.Strings(s.BadMeta)
	return s, nil
}

// neverLive reports whether a release in state never went live: failed,
// interrupted, or a leftover of a run that died while preparing it.
func neverLive(state string) bool {
	return state == StateFailed || state == StateInterrupted || state == StatePreparing
}

func knownState(state string) bool {
	switch state {
	case StatePreparing, StateDeployed, StateFailed, StateInterrupted, StateRolledBack:
		return true
	}
	return false
}

// RollbackTarget is the release a rollback from the current one goes to:
// the newest release older than current that went live and was not rolled
// back from, or, for releases slipway did not make (Capistrano's), simply
// the one before current.
func (s *State) RollbackTarget() string {
	if s.Current == "" {
		return ""
	}
	for i := len(s.Releases) - 1; i >= 0; i-- {
		id := s.Releases[i]
		if id >= s.Current {
			continue
		}
		if m, ok := s.Meta[id]; ok && m.State != StateDeployed {
			continue
		}
		return id
	}
	return ""
}
