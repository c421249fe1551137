#!/usr/bin/env bash
# rocksdb-release.sh builds a release RocksDB 7.8.3 (the version grocksdb
# v1.7.14 and Debian's librocksdb-dev are) once, from Debian's own source
# package, as a static library with -O2 -DNDEBUG and x86-64-v3 code, into a
# cache outside the repository. Debian's shared library is built with
# assertions on and PORTABLE=ON; this one is what `make build ROCKSDB=release`
# and `make bench-compare ROCKSDB=release` link.
#
# Idempotent: a second run finds the cached library and only prints the flags.
# Output (stdout, nothing else): the two lines
#   CGO_CFLAGS=...
#   CGO_LDFLAGS=...
# to put in the environment of `go build`; with --export, as shell export
# statements instead (`eval "$(scripts/rocksdb-release.sh --export)"`). Progress goes to stderr, the
# compiler's output to $cache/build.log.
#
# Knobs: ROCKSDB_MARCH (x86-64-v3; "native" for this CPU only, x86-64-v2
#        for older CPUs; each its own cache directory),
#        ROCKSDB_JOBS (2), METASTORE_CACHE (~/.cache/metastore).
set -euo pipefail

version=7.8.3
debver=7.8.3-2
march=${ROCKSDB_MARCH:-x86-64-v3}
jobs=${ROCKSDB_JOBS:-2}
suffix=release
[ "$march" = x86-64-v3 ] || suffix="release-$march"
cache=${METASTORE_CACHE:-$HOME/.cache/metastore}/rocksdb-$version-$suffix
say() { printf 'rocksdb-release: %s\n' "$*" >&2; }

# The link flags: the static library first, then what it needs. The
# compression libraries are Debian's shared ones (librocksdb-dev pulls in
# their -dev packages; scripts/setup.sh installs them).
export_mode=false
[ "${1:-}" = --export ] && export_mode=true
flags() {
  local cflags="-I$cache/include"
  local ldflags="-L$cache/lib -lrocksdb -lstdc++ -lm -ldl -pthread -lsnappy -llz4 -lzstd -lz -lbz2"
  if $export_mode; then
    printf "export CGO_CFLAGS='%s' CGO_LDFLAGS='%s'\n" "$cflags" "$ldflags"
  else
    echo "CGO_CFLAGS=$cflags"
    echo "CGO_LDFLAGS=$ldflags"
  fi
}

if [ -f "$cache/lib/librocksdb.a" ] && [ -f "$cache/BUILD-INFO" ]; then
  say "cached in $cache ($(head -n1 "$cache/BUILD-INFO"))"
  flags
  exit 0
fi

# Debian's source package needs a deb-src entry for the mirror the machine
# already uses: copy the deb entries of debian.sources as deb-src.
if ! apt-get source --print-uris "rocksdb=$debver" >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  src=/etc/apt/sources.list.d/debian.sources
  [ -f "$src" ] || { say "no $src to derive a deb-src entry from"; exit 1; }
  say "adding deb-src entries (metastore-deb-src.sources) for the mirrors in $src"
  sed -n '/^Types:/,/^$/p' "$src" | sed 's/^Types: deb$/Types: deb-src/' |
    $sudo tee /etc/apt/sources.list.d/metastore-deb-src.sources >/dev/null
  $sudo apt-get update -qq >&2
fi
command -v dpkg-source >/dev/null || { say "dpkg-source missing: apt-get install dpkg-dev"; exit 1; }

# The source tree is kept until the library is installed, so an interrupted
# build resumes where it stopped.
work="$cache/src"
tree=$( (find "$work" -maxdepth 1 -type d -name "rocksdb-$version*" 2>/dev/null || true) | head -n1)
if [ -z "$tree" ]; then
  rm -rf "$work"
  mkdir -p "$work"
  say "fetching Debian's rocksdb $debver source into $work"
  (cd "$work" && apt-get source -qq "rocksdb=$debver") >&2
  tree=$(find "$work" -maxdepth 1 -type d -name "rocksdb-$version*" | head -n1)
fi
[ -n "$tree" ] || { say "source tree not found under $work"; exit 1; }

# RocksDB's own Makefile: DEBUG_LEVEL=0 gives -O2 -DNDEBUG; PORTABLE=1 stops
# it adding -march=native, so the -march below is the only ISA choice, and
# USE_SSE=1 turns on its SSE4.2 CRC32c, PCLMUL, AVX2, BMI and LZCNT paths
# (all part of x86-64-v3).
# Tests, tools, gflags, jemalloc/tcmalloc, TBB, NUMA and io_uring are left
# out so the static library's link needs only the compression libraries.
say "building librocksdb.a (-O2 -DNDEBUG -march=$march, make -j$jobs, nice 10); log: $cache/build.log"
start=$(date +%s)
# No debug info (-g0 instead of the Makefile's -g): it does not change the
# code, and it halves the compile time on 2 cores and the library's size.
sed -i 's/^\(C\|CXX\)FLAGS += -g$/\1FLAGS += -g0/' "$tree/Makefile"
(
  cd "$tree"
  export DEBUG_LEVEL=0 PORTABLE=1 USE_RTTI=1 DISABLE_WARNING_AS_ERROR=1
  # USE_SSE's -mavx2 -mbmi -mlzcnt need x86-64-v3; older targets go without.
  case $march in x86-64 | x86-64-v2) ;; *) export USE_SSE=1 ;; esac
  export ROCKSDB_DISABLE_GFLAGS=1 ROCKSDB_DISABLE_JEMALLOC=1 ROCKSDB_DISABLE_TCMALLOC=1 \
    ROCKSDB_DISABLE_TBB=1 ROCKSDB_DISABLE_NUMA=1 ROCKSDB_DISABLE_URING=1 \
    ROCKSDB_DISABLE_LIBURING=1 ROCKSDB_DISABLE_MEMKIND=1 ROCKSDB_DISABLE_BACKTRACE=1
  export EXTRA_CXXFLAGS="-march=$march -O2 -DNDEBUG" EXTRA_CFLAGS="-march=$march -O2 -DNDEBUG"
  nice -n 10 make -j"$jobs" static_lib
) >"$cache/build.log" 2>&1 || { say "build failed; see $cache/build.log"; tail -n 20 "$cache/build.log" >&2; exit 1; }

mkdir -p "$cache/lib" "$cache/include"
cp "$tree/librocksdb.a" "$cache/lib/"
rm -rf "$cache/include/rocksdb"
cp -r "$tree/include/rocksdb" "$cache/include/"
{
  echo "RocksDB $version (Debian source $debver) static, -O2 -DNDEBUG -march=$march"
  echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) in $(($(date +%s) - start))s with $(g++ --version | head -n1)"
  grep -E '^(PLATFORM_LDFLAGS|PLATFORM_CXXFLAGS)=' "$tree/make_config.mk" || true
} >"$cache/BUILD-INFO"
rm -rf "$work"
say "done: $cache/lib/librocksdb.a ($(du -h "$cache/lib/librocksdb.a" | cut -f1))"
flags
