// Package layout knows where things live in a deploy directory: releases,
// shared data, the current link, slipway's own metadata, and how release ids
// are made. It is pure path arithmetic; nothing here touches a host.
package layout

import (
	"fmt"
	"path"
	"sort"
	"time"
)

// MetaDir is slipway's own directory inside the deploy directory: the lock,
// release history and manifests live here, away from anything the app or
// Capistrano uses.
const MetaDir = ".slipway"

// ReleaseIDFormat is Capistrano's release timestamp: UTC YYYYMMDDHHMMSS.
const ReleaseIDFormat = "20060102150405"

// Layout is the set of paths of one deploy directory on a host.
type Layout struct {
	DeployTo string // absolute, cleaned
	Releases string // name of the releases directory
	Shared   string // name of the shared directory
	Current  string // name of the current link
	Repo     string // name of the git mirror directory
	// AbsoluteLinks makes current and shared links absolute; by default
	// they are relative so the deploy directory can be moved or mounted
	// elsewhere (containers, chroots) and still resolve.
	AbsoluteLinks bool
}

func (l Layout) ReleasesDir() string          { return path.Join(l.DeployTo, l.Releases) }
func (l Layout) ReleaseDir(id string) string  { return path.Join(l.DeployTo, l.Releases, id) }
func (l Layout) SharedDir() string            { return path.Join(l.DeployTo, l.Shared) }
func (l Layout) SharedPath(rel string) string { return path.Join(l.DeployTo, l.Shared, rel) }
func (l Layout) CurrentLink() string          { return path.Join(l.DeployTo, l.Current) }
func (l Layout) RepoDir() string              { return path.Join(l.DeployTo, l.Repo) }
func (l Layout) MetaDir() string              { return path.Join(l.DeployTo, MetaDir) }
func (l Layout) LockDir() string              { return path.Join(l.DeployTo, MetaDir, "lock") }
func (l Layout) LockOwnerFile() string        { return path.Join(l.DeployTo, MetaDir, "lock", "owner.json") }
func (l Layout) HistoryDir() string           { return path.Join(l.DeployTo, MetaDir, "releases") }
func (l Layout) RevisionsLog() string         { return path.Join(l.DeployTo, "revisions.log") }

// HistoryFile is the metadata file of one release.
func (l Layout) HistoryFile(id string) string {
	return path.Join(l.DeployTo, MetaDir, "releases", id+".json")
}

// ManifestFile is where the manifest of release id is kept: beside the
// release, not in it, so the app never ships or sees it.
func (l Layout) ManifestFile(id string) string {
	return path.Join(l.DeployTo, MetaDir, "manifests", id)
}

// ManifestsDir holds the manifests of the releases.
func (l Layout) ManifestsDir() string { return path.Join(l.DeployTo, MetaDir, "manifests") }

// SwitchTempLink is the name of the link that is renamed over current by a
// switch made without the deploy lock (deploy.Switch); its name says which
// release it was made for.
func (l Layout) SwitchTempLink(id string) string {
	return path.Join(l.DeployTo, "."+l.Current+".slipway-"+id)
}

// LockedSwitchLink is the link a run holding the deploy lock renames over
// current. It lives in the lock directory: if the lock is removed or taken
// over, the link goes with it, and the run's switch fails instead of
// happening. (rename(2) replaces current atomically wherever on the same
// file system the link comes from.)
func (l Layout) LockedSwitchLink(id string) string {
	return path.Join(l.LockDir(), "."+l.Current+".slipway-"+id)
}

// CurrentTarget is what the current link should hold to point at release id.
func (l Layout) CurrentTarget(id string) string {
	if l.AbsoluteLinks {
		return l.ReleaseDir(id)
	}
	return path.Join(l.Releases, id)
}

// SharedLinkTarget is what the link at release-relative path rel should hold
// to point at the shared copy of rel.
func (l Layout) SharedLinkTarget(rel string) string {
	if l.AbsoluteLinks {
		return l.SharedPath(rel)
	}
	// From <deploy>/<releases>/<id>/<dir of rel> up to <deploy>.
	// (config refuses an absolute rel; should one come, the loop still
	// ends at "/".)
	up := "../.."
	for dir := path.Dir(rel); dir != "." && dir != "/"; dir = path.Dir(dir) {
		up += "/.."
	}
	return path.Join(up, l.Shared, rel)
}

// ReleaseOfTarget returns the release id a current link target points at, or
// "" if it points elsewhere. Both relative and absolute targets are
// understood, so a Capistrano deploy dir (absolute links) is read as is.
func (l Layout) ReleaseOfTarget(target string) string {
	if !path.IsAbs(target) {
		target = path.Join(l.DeployTo, target)
	}
	target = path.Clean(target)
	if path.Dir(target) != l.ReleasesDir() {
		return ""
	}
	id := path.Base(target)
	if !IsReleaseID(id) {
		return ""
	}
	return id
}

// IsReleaseID reports whether name looks like a release directory name:
// fourteen digits, Capistrano's timestamp format.
func IsReleaseID(name string) bool {
	if len(name) != len(ReleaseIDFormat) {
		return false
	}
	for i := 0; i < len(name); i++ {
		if name[i] < '0' || name[i] > '9' {
			return false
		}
	}
	return true
}

// NewReleaseID picks the id of a new release: the current UTC time, or, if a
// release that new or newer already exists (two deploys in one second, or a
// host whose clock is ahead), one second after the newest existing id, so an
// id is never reused and ids stay in deploy order.
func NewReleaseID(now time.Time, existing []string) (string, error) {
	id := now.UTC().Format(ReleaseIDFormat)
	newest := ""
	for _, e := range existing {
		if IsReleaseID(e) && e > newest {
			newest = e
		}
	}
	if newest == "" || id > newest {
		return id, nil
	}
	t, err := time.Parse(ReleaseIDFormat, newest)
	if err != nil {
		return "", fmt.Errorf("release id %s is not a valid timestamp: %w", newest, err)
	}
	return t.Add(time.Second).Format(ReleaseIDFormat), nil
}

// SortIDs sorts release ids oldest first; ids are timestamps, so string
// order is time order.
func SortIDs(ids []string) { sort.Strings(ids) }
