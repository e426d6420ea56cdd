package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// floorDeployTo is the floor's deploy directory on every host.
const floorDeployTo = "/srv/floor-app"

// floorTool is no deploy tool: it does only the work on the hosts that any
// tool writing a complete release per host must do, with nothing around
// it, so the reports can say how much of a deploy's time the hosts' disk
// work alone takes on this machine. All hosts at once, each over one
// OpenSSH connection through its relay:
//   - cold: the app as one tar stream (made before the clock starts),
//     unpacked into a new release;
//   - redeploy: the live release copied on the host (`cp -a`, the
//     fastest whole-tree copy on this file system) and the changed file
//     unpacked over it;
//   - rollback: current renamed to the release live before the last
//     deploy.
//
// Then current is switched with a rename. No lock, no history, no
// checks, no sync (slipway's sync before the switch makes the release
// durable; Capistrano does not sync).
func (b *bench) floorTool() tool {
	hosts := make([]string, len(b.fleet.Hosts))
	for i, h := range b.fleet.Hosts {
		hosts[i] = h.Name
	}
	sshConfig := filepath.Join(b.home, ".ssh", "config")
	stream := filepath.Join(b.tmp, "floor.tar")
	// Each host runs this with the stream on its standard input.
	const onHost = `set -e
r=` + floorDeployTo + `/releases
mkdir -p "$r"
new="$r/$(date +%Y%m%d%H%M%S%N)"
mkdir "$new"
if live=$(readlink ` + floorDeployTo + `/current); then cp -a "$live/." "$new/"; printf '%s\n' "$live" > ` + floorDeployTo + `/previous; fi
tar -x -C "$new"
ln -s "$new" ` + floorDeployTo + `/.current.tmp
mv -T ` + floorDeployTo + `/.current.tmp ` + floorDeployTo + `/current`
	const rollbackOnHost = `set -e
prev=$(cat ` + floorDeployTo + `/previous)
ln -s "$prev" ` + floorDeployTo + `/.current.tmp
mv -T ` + floorDeployTo + `/.current.tmp ` + floorDeployTo + `/current`
	fanOut := func(remote string, stdin string) []string {
		var script strings.Builder
		for _, h := range hosts {
			fmt.Fprintf(&script, "ssh -F %s -o BatchMode=yes %s %s < %s &\n", shellQuote(sshConfig), h, shellQuote(remote), shellQuote(stdin))
		}
		script.WriteString("fail=0; for j in $(jobs -p); do wait $j || fail=1; done; exit $fail\n")
		return []string{"-c", script.String()}
	}
	return tool{
		name:     "floor",
		deployTo: floorDeployTo,
		deploy: func() sample {
			// A cold deploy ships the whole app; after that, the changed file.
			args := []string{"archive", "--format=tar", "HEAD"}
			if _, err := os.Lstat(b.fleet.Hosts[0].Path(floorDeployTo + "/current")); err == nil {
				args = append(args, "--", changedFile)
			}
			// Straight to the file: the benchmark's own memory must stay
			// small (see selfPeakRSS).
			f, err := os.Create(stream)
			must(b.sc, err)
			cmd := exec.Command("git", args...)
			cmd.Dir, cmd.Env, cmd.Stdout = b.app.work, b.app.env, f
			must(b.sc, errors.Join(cmd.Run(), f.Close()))
			return b.measure("floor-deploy", b.confDir, "sh", fanOut(onHost, stream)...)
		},
		rollback: func() sample {
			return b.measure("floor-rollback", b.confDir, "sh", fanOut(rollbackOnHost, "/dev/null")...)
		},
	}
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
