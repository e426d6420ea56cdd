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
	"github.com/slipway-deploy/slipway/internal/source"
)

// Names of the copy's work files inside the new release (reserved in
// source.Reserved, so no app ships them); a failed create removes the
// whole release.
const (
	copyListName   = ".slipway-copy-list"
	copyStatusName = ".slipway-copy-status"
	copyDirsName   = ".slipway-copy-dirs"
	copyFilesName  = ".slipway-copy-files"
	reflinkProbe   = ".slipway-reflink-probe"
)

// copyUnchanged is the part of the create-release script that fills the new
// release with the entries of the live one that did not change: those
// pick selects from the live manifest's lines plus the ones listed on
// standard input (copyList(pick.odd)), or, with no pick, all of them
// listed there (copyList(delta.CopyTree)).
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
// writes into a file of the live release. The cp copiers get files only,
// into directories made beforehand: cp --parents, which makes a missing
// parent with the live one's attributes, re-applies them after every file
// it copies into a parent it made, which took half of a 3,000-file copy's
// time on XFS (2,162 directories; 0.49 s of CPU against 0.36 s so). So
// the directories are made first, writable, with mkdir -p; after the
// files, one tar of the directories alone (no contents) gives them the
// live ones' modes and times, as tar does for its own copy, which gets
// the directories and files together, each directory before its
// contents. Where tar is BusyBox's, which reads no list of names, cp
// makes the parents itself as before.
//
// listIn is the command that writes the listed paths, NUL-separated: from
// standard input (fromStdin), or from the script itself (embeddedList).
func copyUnchanged(l layout.Layout, live, id string, hardlink bool, pick *manifestPick, tar string, listIn string) string {
	a := copyArgs(l, live, id, listIn)
	var b strings.Builder
	b.WriteString("cd -- {{live}} || exit\n")
	if pick == nil {
		b.WriteString("{{list_in}} > {{list}} || exit\n")
	} else {
		// Plain names come from the live manifest's lines (what is
		// between the first two double quotes), the others on stdin.
		a["cond"], a["names"], a["lines"] = shell.Raw(pick.cond("NR")), path.Join(l.ReleaseDir(id), copyListName+".names"), pick.lines
		b.WriteString(`LC_ALL=C awk '{{cond}} { i = index($0, "\""); s = substr($0, i + 1); print substr(s, 1, index(s, "\"") - 1) }' {{live_manifest}} > {{names}} || exit
n=$(wc -l < {{names}}) && [ $n -eq {{lines}} ] || { echo "the live release's manifest changed during the deploy; deploy again" >&2; exit 1; }
tr '\n' '\000' < {{names}} > {{list}} && rm -f -- {{names}} && {{list_in}} >> {{list}} || exit
`)
	}
	b.WriteString(copyListed(hardlink, tar))
	return shell.Script(b.String(), a)
}

// copyArgs are the arguments of the copy scripts (copyUnchanged,
// recycleScript).
func copyArgs(l layout.Layout, live, id string, listIn string) shell.Args {
	return shell.Args{
		"live": l.ReleaseDir(live), "release": l.ReleaseDir(id), "list": path.Join(l.ReleaseDir(id), copyListName), "list_in": shell.Raw(listIn),
		"status": path.Join(l.ReleaseDir(id), copyStatusName), "live_manifest": l.ManifestFile(live),
		"probe": path.Join(l.ReleaseDir(id), reflinkProbe), "live_id": live,
		// The list split in two: directories to descriptor 3, the rest
		// (files and symlinks, for cp, which would copy a directory
		// whole) to standard output.
		// Every write is checked: a list cut short (a full disk) must
		// fail the copy, not copy less.
		"split": shell.Raw(`xargs -0 -r sh -c 'for p do if [ -d "$p" ] && [ ! -L "$p" ]; then printf "%s\000" "$p" >&3 || exit; else printf "%s\000" "$p" || exit; fi; done' sh`),
		"dirs":  path.Join(l.ReleaseDir(id), copyDirsName),
		"files": path.Join(l.ReleaseDir(id), copyFilesName),
	}
}

