package deploy

import (
	"slices"
	"testing"
)

func TestPlanPrune(t *testing.T) {
	meta := func(state string) *ReleaseMeta { return &ReleaseMeta{State: state} }
	s := &State{
		Releases: []string{"01", "02", "03", "04", "05", "06", "07", "08"},
		Meta: map[string]*ReleaseMeta{
			"01": meta(StateDeployed), "02": meta(StateRolledBack), "03": meta(StateDeployed),
			"04": meta(StateFailed), "05": meta(StateDeployed), "06": meta(StatePreparing),
			"07": meta(StateRolledBack), "08": meta(StateDeployed),
			"00": meta(StateFailed), // long gone; only history left
		},
		Current: "05",
	}
	s.Releases = append([]string{"cap"}, s.Releases...) // a directory slipway did not make
	plan := PlanPrune(s, 2)
	// Kept: the newest 2 that went live (08, 05), the live one (05), the
	// rollback target (03), and 07 (rolled back, newer than the oldest kept).
	// Deleted: 01 (old), 02 (rolled back, older than the oldest kept), 04
	// (failed), 06 (leftover of a killed run). Never: "cap".
	if want := []string{"01", "02", "04", "06"}; !slices.Equal(plan.Delete, want) {
		t.Errorf("delete %v, want %v", plan.Delete, want)
	}
	if len(plan.Forget) != 0 {
		t.Errorf("forget %v: with keep 2, one long-gone failure stays in history", plan.Forget)
	}
	// A release that went live whose directory is gone (a removal or a
	// recycle stopped halfway): its entry goes at once.
	s.Meta["00b"] = meta(StateDeployed)
	if plan := PlanPrune(s, 2); !slices.Equal(plan.Forget, []string{"00b"}) {
		t.Errorf("forget %v, want [00b]", plan.Forget)
	}
	if p := PlanPrune(&State{Releases: []string{"01"}, Meta: map[string]*ReleaseMeta{"01": meta(StateDeployed)}, Current: "01"}, 1); len(p.Delete) != 0 {
		t.Errorf("deleted the live release: %v", p.Delete)
	}
}
