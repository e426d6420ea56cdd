package config

import (
	"net"
	"strconv"
	"strings"
	"time"
)

// OPcacheReset resets OPcache in php-fpm's pool on every host after the
// switch of a deploy (after cleanup) or a rollback: slipway speaks FastCGI
// to the pool's Socket from the host itself (through the SSH connection)
// and has the pool run a small script that calls opcache_reset(). With
// Above 0 it resets every time (for servers that tell PHP current/ paths);
// otherwise only when OPcache is fuller than Above percent (of its memory,
// keys or interned strings), to free the old releases' scripts that
// resolved paths leave in it. PHP restarts OPcache once the requests that
// started before the reset have ended; Wait bounds the wait for that.
type OPcacheReset struct {
	Socket string // an absolute unix socket path, or HOST:PORT for a pool listening on TCP
	Above  int    // percent, 1 to 99; 0 to reset after every switch
	Wait   time.Duration
	Where  string
}

var opcacheSection = &section{keys: []string{"socket", "above", "wait"}, label: "under opcache_reset:", example: "{socket: /run/php/php8.2-fpm.sock}"}

// opcacheReset reads how OPcache is reset in php-fpm's pool after a switch.
func (d *decoder) opcacheReset(f field) *OPcacheReset {
	fields, ok := d.fields(f.value, f.path, opcacheSection)
	if isNull(f.value) || !ok {
		if ok {
			d.fail(f.at, "name the pool's socket, e.g. opcache_reset: {socket: /run/php/php8.2-fpm.sock}", "%s is empty", f.path)
		}
		return nil
	}
	o := &OPcacheReset{Wait: time.Minute, Where: d.where(f.at)}
	socketGiven := false
	for _, of := range fields {
		switch of.key {
		case "socket":
			socketGiven = true
			if s, ok := d.str(of); ok {
				if reason := checkFastCGIAddress(s); reason != "" {
					d.fail(of.valueAt(), "write php-fpm's listen address as the host sees it: a socket path such as /run/php/php8.2-fpm.sock, or 127.0.0.1:9000", "%s %s %s", of.path, quoteOrEmpty(s), reason)
				}
				o.Socket = strings.TrimPrefix(s, "unix:")
			}
		case "above":
			if s, ok := d.str(of); ok {
				n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(s), "%"))
				if err != nil || n < 1 || n > 99 {
					d.fail(of.valueAt(), "write a percentage from 1% to 99%, e.g. above: 75%, or leave above: out to reset after every switch", "%s must be a percentage from 1%% to 99%%, not %s", of.path, quoteOrEmpty(s))
				}
				o.Above = n
			}
		case "wait":
			if dur, ok := d.duration(of); ok {
				o.Wait = dur
			}
		}
	}
	if !socketGiven {
		d.fail(f.at, "add the pool's socket, e.g. socket: /run/php/php8.2-fpm.sock (php-fpm's listen)", "%s has no socket", f.path)
	}
	return o
}

// checkFastCGIAddress says why s is not a FastCGI address: an absolute unix
// socket path (unix:/path too) or HOST:PORT; "" when it is one.
func checkFastCGIAddress(s string) string {
	path := strings.TrimPrefix(s, "unix:")
	switch {
	case s == "" || hasControl(s) || strings.ContainsAny(s, " \t"):
		return "is not a socket path or HOST:PORT"
	case strings.HasPrefix(path, "/"):
		if len(path) > 107 { // sun_path holds 108 bytes
			return "is longer than a unix socket path can be (107 bytes)"
		}
		return ""
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return "is neither an absolute socket path nor HOST:PORT"
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "has no port from 1 to 65535"
	}
	return ""
}
