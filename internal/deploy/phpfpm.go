package deploy

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/slipway-deploy/slipway/internal/config"
	"github.com/slipway-deploy/slipway/internal/host"
)

// The founding story of slipway: a long import cancelled by every deploy,
// because a hook restarted php-fpm. With the web server passing the
// resolved path (nginx $realpath_root, Apache's RewriteMap resolver,
// Caddy's resolve_root_symlink: see examples/), PHP sees each release
// under its own path and needs no restart or reload at all; a restart
// kills every request in flight, and so does a reload while
// process_control_timeout is 0 (php-fpm's default). With it, a reload
// serves no new request until the longest running one has ended
// (e2e/opcache_test.go); opcache_reset empties OPcache without either.

// FPMAction is what a hook does to php-fpm.
type FPMAction int

const (
	FPMRestart FPMAction = iota + 1 // kills in-flight requests, always
	FPMReload                       // kills them while process_control_timeout is 0
)

// FPMHook is a hook that restarts or reloads php-fpm.
type FPMHook struct {
	Phase  string
	Hook   config.Hook
	Action FPMAction
}

var (
	fpmName    = `php[0-9.]*-?fpm[0-9.]*`
	fpmRestart = []*regexp.Regexp{
		regexp.MustCompile(`\b(systemctl|rc-service|service)\b[^;&|]*\b(restart|stop|try-restart|condrestart)\b[^;&|]*\b` + fpmName),
		regexp.MustCompile(`\b(systemctl)\b[^;&|]*\b` + fpmName + `[^;&|]*\b(restart|stop)\b`),
		regexp.MustCompile(`\bservice\s+` + fpmName + `\s+(restart|stop|force-reload)\b`),
		regexp.MustCompile(`/etc/init\.d/` + fpmName + `\s+(restart|stop|force-reload)\b`),
		regexp.MustCompile(`\b(pkill|killall)\b[^;&|]*\bphp-?fpm`),
	}
	fpmReload = []*regexp.Regexp{
		regexp.MustCompile(`\b(systemctl|rc-service|service)\b[^;&|]*\breload\b[^;&|]*\b` + fpmName),
		regexp.MustCompile(`\bservice\s+` + fpmName + `\s+reload\b`),
		regexp.MustCompile(`/etc/init\.d/` + fpmName + `\s+reload\b`),
		regexp.MustCompile(`\bkill\b[^;&|]*-(USR2|SIGUSR2|12)\b`),
	}
)

// FPMHooks finds the hooks that restart or reload php-fpm.
func FPMHooks(h config.Hooks) []FPMHook {
	var out []FPMHook
	scan := func(phase string, hooks []config.Hook) {
		for _, hook := range hooks {
			if matchAny(fpmRestart, hook.Run) {
				out = append(out, FPMHook{phase, hook, FPMRestart})
			} else if matchAny(fpmReload, hook.Run) {
				out = append(out, FPMHook{phase, hook, FPMReload})
			}
		}
	}
	scan("before_switch", h.BeforeSwitch)
	scan("after_switch", h.AfterSwitch)
	scan("after_rollback", h.AfterRollback)
	return out
}

func matchAny(res []*regexp.Regexp, s string) bool {
	for _, re := range res {
		if re.MatchString(s) {
			return true
		}
	}
	return false
}

// fpmTimeoutScript prints process_control_timeout from the php-fpm main
// configs a host has, one per line as "file=value" ("file=" when unset).
const fpmTimeoutScript = `for f in /etc/php/*/fpm/php-fpm.conf /etc/php-fpm.conf /usr/local/etc/php-fpm.conf; do
  [ -r "$f" ] || continue
  v=$(sed -n 's/^[[:space:]]*process_control_timeout[[:space:]]*=[[:space:]]*\([^;[:space:]]*\).*/\1/p' "$f" | tail -n 1)
  printf '%s=%s\n' "$f" "$v"
done`

// parseFPMTimeouts reads fpmTimeoutScript's output into the configs whose
// process_control_timeout is 0 or unset (php-fpm's default is 0).
func parseFPMTimeouts(out string) (zero []string) {
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		file, value, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		if fpmTimeoutSeconds(value) == 0 {
			zero = append(zero, file)
		}
	}
	return zero
}

// fpmTimeoutSeconds reads a php-fpm time value ("30", "30s", "1m").
func fpmTimeoutSeconds(v string) int {
	v = strings.TrimSpace(v)
	mult := 1
	switch {
	case strings.HasSuffix(v, "s"):
		v = strings.TrimSuffix(v, "s")
	case strings.HasSuffix(v, "m"):
		v, mult = strings.TrimSuffix(v, "m"), 60
	case strings.HasSuffix(v, "h"):
		v, mult = strings.TrimSuffix(v, "h"), 3600
	case strings.HasSuffix(v, "d"):
		v, mult = strings.TrimSuffix(v, "d"), 86400
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0
	}
	return n * mult
}

func fpmRestartWarning(h FPMHook) string {
	return fmt.Sprintf("%s hook %q (%s) restarts php-fpm: every request in flight is killed on each deploy (a long import or upload is cancelled). "+
		"With the web server passing the resolved path (nginx $realpath_root as SCRIPT_FILENAME and DOCUMENT_ROOT, Apache's RewriteMap resolver, Caddy's resolve_root_symlink: see examples/), php-fpm needs no restart or reload: remove the hook (opcache_reset frees OPcache without one)",
		h.Phase, h.Hook.Run, h.Hook.Where)
}

func fpmReloadWarning(h FPMHook, files []string) string {
	return fmt.Sprintf("%s hook %q (%s) reloads php-fpm while process_control_timeout is 0 in %s: a reload then kills every request in flight. "+
		"Remove the hook (with the resolved path in the web server, $realpath_root in nginx, no reload is needed; opcache_reset frees OPcache without one), "+
		"or set process_control_timeout = 60s in php-fpm.conf so workers finish their requests first (php-fpm then serves no new request until the longest running one has ended)",
		h.Phase, h.Hook.Run, h.Hook.Where, strings.Join(files, ", "))
}

// fpmWarnings explains the hooks that would kill requests in flight on t.
// A reload is only harmful while process_control_timeout is 0, which is
// read from the host's own php-fpm configuration.
func fpmWarnings(ctx context.Context, t *Target, hooks []FPMHook) []string {
	var out []string
	var zeroTimeout []string
	readTimeouts := true
	for _, h := range hooks {
		switch h.Action {
		case FPMRestart:
			out = append(out, fpmRestartWarning(h))
		case FPMReload:
			if readTimeouts {
				readTimeouts = false
				res, err := t.Exec.Query(ctx, host.Command{Script: fpmTimeoutScript})
				if err != nil {
					out = append(out, fmt.Sprintf("could not read php-fpm's process_control_timeout: %v", err))
					continue
				}
				zeroTimeout = parseFPMTimeouts(string(res.Stdout))
			}
			if len(zeroTimeout) > 0 {
				out = append(out, fpmReloadWarning(h, zeroTimeout))
			}
		}
	}
	return out
}
