#!/usr/bin/env bash
# rocksdb-which.sh BINARY says which RocksDB a metastore binary links:
# Debian's shared librocksdb (ldd lists it) or the static release build of
# scripts/rocksdb-release.sh (no librocksdb.so; its code is in the binary).
set -euo pipefail
bin=${1:?usage: rocksdb-which.sh BINARY}
if so=$(ldd "$bin" | grep -o '/[^ ]*librocksdb\.so[^ ]*'); then
  echo "$bin: RocksDB shared, $(readlink -f "$so") (Debian)"
elif nm "$bin" 2>/dev/null | grep -q ' rocksdb_open$\| T rocksdb_open'; then
  echo "$bin: RocksDB static (release build, scripts/rocksdb-release.sh)"
else
  echo "$bin: no RocksDB found" >&2
  exit 1
fi
