#!/usr/bin/env bash
# Installs what the end-to-end suite needs on Debian/Ubuntu: a real OpenSSH
# server (the test hosts), git, and util-linux's unshare (one mount
# namespace per host). Does nothing when they are already there.
set -euo pipefail

need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh >/dev/null || need+=(openssh-client)
command -v git >/dev/null || need+=(git)
command -v unshare >/dev/null || need+=(util-linux)

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
