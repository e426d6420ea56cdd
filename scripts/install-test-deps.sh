#!/usr/bin/env bash
# Installs what the end-to-end suite needs on Debian/Ubuntu: a real OpenSSH
# server (the test hosts), git, util-linux's unshare (one mount namespace per
# host), and the web servers of the zero-downtime proofs, which serve the
# deployed releases: nginx, Apache httpd (with mod_php, which brings the
# prefork MPM, and mod_proxy_fcgi for php-fpm) and Caddy, and php-fpm with
# OPcache (php-fpm brings php-cli); and what hosts unlike the default one
# need (login shells, BusyBox, file systems, see below). Does nothing when
# they are already there.
# The tests start their own servers on loopback ports; the system services
# the packages install are not used.
#
# It also builds SeaweedFS's weed, the S3 server of the artifact store tests,
# once per machine into ~/.cache/slipway-test (outside the repository, so a
# fresh clone finds it); the tests build it themselves when it is missing
# (internal/testutil/s3.go). `install-test-deps.sh weed` builds only that.
set -euo pipefail

# The same version as testutil.SeaweedFSVersion (TestInstallScriptBuildsWeed).
weed_version=v0.0.0-20261109003541-7506e5f91cd6

build_weed() {
  local bin="${XDG_CACHE_HOME:-$HOME/.cache}/slipway-test/weed-$weed_version/weed"
  [ -x "$bin" ] && return 0
  command -v go >/dev/null || { echo "install-test-deps: no go on PATH to build SeaweedFS; the tests build it when they first need it" >&2; return 0; }
  mkdir -p "$(dirname "$bin")"
  (
    # The lock the tests take too: one build at a time.
    exec 9>"$(dirname "$bin")/build.lock"
    command -v flock >/dev/null && flock 9
    [ -x "$bin" ] && exit 0
    echo "install-test-deps: building SeaweedFS $weed_version into $bin (once per machine; minutes)" >&2
    # Its go.mod has replace directives, which go install pkg@version
    # refuses: build it as the main module, in the module cache.
    dir=$(cd "${TMPDIR:-/tmp}" && GOFLAGS=-mod=mod GOWORK=off go mod download -json "github.com/seaweedfs/seaweedfs@$weed_version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    [ -n "$dir" ] || { echo "install-test-deps: go mod download github.com/seaweedfs/seaweedfs@$weed_version failed" >&2; exit 1; }
    start=$(date +%s)
    (cd "$dir" && GOFLAGS=-buildvcs=false GOWORK=off nice -n 10 go build -trimpath -o "$bin.building" ./weed)
    mv -f "$bin.building" "$bin"
    echo "install-test-deps: built SeaweedFS in $(( $(date +%s) - start ))s" >&2
  )
}

if [ "${1:-}" = weed ]; then
  build_weed
  exit
fi

need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null || need+=(openssh-client)
command -v git >/dev/null || need+=(git)
command -v unshare >/dev/null || need+=(util-linux)
[ -x /usr/sbin/nginx ] || need+=(nginx)
# Debian names the binary after the PHP version (/usr/sbin/php-fpm8.2); the
# php-fpm package depends on the distribution's current one, with OPcache.
compgen -G '/usr/sbin/php-fpm*' >/dev/null || need+=(php-fpm)
[ -x /usr/sbin/apache2 ] || need+=(apache2)
compgen -G '/usr/lib/apache2/modules/libphp*.so' >/dev/null || need+=(libapache2-mod-php)
[ -x /usr/bin/caddy ] || need+=(caddy)
# php-cli runs the Laravel recipe test's fake artisan; python3 serves the
# hosts' health-check pages; iproute2 gives hosts private networks.
[ -x /usr/bin/php ] || need+=(php-cli)
# php-sqlite3: the migrations proof runs real migrations on SQLite.
php -m 2>/dev/null | grep -qi '^pdo_sqlite$' || need+=(php-sqlite3)
[ -x /usr/bin/python3 ] || need+=(python3)
command -v ip >/dev/null || need+=(iproute2)
# curl: the hosts download their packs from the artifact store with it.
command -v curl >/dev/null || need+=(curl)
command -v wget >/dev/null || need+=(wget)
# zstd: the hosts unpack the upload stream with it (source.compress: auto
# takes it where a host has it), and openssl verifies the release.
command -v zstd >/dev/null || need+=(zstd)
command -v openssl >/dev/null || need+=(openssl)
# rpm reads the .rpm that make dist builds (tools/dist's test); dpkg-deb,
# which reads the .deb, comes with every Debian system.
command -v rpm >/dev/null || need+=(rpm)
# Hosts that differ as real servers do (internal/testutil's HostOptions):
# tcsh and fish as deploy users' login shells, a PATH of BusyBox applets,
# XFS with reflinks and ext4 on loop devices (filefrag, in e2fsprogs, shows
# the reflinks' shared extents), perl as a PID namespace's init.
[ -x /usr/bin/tcsh ] || need+=(tcsh)
[ -x /usr/bin/fish ] || need+=(fish)
command -v busybox >/dev/null || need+=(busybox)
command -v mkfs.xfs >/dev/null || need+=(xfsprogs)
{ command -v mkfs.ext4 && command -v filefrag; } >/dev/null || need+=(e2fsprogs)
command -v perl >/dev/null || need+=(perl-base)

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-test-deps: missing ${need[*]}; run as root or: sudo apt-get install -y ${need[*]}" >&2
    # Without them the end-to-end tests skip loudly (and fail under CI=true).
  else
    echo "install-test-deps: installing ${need[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  fi
fi
build_weed
