package deploy

import (
	"context"

	"github.com/slipway-deploy/slipway/internal/source"
)

// buildStep makes the release content on this machine (a git export, the
// build commands) once every host is locked and the revision is known not
// to be live already (Source.Build): a deploy refused by a host key, the
// lock or an unchanged revision never waits for composer or npm. An
// export with nothing to build was started with the run (startPrefetch),
// and the step takes what it made. A dry
// run builds too: it changes nothing on any host, and the plan needs the
// files to say what would be sent.
type buildStep struct{ d *deployRun }

func (buildStep) Name() string { return "build" }

func (s buildStep) RunFleet(ctx context.Context, _ []*Target) error {
	var tree *source.Tree
	var err error
	if s.d.prefetch != nil {
		select {
		case b := <-s.d.prefetch:
			tree, err = b.tree, b.err
		case <-ctx.Done():
			return ctx.Err()
		}
	} else {
		tree, err = s.d.src.Build(ctx)
	}
	if err != nil {
		return err
	}
	s.d.src.Tree = tree
	if s.d.src.Revision == "" {
		s.d.src.Revision = tree.Digest
	}
	return nil
}

// built is what a build made.
type built struct {
	tree *source.Tree
	err  error
}

// startPrefetch starts the build now, beside the connect and the lock,
// where it is an export only (Source.Prefetch); the build step then
// waits for it. The returned stop cancels a build still running (the
// deploy stopped before its build step) and waits for it to end, so
// nothing of it outlives Deploy.
func (d *deployRun) startPrefetch(ctx context.Context) (stop func()) {
	if d.src.Build == nil || !d.src.Prefetch {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	d.prefetch = make(chan built, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tree, err := d.src.Build(ctx)
		d.prefetch <- built{tree, err}
	}()
	return func() {
		cancel()
		<-done
	}
}
