package main

import (
	"io"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
	"github.com/goreleaser/nfpm/v2/rpm"
)

const (
	packageName = "slipway"
	homepage    = "https://github.com/slipway-deploy/slipway"
	maintainer  = "slipway developers <" + homepage + ">"
	description = `Atomic, zero-downtime web app releases over SSH
slipway ships a web application to one server or a fleet over SSH. Each deploy
builds a complete release beside the live one, links shared data into it, and
goes live by one atomic rename of the current symlink; rollback is the same
switch back.`
)

// writePackages writes a .deb and an .rpm of t's binary into opts.out and
// returns their names (the formats' conventional ones, such as
// slipway_1.2.3_amd64.deb and slipway-1.2.3-1.x86_64.rpm).
func writePackages(opts options, t target, binary string, docs []string) ([]string, error) {
	var names []string
	for _, packager := range []nfpm.Packager{deb.Default, rpm.DefaultRPM} {
		// Packagers rewrite the info they get (the arch, in rpm's
		// words), so each call gets its own.
		name := packager.ConventionalFileName(packageInfo(opts, t, binary, docs))
		err := writeFile(filepath.Join(opts.out, name), func(w io.Writer) error {
			return packager.Package(packageInfo(opts, t, binary, docs), w)
		})
		if err != nil {
			return nil, err
		}
		names = append(names, name)
	}
	return names, nil
}

// packageInfo describes the package of t's binary: the binary in
// /usr/bin, the documents in /usr/share/doc/slipway (rpm marks them %doc,
// and licences %license under /usr/share/licenses).
func packageInfo(opts options, t target, binary string, docs []string) *nfpm.Info {
	v := packageVersionOf(opts.version)
	contents := files.Contents{{
		Source: binary, Destination: "/usr/bin/slipway",
		FileInfo: &files.ContentFileInfo{Mode: 0o755, MTime: opts.mtime},
	}}
	for _, doc := range docs {
		base := filepath.Base(doc)
		rpmType, rpmDir := files.TypeRPMDoc, "/usr/share/doc/slipway/"
		if isLicense(base) {
			rpmType, rpmDir = files.TypeRPMLicense, "/usr/share/licenses/slipway/"
		}
		contents = append(contents,
			&files.Content{Source: doc, Destination: "/usr/share/doc/slipway/" + base, Packager: "deb",
				FileInfo: &files.ContentFileInfo{Mode: 0o644, MTime: opts.mtime}},
			&files.Content{Source: doc, Destination: rpmDir + base, Packager: "rpm", Type: rpmType,
				FileInfo: &files.ContentFileInfo{Mode: 0o644, MTime: opts.mtime}})
	}
	return nfpm.WithDefaults(&nfpm.Info{
		Name:            packageName,
		Arch:            t.arch, // GOARCH; each packager names it in its own words
		Platform:        "linux",
		Version:         v.version,
		Prerelease:      v.prerelease,
		VersionMetadata: v.metadata,
		VersionSchema:   "none", // packageVersionOf has split it
		Section:         "admin",
		Priority:        "optional",
		Maintainer:      maintainer,
		Homepage:        homepage,
		Description:     description,
		MTime:           opts.mtime,
		Overridables:    nfpm.Overridables{Contents: contents},
	})
}

func isLicense(base string) bool {
	upper := strings.ToUpper(base)
	return strings.HasPrefix(upper, "LICENSE") || strings.HasPrefix(upper, "LICENCE") || strings.HasPrefix(upper, "COPYING")
}

// packageVersion is a version in the parts deb and rpm order correctly:
// version[~prerelease][+metadata], where ~ sorts before the release and +
// after it.
type packageVersion struct{ version, prerelease, metadata string }

var (
	// describeSuffix is what git describe adds after a tag: commits
	// since it and the commit.
	describeSuffix = regexp.MustCompile(`^(.*)-([0-9]+)-g([0-9a-f]+)$`)
	releaseNumber  = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)+)(?:-(.+))?$`)
	commitHash     = regexp.MustCompile(`^[0-9a-f]{7,40}$`)
	notVersionChar = regexp.MustCompile(`[^A-Za-z0-9.]+`)
)

// packageVersionOf reads a version as git describe --tags --always --dirty
// writes it (v1.2.3, v1.2.3-rc.1, v1.2.3-4-g0123abc-dirty, or a bare commit
// 0123abc when no tag is reachable), or as given (VERSION=1.2.3, dev).
// Commits after a tag and a dirty tree sort after the tag; a prerelease
// before its release; a version without a number is 0.0.0 plus itself.
// Hyphens never reach the result: dpkg reads the last one as the start of
// the package revision, and rpm refuses them.
func packageVersionOf(s string) packageVersion {
	s = strings.TrimPrefix(s, "v")
	s, dirty := strings.CutSuffix(s, "-dirty")
	var v packageVersion
	var metadata []string
	if m := describeSuffix.FindStringSubmatch(s); m != nil {
		s = m[1]
		metadata = append(metadata, "git"+m[2], m[3])
	}
	switch m := releaseNumber.FindStringSubmatch(s); {
	case m != nil:
		v.version, v.prerelease = m[1], notVersionChar.ReplaceAllString(m[2], ".")
	case commitHash.MatchString(s):
		v.version = "0.0.0"
		metadata = append([]string{"git", s}, metadata...)
	default:
		v.version = "0.0.0"
		metadata = append([]string{notVersionChar.ReplaceAllString(s, ".")}, metadata...)
	}
	if dirty {
		metadata = append(metadata, "dirty")
	}
	v.metadata = strings.Join(metadata, ".")
	return v
}
