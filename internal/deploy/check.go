package deploy

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/slipway-deploy/slipway/internal/host"
	"github.com/slipway-deploy/slipway/internal/shell"
)

// CheckReport is what `slipway check` found on one host.
type CheckReport struct {
	Host     string
	Current  string
	Releases int
	FreeKB   int64
	Lock     *LockOwner
	Problems []string // the host cannot take a deploy
	Warnings []string // it can, but something will hurt (a php-fpm restart hook)
}

// Check verifies every selected host can take a deploy: reachable, tools
// present, deploy directory writable, shared files present, disk space.
// It changes nothing.
func Check(ctx context.Context, opts Options) ([]CheckReport, error) {
	r := newRun(ctx, opts)
	l := r.layout
	reports := make([]CheckReport, len(r.targets))
	fpmHooks := FPMHooks(opts.Config.Hooks)
	probe := stepFunc{name: "check", fn: func(ctx context.Context, t *Target) error {
		rep := &reports[t.Index]
		rep.Host = t.Name()
		rep.Current, rep.Releases, rep.Lock = t.State.Current, len(t.State.Releases), t.State.Lock
		// What the deploy's scripts run: the release copy and upload (tar,
		// gzip, cp), the manifest and its checks (sha256sum, awk, sort, wc,
		// cat), the switch and cleanup.
		res, err := t.Exec.Query(ctx, host.Command{Script: checkScript(l.DeployTo)})
		if err != nil {
			return err
		}
		for _, line := range strings.Split(strings.TrimSpace(string(res.Stdout)), "\n") {
			kind, rest, _ := strings.Cut(line, " ")
			switch kind {
			case "missing-tool":
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s is not installed (slipway needs it on the host)", rest))
			case "not-writable":
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s is not writable by the deploy user; run: sudo mkdir -p %s && sudo chown $USER %s", rest, l.DeployTo, l.DeployTo))
			case "free-kb":
				rep.FreeKB, _ = strconv.ParseInt(rest, 10, 64)
			}
		}
		rep.Warnings = fpmWarnings(ctx, t, fpmHooks)
		for _, w := range rep.Warnings {
			r.warn(t, "%s", w)
		}
		if t.State.CurrentIsDir {
			rep.Problems = append(rep.Problems, fmt.Sprintf("%s is a real directory, not a symlink; move it aside before deploying", l.CurrentLink()))
		}
		for _, f := range t.State.MissingShared {
			rep.Problems = append(rep.Problems, fmt.Sprintf("shared file %s does not exist; create it before deploying", l.SharedPath(f)))
		}
		for _, f := range t.State.BadMeta {
			rep.Problems = append(rep.Problems, fmt.Sprintf("release metadata %s/%s is malformed", l.HistoryDir(), f))
		}
		if len(rep.Problems) > 0 {
			return fmt.Errorf("%s", strings.Join(rep.Problems, "; "))
		}
		return nil
	}}
	err := r.pipeline([]Step{perHost(connectStep{r: r}), perHost(inspectStep{r: r, sharedFiles: opts.Config.Shared.Files}), perHost(probe)})
	for i := range reports {
		reports[i].Host = r.targets[i].Name()
	}
	return reports, err
}

// stepFunc is a step made of a function, for the short pipelines of the

// hostTools are what the deploy's scripts run: the release copy and upload
// (tar, gzip, cp), the manifest and its checks (sha256sum, awk, sort, wc,
// cat), the switch and cleanup.
var hostTools = []string{"tar", "gzip", "cp", "sha256sum", "awk", "sort", "wc", "cat", "readlink", "mkdir", "ln", "mv", "rm", "head", "tr", "sync", "env", "df"}

// checkScript reports missing tools, whether the deploy directory (or,
// before a first deploy, its nearest existing ancestor) is writable, and
// the free space there.
func checkScript(deployTo string) string {
	return shell.Script(`for t in {{tools}}; do command -v "$t" >/dev/null 2>&1 || echo "missing-tool $t"; done
d={{deploy_to}}; while [ ! -e "$d" ]; do d=$(dirname -- "$d"); done
[ -w "$d" ] || echo "not-writable $d"
df -Pk -- "$d" | awk 'NR==2 {print "free-kb " $4}'`, shell.Args{"tools": hostTools, "deploy_to": deployTo})
}
