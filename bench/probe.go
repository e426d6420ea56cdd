package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
)

// probe starts a fleet of n hosts with the app and both tools set up (the
// hosts on the plan's file system, behind relays at its largest round-trip
// time: BENCH_FS, BENCH_RTT), prints
// how to run them by hand, and waits for Ctrl-C: for profiling a deploy
// step by step (BENCH_PROBE=10 go run ./bench).
func probe(p plan, n int) (err error) {
	defer catchFatal(&err)
	defer closeAllScopes()
	root := newScope("bench")
	res, app := prepare(root, p)
	b := newBench(n, app, res.slipwayBin, &quietWait{left: p.quietWait}, p.fileSystem)
	b.setRTT(p.rtts[len(p.rtts)-1])
	defer b.close()
	// Both write their configuration; the commands are run by hand.
	b.slipwayTool(slipwayDeployTo)
	b.capistranoTool(capDeployTo)
	var env []string
	for _, kv := range b.env() {
		if strings.HasPrefix(kv, "HOME=") || strings.HasPrefix(kv, "TMPDIR=") {
			env = append(env, kv)
		}
	}
	fmt.Printf("fleet of %d ready. In another shell:\n  cd %s\n  export %s\n  %s -c %s deploy production\n  (cd capistrano && cap production deploy)\n  app: %s (change: edit %s, commit, push origin main)\n",
		n, b.confDir, strings.Join(env, " "), res.slipwayBin, filepath.Join(b.confDir, "slipway-srv-slipway-app.yml"), app.work, changedFile)
	wait := make(chan os.Signal, 1)
	signal.Notify(wait, syscall.SIGUSR1)
	fmt.Printf("kill -USR1 %d to stop\n", os.Getpid())
	<-wait
	return nil
}
