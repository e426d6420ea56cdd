package host

import (
	"context"
	"net"
	"strconv"
	"strings"
)

// Verbose wraps an executor so every command it runs is shown (slipway
// -v): report gets each script before it runs, then the first lines of
// what it printed.
func Verbose(ex Executor, report func(line string)) Executor {
	return verbose{Executor: ex, report: report}
}

type verbose struct {
	Executor
	report func(string)
}

const verboseLines = 10

func (v verbose) show(script string, res Result, err error) {
	for i, line := range strings.Split(strings.TrimRight(script, "\n"), "\n") {
		prefix := "$ "
		if i > 0 {
			prefix = "  "
		}
		v.report(prefix + line)
	}
	out := strings.TrimRight(string(res.Stdout)+string(res.Stderr), "\n")
	if out != "" {
		lines := strings.Split(out, "\n")
		for i, line := range lines {
			if i == verboseLines {
				v.report("> … " + strconv.Itoa(len(lines)-verboseLines) + " more lines")
				break
			}
			v.report("> " + line)
		}
	}
	if err != nil {
		v.report("! " + err.Error())
	}
}

func (v verbose) Query(ctx context.Context, cmd Command) (Result, error) {
	res, err := v.Executor.Query(ctx, cmd)
	v.show(cmd.Script, res, err)
	return res, err
}

func (v verbose) Exec(ctx context.Context, cmd Command) (Result, error) {
	res, err := v.Executor.Exec(ctx, cmd)
	v.show(cmd.Script, res, err)
	return res, err
}

func (v verbose) Rename(ctx context.Context, oldpath, newpath string) error {
	err := v.Executor.Rename(ctx, oldpath, newpath)
	v.report("$ rename " + oldpath + " " + newpath + " (one rename(2))")
	if err != nil {
		v.report("! " + err.Error())
	}
	return err
}

// DialTCP is shown too; PrepareRename and Loopback are the wrapped
// executor's.
func (v verbose) DialTCP(ctx context.Context, addr string) (net.Conn, error) {
	v.report("$ connect to " + addr + " from the host")
	return v.Executor.DialTCP(ctx, addr)
}
