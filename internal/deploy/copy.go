package deploy

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"path"
	"strings"

	"github.com/slipway-deploy/slipway/internal/layout"
	"github.com/slipway-deploy/slipway/internal/shell"
)

// Names of the copy's work files inside the new release (reserved in
// source.Reserved, so no app ships them); a failed create removes the
// whole release.
const (
	copyListName   = ".slipway-copy-list"
	copyStatusName = ".slipway-copy-status"
	reflinkProbe   = ".slipway-reflink-probe"
)

// copyUnchanged is the part of the create-release script that fills the new
// release with the entries of the live one that did not change. Its
// standard input is copyList(delta.CopyTree).
//
// Which copier runs is decided on the host, because it depends on the
// host's file system:
//   - source.hardlink: `cp -al`, hard links (the documented caveat);
//   - a file system with reflinks (XFS, Btrfs): `cp --reflink=always`, so
//     unchanged files share blocks but not inodes;
//   - otherwise a pipe from one tar to another, which creates each
//     directory and file once. (`cp --parents` was the first copier
//     here: it re-reads and re-applies every parent directory's
//     attributes for every file, about twice the kernel time of the whole
//     copy on ext4, the most common case.)
//
// Every copier makes new inodes for the release's directories, and none
// writes into a file of the live release. The cp copiers get files only
// (cp makes their parents with the live release's attributes); tar gets
// the directories too, each before its contents, so it restores their
// modes and times.
func copyUnchanged(l layout.Layout, live, id string, hardlink bool) string {
	release := shell.Quote(l.ReleaseDir(id))
	list := shell.Quote(path.Join(l.ReleaseDir(id), copyListName))
	status := shell.Quote(path.Join(l.ReleaseDir(id), copyStatusName))
	probe := shell.Quote(path.Join(l.ReleaseDir(id), reflinkProbe))
	// Directories out of the list, for cp, which would copy one whole.
	filesOnly := `xargs -0 -r sh -c 'for p do [ -d "$p" ] && [ ! -L "$p" ] || printf "%s\000" "$p"; done' sh`
	var b strings.Builder
	fmt.Fprintf(&b, "cd -- %s && gzip -dc > %s || exit\n", shell.Quote(l.ReleaseDir(live)), list)
	if hardlink {
		fmt.Fprintf(&b, "%s < %s | xargs -0 -r cp -a -l --parents -t %s -- || exit\n", filesOnly, list, release)
	} else {
		// The live manifest is beside every release, so its file system
		// tells whether reflinks work there.
		fmt.Fprintf(&b, `if cp --reflink=always -- %[1]s %[2]s 2>/dev/null; then
  rm -f -- %[2]s
  %[3]s < %[4]s | xargs -0 -r cp -a --reflink=always --parents -t %[5]s -- || exit
else
  rm -f -- %[2]s
  { tar -c -f - --null --no-unquote --verbatim-files-from --no-recursion -T %[4]s; echo $? > %[6]s; } | tar -x -p --no-same-owner -f - -C %[5]s || exit
  read -r s < %[6]s && [ "$s" = 0 ] || { echo "copying the unchanged files of release %[7]s failed" >&2; exit 1; }
fi
`, shell.Quote(l.ManifestFile(live)), probe, filesOnly, list, release, status, live)
	}
	fmt.Fprintf(&b, "rm -f -- %s %s", list, status)
	return b.String()
}

// copyList is the copier's standard input: the paths NUL-separated (any
// byte but NUL may be in a name) and gzipped, since thousands of paths
// would otherwise cost more bytes on the wire than a small change itself.
func copyList(paths []string) io.Reader {
	var list bytes.Buffer
	zw := gzip.NewWriter(&list)
	_, _ = zw.Write([]byte(strings.Join(paths, "\x00")))
	_ = zw.Close() // writes to memory cannot fail
	return &list
}
