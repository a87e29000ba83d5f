#!/usr/bin/env bash
# Installs what a fresh Debian machine lacks to build, run and test DelugeFS:
# the libfuse3 headers and library, the fuse3 tools (fusermount3), and the
# stock programs the tests use as peers and references (git, aria2c).
# It asks apt-get only for what is missing.
set -euo pipefail

need=()
[ -f /usr/include/fuse3/fuse.h ] || need+=(libfuse3-dev)
command -v fusermount3 >/dev/null 2>&1 || need+=(fuse3)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
command -v git >/dev/null 2>&1 || need+=(git)
if [ "${1:-}" = "--test" ]; then
	command -v aria2c >/dev/null 2>&1 || need+=(aria2)
	command -v ip >/dev/null 2>&1 || need+=(iproute2)
	command -v getfattr >/dev/null 2>&1 || need+=(attr)
fi
[ ${#need[@]} -eq 0 ] && exit 0

sudo=""
if [ "$(id -u)" != 0 ]; then
	command -v sudo >/dev/null 2>&1 || { echo "deps: need root or sudo to install: ${need[*]}" >&2; exit 1; }
	sudo=sudo
fi
echo "deps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
