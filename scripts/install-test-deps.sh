#!/usr/bin/env bash
# Installs what the end-to-end suite needs on Debian/Ubuntu: a real OpenSSH
# server (the test hosts), git, util-linux's unshare (one mount namespace per
# host), and the web servers of the zero-downtime proofs, which serve the
# deployed releases: nginx, Apache httpd (with mod_php, which brings the
# prefork MPM, and mod_proxy_fcgi for php-fpm) and Caddy, and php-fpm with
# OPcache (php-fpm brings php-cli). Does nothing when they are already there.
# The tests start their own servers on loopback ports; the system services
# the packages install are not used.
set -euo pipefail

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
# rpm reads the .rpm that make dist builds (tools/dist's test); dpkg-deb,
# which reads the .deb, comes with every Debian system.
command -v rpm >/dev/null || need+=(rpm)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-test-deps: missing ${need[*]}; run as root or: sudo apt-get install -y ${need[*]}" >&2
  # Without them the end-to-end tests skip loudly (and fail under CI=true).
  exit 0
fi
echo "install-test-deps: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
