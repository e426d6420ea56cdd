package deploy

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// ReleaseRow is one release as `slipway releases` shows it, across hosts.
type ReleaseRow struct {
	ID       string    `json:"id"`
	State    string    `json:"state"` // live, previous, deployed, failed, rolled back, preparing, adopted; or per host when hosts differ
	Time     time.Time `json:"time,omitzero"`
	User     string    `json:"user,omitempty"`
	Revision string    `json:"revision,omitempty"`
	Branch   string    `json:"branch,omitempty"`
	Digest   string    `json:"digest,omitempty"`
	Dirty    bool      `json:"dirty,omitempty"`
	Hosts    []string  `json:"hosts"`              // hosts that have the release directory
	States   []string  `json:"host_states"`        // state on each host of Hosts, in the same order
	Missing  []string  `json:"missing,omitempty"`  // hosts without the release directory
	Removed  bool      `json:"removed,omitempty"`  // only history is left (a failed release)
	Failure  string    `json:"failure,omitempty"`  // why a failed release failed
	Adopted  bool      `json:"adopted,omitempty"`  // made by another tool (Capistrano)
	Warnings []string  `json:"warnings,omitempty"` // unreadable metadata and such

	PromotedFrom string `json:"promoted_from,omitempty"` // the release whose tree this one ships ("STAGE@RELEASE")
}

// Releases reads every selected host and lists their releases, newest first.
func Releases(ctx context.Context, opts Options) ([]ReleaseRow, error) {
	r := newRun(ctx, opts)
	if err := r.pipeline([]Step{perHost(connectStep{r: r}), perHost(inspectStep{r: r})}); err != nil {
		return nil, err
	}
	return releaseRows(r.targets), nil
}

// hostReleaseState is the state of release id on one host, as shown.
func hostReleaseState(s *State, id string) string {
	switch {
	case id == s.Current:
		return "live"
	case id == s.RollbackTarget():
		return "previous"
	}
	m, ok := s.Meta[id]
	if !ok {
		return "adopted"
	}
	return strings.ReplaceAll(m.State, "_", " ")
}

func releaseRows(targets []*Target) []ReleaseRow {
	rows := map[string]*ReleaseRow{}
	get := func(id string) *ReleaseRow {
		if rows[id] == nil {
			rows[id] = &ReleaseRow{ID: id}
		}
		return rows[id]
	}
	for _, t := range withState(targets) {
		s := t.State
		for _, id := range s.Releases {
			row := get(id)
			row.Hosts = append(row.Hosts, t.Name())
			row.States = append(row.States, hostReleaseState(s, id))
			if m, ok := s.Meta[id]; ok {
				fillFromMeta(row, m)
			} else {
				row.Adopted = true
			}
		}
		for id, m := range s.Meta {
			if !s.HasRelease(id) {
				fillFromMeta(get(id), m)
			}
		}
		for _, f := range s.BadMeta {
			row := get(strings.TrimSuffix(f, ".json"))
			row.Warnings = append(row.Warnings, fmt.Sprintf("%s: metadata unreadable, not trusted", t.Name()))
		}
	}
	var out []ReleaseRow
	for _, row := range rows {
		if len(row.Hosts) == 0 {
			row.Removed = true
		}
		for _, t := range targets {
			if !slices.Contains(row.Hosts, t.Name()) && len(row.Hosts) > 0 {
				row.Missing = append(row.Missing, t.Name())
			}
		}
		row.State = summarizeStates(row)
		if row.Time.IsZero() && row.Adopted {
			row.Time, _ = time.Parse("20060102150405", row.ID)
		}
		out = append(out, *row)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID > out[j].ID })
	return out
}

func fillFromMeta(row *ReleaseRow, m *ReleaseMeta) {
	row.User, row.Revision, row.Branch, row.Digest, row.Dirty = m.User, m.Revision, m.Branch, m.Digest, m.Dirty
	row.PromotedFrom = m.PromotedFrom
	row.Time = m.CreatedAt
	if !m.LiveAt.IsZero() {
		row.Time = m.LiveAt
	}
	if m.State == StateFailed || m.State == StateInterrupted {
		row.Failure = m.Error
	}
	if len(row.Hosts) == 0 {
		row.State = strings.ReplaceAll(m.State, "_", " ")
	}
}

func summarizeStates(row *ReleaseRow) string {
	if len(row.Hosts) == 0 {
		return row.State + " (removed)"
	}
	same := true
	for _, s := range row.States {
		if s != row.States[0] {
			same = false
		}
	}
	if same {
		return row.States[0]
	}
	var parts []string
	for i, h := range row.Hosts {
		parts = append(parts, row.States[i]+" on "+h)
	}
	return strings.Join(parts, ", ")
}
