package config

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"unicode"
)

// Host names and users are held to a strict alphabet: they end up on ssh
// command lines and in ssh_config lookups, and a name such as "-oProxyCommand=…"
// must never get that far.
var (
	hostNameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]*$`)
	userRE     = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]*$`)
	zoneRE     = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
)

const (
	hostFix  = "write a host as NAME, USER@NAME, NAME:PORT or USER@NAME:PORT, e.g. deploy@web2.example.com:2222"
	localFix = "write just local for this machine without SSH, or localhost to reach it over SSH"
)

// hostSpec is a host entry taken apart.
type hostSpec struct {
	user, host string
	port       int
	local      bool
}

// parseHostSpec reads USER@HOST:PORT, with HOST an IPv6 address in
// brackets when a port follows it. The returned problem has no position.
func parseHostSpec(s string) (hostSpec, *problem) {
	bad := func(fix, format string, args ...any) (hostSpec, *problem) {
		return hostSpec{}, &problem{msg: fmt.Sprintf(format, args...), fix: fix}
	}
	switch {
	case s == "":
		return bad(hostFix, "empty host entry")
	case strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return bad("write one host per entry; "+hostFix, "host %q contains a space or a control character", s)
	case strings.HasPrefix(s, "-"):
		return bad("ssh would take it for an option; remove the leading -", "host %q starts with -", s)
	}
	var spec hostSpec
	rest := s
	if user, after, found := strings.Cut(s, "@"); found {
		if !userRE.MatchString(user) {
			return bad("a user is letters, digits, '.', '_' and '-', e.g. deploy@"+after, "host %q has no valid user before @", s)
		}
		spec.user, rest = user, after
	}
	var portText string
	hasPort := false
	switch {
	case strings.HasPrefix(rest, "["):
		inside, after, found := strings.Cut(rest[1:], "]")
		if !found {
			return bad("close the bracket: [2001:db8::1]:22", "host %q has a [ without its ]", s)
		}
		if !isIPv6(inside) {
			return bad("brackets are for IPv6 addresses, e.g. [2001:db8::1]:22", "host %q: %q in brackets is not an IPv6 address", s, inside)
		}
		if after != "" {
			portText, hasPort = strings.CutPrefix(after, ":")
			if !hasPort {
				return bad(hostFix, "host %q has %q after its ]", s, after)
			}
		}
		spec.host = inside
	case strings.Count(rest, ":") > 1:
		if !isIPv6(rest) {
			return bad("write an IPv6 address in brackets when a port follows it, e.g. [2001:db8::1]:2222", "host %q is not a host name or an IPv6 address", s)
		}
		spec.host = rest
	default:
		spec.host, portText, hasPort = strings.Cut(rest, ":")
		if !hostNameRE.MatchString(spec.host) {
			return bad("a host is a name or address of letters, digits, '.', '-' and '_' (an ssh_config alias works too)",
				"host %q has no valid host name", s)
		}
	}
	if hasPort {
		port, err := strconv.Atoi(portText)
		if err != nil || port < 1 || port > 65535 || strings.HasPrefix(portText, "+") {
			return bad("write the SSH port as a number from 1 to 65535, e.g. web1.example.com:2222", "port %q of host %q is not a number from 1 to 65535", portText, s)
		}
		spec.port = port
	}
	spec.local = spec.host == "local"
	if spec.local && (spec.user != "" || spec.port != 0) {
		return bad(localFix, "host %q: local means this machine without SSH, so it takes no user or port", s)
	}
	return spec, nil
}

// isIPv6 accepts an IPv6 address, with a zone only of safe characters.
func isIPv6(s string) bool {
	addr, err := netip.ParseAddr(s)
	return err == nil && addr.Is6() && (addr.Zone() == "" || zoneRE.MatchString(addr.Zone()))
}

// name is how a host written as a mapping is shown: the string form that
// would mean the same, so names stay distinct within a stage.
func (h hostSpec) name() string {
	name := h.host
	if h.port != 0 {
		if strings.Contains(name, ":") {
			name = "[" + name + "]"
		}
		name += ":" + strconv.Itoa(h.port)
	}
	if h.user != "" {
		name = h.user + "@" + name
	}
	return name
}
