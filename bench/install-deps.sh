#!/usr/bin/env bash
# Installs what `make bench` and `make bench-quick` need on Debian/Ubuntu:
# the OpenSSH server (the fleet's hosts), the client's ssh-keygen, git,
# util-linux (one mount namespace per host), xfsprogs (each host's own
# XFS), and Capistrano 3 (Debian's
# capistrano package, with Ruby), which the benchmark measures slipway
# against, and SeaweedFS's weed (the S3 server the artifact store is
# measured with, built once into ~/.cache/slipway-test). Does nothing when
# they are already there. `install-deps.sh store` leaves Capistrano out
# (make bench-store).
set -euo pipefail

need=()
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
command -v ssh-keygen >/dev/null || need+=(openssh-client)
command -v git >/dev/null || need+=(git)
command -v unshare >/dev/null || need+=(util-linux)
command -v mkfs.xfs >/dev/null || need+=(xfsprogs) # the hosts' own file systems
[ "${1:-}" = store ] || command -v cap >/dev/null || need+=(capistrano)
command -v curl >/dev/null || need+=(curl)
"$(dirname "$0")/../scripts/install-test-deps.sh" weed

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "bench: missing ${need[*]}; run as root (the benchmark needs root anyway) or: sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
echo "bench: installing ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