// copyListed is the part of a copy script (with copyArgs) that copies the
// entries listed in {{list}}, NUL-separated, from the live release, the
// working directory, into the new one, and removes its work files.
func copyListed(hardlink bool, tar string) string {
	var b strings.Builder
	// tarPipe copies the entries listed in the file {{list}} (GNU tar),
	// failing with what it copies named when either tar fails.
	tarPipe := func(list, what string) string {
		return `{ tar -c -f - --null --no-unquote --verbatim-files-from --no-recursion -T {{` + list + `}}; echo $? | cat > {{status}}; } | tar -x -p --no-same-owner -f - -C {{release}} || exit
  read -r s < {{status}} && [ "$s" = 0 ] || { echo "copying ` + what + ` of release "{{live_id}}" failed" >&2; exit 1; }`
	}
	tarCopy := tarPipe("list", "the unchanged files")
	if tar == tarBusyBox {
		// BusyBox tar reads no list of names: xargs hands them over as
		// arguments, "./"-prefixed so none reads as an option, one pipe
		// of two tars for each batch.
		tarCopy = `xargs -0 -r sh -c 'for p do set -- "$@" "./$p"; shift; done; { tar -c --no-recursion -f - "$@"; echo $? | cat > "$0/` + copyStatusName + `"; } | tar -x -o -f - -C "$0" && read -r s < "$0/` + copyStatusName + `" && [ "$s" = 0 ]' {{release}} < {{list}} || { echo "copying the unchanged files of release "{{live_id}}" failed" >&2; exit 1; }`
	}
	cpCopy := func(how string) string {
		if tar == tarBusyBox {
			// The list goes to a file first: in a pipe, the split's
			// failure would be lost.
			return "{{split}} < {{list}} 3> /dev/null > {{files}} || exit\n  xargs -0 -r cp " + how + " --parents -t {{release}} -- < {{files}} || exit"
		}
		return `{{split}} < {{list}} 3> {{dirs}} > {{files}} || exit
  (cd -- {{release}} && xargs -0 -r mkdir -p -- < {{dirs}}) || exit
  xargs -0 -r cp ` + how + ` --parents -t {{release}} -- < {{files}} || exit
  ` + tarPipe("dirs", "the directories' modes and times")
	}
	if hardlink {
		b.WriteString(cpCopy("-a -l") + "\n")
	} else {
		// The live manifest is beside every release, so its file system
		// tells whether reflinks work there.
		b.WriteString(`if cp --reflink=always -- {{live_manifest}} {{probe}} 2>/dev/null; then
  rm -f -- {{probe}}
  ` + cpCopy("-a --reflink=always") + `
else
  rm -f -- {{probe}}
  ` + tarCopy + `
fi
`)
	}
	b.WriteString("rm -f -- {{list}} {{status}} {{dirs}} {{files}}")
	return b.String()
}

// manifestPick selects the unchanged entries from the lines of the live
// release's manifest on the host, so a small change costs a small
// message whatever the size of the app: an awk condition on line numbers
// (cond) selecting the lines of the entries with plain names
// (source.PlainName), how many there are (lines), and the other names
// (odd), which go on stdin.
type manifestPick struct {
	ranges [][2]int
	lines  int
	odd    []string
}

// cond is the awk condition that selects the lines, numbered by nr (NR,
// or FNR in a program that reads more than one file).
func (p *manifestPick) cond(nr string) string {
	var cond []string
	for _, r := range p.ranges {
		cond = append(cond, fmt.Sprintf("%s>=%d&&%s<=%d", nr, r[0], nr, r[1]))
	}
	if len(cond) == 0 {
		return "0"
	}
	return strings.Join(cond, "||")
}

// maxPickRanges bounds the awk condition (a command line is at most
// 128 KiB on Linux); more scattered changes send the list itself.
const maxPickRanges = 2000

// pickFromManifest selects paths (the delta's CopyTree) by the line
// numbers of the host's live manifest, whose paths in line order are
// order. It returns nil when the list itself is the smaller message.
func pickFromManifest(order, paths []string) *manifestPick {
	want := make(map[string]bool, len(paths))
	for _, p := range paths {
		want[p] = true
	}
	pick := &manifestPick{}
	for i, rel := range order {
		if !want[rel] {
			continue
		}
		if !source.PlainName(rel) {
			pick.odd = append(pick.odd, rel)
			continue
		}
		line := i + 2 // line 1 is the header
		if n := len(pick.ranges); n > 0 && pick.ranges[n-1][1] == line-1 {
			pick.ranges[n-1][1] = line
		} else {
			pick.ranges = append(pick.ranges, [2]int{line, line})
		}
		pick.lines++
	}
	if len(pick.ranges) > maxPickRanges {
		return nil
	}
	return pick
}

// fromStdin reads the list of paths to copy from standard input, where
// copyList put it.
const fromStdin = "gzip -dc"

// maxEmbeddedList bounds the paths a script carries itself (embeddedList):
// a script with input is read byte by byte on the host (see host's
// ssh_run.go).
const maxEmbeddedList = 16 << 10

// embeddedList writes paths, NUL-separated, from the script itself; ok is
// false when they are too many for that.
func embeddedList(paths []string) (script string, ok bool) {
	if len(paths) == 0 {
		return ":", true
	}
	n := 0
	for _, p := range paths {
		n += len(p) + 3
	}
	if n > maxEmbeddedList {
		return "", false
	}
	return shell.Script(`printf '%s\000' {{paths}}`, shell.Args{"paths": paths}), true
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
