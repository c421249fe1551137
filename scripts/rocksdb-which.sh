#!/usr/bin/env bash
# rocksdb-which.sh BINARY says which RocksDB a metastore binary links:
# Debian's shared librocksdb (ldd lists it), or a static RocksDB inside the
# binary (nm finds rocksdb_open), in which case it counts the calls to
# __assert_fail: thousands for Debian's librocksdb.a (assertions on), a
# handful (Go's and libstdc++'s) for the release build of
# scripts/rocksdb-release.sh (-DNDEBUG).
set -euo pipefail
bin=${1:?usage: rocksdb-which.sh BINARY}
if so=$(ldd "$bin" | grep -o '/[^ ]*librocksdb\.so[^ ]*'); then
  echo "$bin: RocksDB shared, $(readlink -f "$so") (Debian)"
elif nm "$bin" 2>/dev/null | grep -E ' T rocksdb_open$' >/dev/null; then
  asserts=$(objdump -d --no-show-raw-insn "$bin" | grep -c 'call.*<__assert_fail' || true)
  kind="release build (-DNDEBUG)"
  [ "$asserts" -gt 100 ] && kind="assertions on: not the release build"
  echo "$bin: RocksDB static, $asserts __assert_fail call sites, $kind"
else
  echo "$bin: no RocksDB found" >&2
  exit 1
fi
