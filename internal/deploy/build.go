package deploy

import "context"

// buildStep makes the release content on this machine (a git export, the
// build commands) once every host is locked and the revision is known not
// to be live already (Source.Build): a deploy refused by a host key, the
// lock or an unchanged revision never waits for composer or npm. A dry
// run builds too: it changes nothing on any host, and the plan needs the
// files to say what would be sent.
type buildStep struct{ d *deployRun }

func (buildStep) Name() string { return "build" }

func (s buildStep) RunFleet(ctx context.Context, _ []*Target) error {
	tree, err := s.d.src.Build(ctx)
	if err != nil {
		return err
	}
	s.d.src.Tree = tree
	if s.d.src.Revision == "" {
		s.d.src.Revision = tree.Digest
	}
	return nil
}
