#!/usr/bin/env bash
# OS packages the test suite needs (real sshd hosts, numactl, allocators, a PostgreSQL server and headless
# Chromium for the history tests, ...). Installs only what is missing, so a second call does nothing. Needs
# root (or sudo) on Debian/Ubuntu. The tests start their own PostgreSQL server (initdb + pg_ctl on loopback).
set -euo pipefail
packages=(openssh-server openssh-client numactl libjemalloc2 libtcmalloc-minimal4 postgresql chromium
          fonts-dejavu-core)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "[fleetbench] installing test packages: ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
