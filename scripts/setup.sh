#!/usr/bin/env bash
# setup.sh installs what building and testing MetaStore needs and is missing.
# It is idempotent: a second run changes nothing and says so.
set -euo pipefail

say() { printf 'setup: %s\n' "$*"; }

# Debian packages: RocksDB 7.8.3 and the compression libraries it links.
pkgs=(librocksdb-dev libsnappy-dev liblz4-dev libzstd-dev libgflags-dev zlib1g-dev libbz2-dev)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  say "installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
else
  say "Debian packages present (${pkgs[*]})"
fi
ver=$(dpkg-query -W -f='${Version}' librocksdb-dev)
case "$ver" in
  7.8.3*) say "librocksdb-dev $ver (grocksdb v1.7.14 is pinned for it)";;
  *) say "WARNING: librocksdb-dev $ver; grocksdb v1.7.14 is built for 7.8.3";;
esac

# Go: the version go.mod names, or newer.
need=$(awk '/^go /{print $2}' "$(dirname "$0")/../go.mod")
if ! command -v go >/dev/null 2>&1; then
  say "Go is not installed; install Go $need or newer from the Go project's packages"
  exit 1
fi
have=$(go env GOVERSION | sed 's/^go//')
if [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -n1)" != "$need" ]; then
  say "Go $have is older than $need (go.mod)"
  exit 1
fi
say "go $have (go.mod needs $need)"
