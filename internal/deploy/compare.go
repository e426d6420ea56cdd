package deploy

import "context"

// driftStep refuses to deploy over a fleet whose hosts serve different
// releases (a partial deploy, a host rolled back by hand), unless --force:
// the result would look uniform while the rollback targets differ.
type driftStep struct{ d *deployRun }

func (driftStep) Name() string { return "compare hosts" }

func (s driftStep) RunFleet(context.Context, []*Target) error {
	if s.d.opts.Force {
		return nil
	}
	return s.drift()
}

// PlanFleet notes the refusal in the plan.
func (s driftStep) PlanFleet(context.Context, []*Target) error {
	if err := s.drift(); err != nil {
		s.d.plan.Drift = err.Error()
	}
	return nil
}

func (s driftStep) drift() error {
	if err := Drift(s.d.targets); err != nil {
		err.Stage = s.d.opts.Stage.Name
		return err
	}
	return nil
}

// alreadyLiveStep stops a deploy of the revision that is already live on
// every host: a second run of the same CI job does nothing.
type alreadyLiveStep struct{ d *deployRun }

func (alreadyLiveStep) Name() string { return "compare revision" }

func (s alreadyLiveStep) RunFleet(context.Context, []*Target) error {
	if s.d.opts.Force || !s.live() {
		return nil
	}
	return ErrAlreadyLive
}

// PlanFleet notes it in the plan, which goes on to show what --force
// would do.
func (s alreadyLiveStep) PlanFleet(context.Context, []*Target) error {
	s.d.plan.AlreadyLive = s.live()
	return nil
}

// promotedDigest is the digest of the tree a promotion ships, "" for
// another deploy.
func (src Source) promotedDigest() string {
	switch {
	case src.PromotedFrom == "":
		return ""
	case src.Tree != nil:
		return src.Tree.Digest
	}
	return src.Digest
}

// live reports whether the revision deployed is live on every host.
func (s alreadyLiveStep) live() bool {
	src := s.d.src
	if src.Dirty || src.Revision == "" {
		return false
	}
	for _, t := range withState(s.d.targets) {
		m := t.State.Meta[t.State.Current]
		if m == nil || m.Dirty {
			return false
		}
		// A promotion ships a given tree: live already only if that very
		// tree is, whatever was built from the same commit (another
		// build configuration makes another tree of it).
		if digest := src.promotedDigest(); digest != "" {
			if m.Digest != digest {
				return false
			}
		} else if m.Revision != src.Revision {
			return false
		}
	}
	return true
}
