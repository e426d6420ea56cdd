package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Request says how to produce the content of an upload release.
type Request struct {
	// Dir ships this directory as it is (source.path); when empty, a clean
	// export of a git revision is shipped instead.
	Dir string
	// Git is the export to make when Dir is empty.
	Git GitExport
	// Build commands run in a clean copy (the export, or a copy of Dir)
	// before anything is shipped.
	Build   []string
	Exclude []string
	// Output receives the build's output as it comes.
	Output io.Writer
}

// Prepared is release content ready to ship. Remove deletes the temporary
// copy it may live in; call it when the deploy is over, failed or not.
type Prepared struct {
	Tree     *Tree
	Revision string // commit SHA, or the tree digest of a plain directory
	Ref      string // branch or tag exported
	Dirty    bool
	export   *Export // the git export the tree lives in, if any
	temp     string  // the build copy of a directory, if any
}

// MemoryExportLimit is the size up to which a git export with nothing to
// build is kept in memory rather than written to a temporary directory.
// Bigger ones (and every export a build runs in) go to disk.
const MemoryExportLimit = 128 << 20

// Pending is release content whose revision is known and whose files are
// not made yet: Resolve learns the revision cheaply (resolving a git
// revision), Make exports or copies and builds. A deploy resolves first
// and makes the content only once its hosts are locked and the revision is
// known not to be live, so no build runs for a deploy that will be refused.
type Pending struct {
	Revision string // the commit to export; "" for a directory, whose digest is known once it is made
	Ref      string // branch or tag
	Dirty    bool

	req Request
	git *GitRevision
}

// Resolve resolves the revision req names (nothing to do for a directory).
func Resolve(ctx context.Context, req Request) (*Pending, error) {
	p := &Pending{req: req}
	if req.Dir == "" {
		g, err := ResolveGit(ctx, req.Git)
		if err != nil {
			return nil, err
		}
		p.git, p.Revision, p.Ref, p.Dirty = g, g.Commit, g.Ref, g.Dirty
	}
	return p, nil
}

// Prepare exports or copies the source, runs the build in the copy, and
// scans the result. Nothing here touches a host, so a failing build or an
// unknown revision stops the deploy before any host changes.
func Prepare(ctx context.Context, req Request) (*Prepared, error) {
	pending, err := Resolve(ctx, req)
	if err != nil {
		return nil, err
	}
	return pending.Make(ctx)
}

// Make exports or copies the source, runs the build in the copy, and scans
// the result.
func (pending *Pending) Make(ctx context.Context) (p *Prepared, err error) {
	req := pending.req
	p = &Prepared{Revision: pending.Revision, Ref: pending.Ref, Dirty: pending.Dirty}
	defer func() {
		if err != nil {
			p.Remove()
			p = nil
		}
	}()
	dir := req.Dir
	switch {
	case dir == "":
		var limit int64
		if len(req.Build) == 0 {
			limit = MemoryExportLimit
		}
		export, err := pending.git.Export(ctx, limit)
		if err != nil {
			return p, err
		}
		p.export, dir = export, export.Dir
		if dir == "" { // in memory, and nothing to build
			p.Tree, err = export.Scan(req.Exclude)
			return p, err
		}
	case len(req.Build) > 0:
		// Build in a copy, so the build never writes into the user's
		// directory and what ships is exactly what the build produced.
		tree, err := Scan(dir, req.Exclude)
		if err != nil {
			return p, err
		}
		if p.temp, err = os.MkdirTemp("", "slipway-build-"); err != nil {
			return p, err
		}
		if err := tree.CopyTo(p.temp); err != nil {
			return p, fmt.Errorf("copying %s to build it: %w", dir, err)
		}
		dir = p.temp
	}
	if len(req.Build) > 0 {
		out := req.Output
		if out == nil {
			out = io.Discard
		}
		if err := RunBuild(ctx, dir, req.Build, out); err != nil {
			return p, err
		}
	}
	if p.Tree, err = Scan(dir, req.Exclude); err != nil {
		return p, err
	}
	if p.Revision == "" {
		p.Revision = p.Tree.Digest
	}
	return p, nil
}

// InMemory is how many bytes of file content the export holds in memory
// (0 when the files are on disk).
func (p *Prepared) InMemory() int64 {
	if p == nil || p.export == nil || p.export.mem == nil {
		return 0
	}
	return p.export.mem.size
}

// Remove deletes the temporary copy, if there is one.
func (p *Prepared) Remove() error {
	if p == nil {
		return nil
	}
	var err error
	if p.export != nil {
		err = p.export.Remove()
	}
	if p.temp != "" {
		err = errors.Join(err, os.RemoveAll(p.temp))
		p.temp = ""
	}
	return err
}

// CopyTo writes the tree's entries under dir, keeping modes and symlinks.
func (t *Tree) CopyTo(dir string) error {
	for _, f := range t.Files {
		dst := filepath.Join(dir, filepath.FromSlash(f.Rel))
		switch {
		case f.Mode.IsDir():
			if err := os.MkdirAll(dst, f.Mode.Perm()|0o700); err != nil {
				return err
			}
		case f.Link != "":
			if err := os.Symlink(f.Link, dst); err != nil {
				return err
			}
		default:
			if err := t.copyTo(f, dst); err != nil {
				return err
			}
		}
	}
	return nil
}

func (t *Tree) copyTo(f File, dst string) error {
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.Mode.Perm())
	if err != nil {
		return err
	}
	if err := t.copyFile(out, f); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
