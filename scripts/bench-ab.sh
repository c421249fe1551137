#!/usr/bin/env bash
# bench-ab.sh compares MetaStore builds (or flag sets) on the pinned
# 1-member put row, alternating them for several rounds, because one
# server's throughput moves by 10-20% between two runs minutes apart on
# this machine, as much as most changes measured.
#
# Each round of each variant starts a fresh member pinned to core 0
# (taskset -c 0) with an empty data dir, warms it with BENCH_AB_WARM puts
# of the 100k key space, then runs BENCH_AB_TOTAL puts with etcd's
# `benchmark` pinned to core 1 (100 clients over 10 connections, 8 B keys,
# 256 B values, etcd's op-guide), and prints one line: puts/s, p99 and the
# member's CPU per put (utime + stime from /proc/PID/stat over the
# measured run). The means per variant close the output.
#
# Usage: scripts/bench-ab.sh NAME=BINARY[:FLAGS] ...
#   e.g. scripts/bench-ab.sh old=/tmp/metastore-old new=bin/metastore
#        scripts/bench-ab.sh cache=bin/metastore "nocache=bin/metastore:--latest-cache-bytes 0"
# Knobs: BENCH_AB_ROUNDS (4), BENCH_AB_TOTAL (100000), BENCH_AB_WARM (60000),
#   BENCH_AB_PORT (25001; the peer port is the next one), ETCD_BENCHMARK.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=${BENCH_AB_ROUNDS:-4}
total=${BENCH_AB_TOTAL:-100000}
warm=${BENCH_AB_WARM:-60000}
port=${BENCH_AB_PORT:-25001}
peer=$((port + 1))
benchmark=${ETCD_BENCHMARK:-$(bash scripts/etcd.sh)/benchmark}
[ -x "$benchmark" ] || { echo "bench-ab: $benchmark missing (make bench-compare builds it)" >&2; exit 1; }
[ $# -ge 1 ] || { echo "usage: $0 NAME=BINARY[:FLAGS] ..." >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
hz=$(getconf CLK_TCK)
results=$work/results

load() { # load TOTAL: the put row against the member; prints "puts/s p99_s"
  taskset -c 1 "$benchmark" --endpoints "127.0.0.1:$port" --conns 10 --clients 100 \
    put --key-size 8 --val-size 256 --key-space-size 100000 --total "$1" 2>&1 |
    tr '\r' '\n' | awk '/Requests\/sec:/ {r = $2} /99% in/ {p = $3} END {print r, p}'
}

for round in $(seq "$rounds"); do
  for v in "$@"; do
    name=${v%%=*}
    spec=${v#*=}
    bin=${spec%%:*}
    flags=""
    [ "$spec" != "$bin" ] && flags=${spec#*:}
    dir=$work/data
    rm -rf "$dir"
    # shellcheck disable=SC2086 # flags are words
    taskset -c 0 "$bin" --data-dir "$dir" --listen-client-urls "http://127.0.0.1:$port" \
      --advertise-client-urls "http://127.0.0.1:$port" --listen-peer-urls "http://127.0.0.1:$peer" \
      --initial-advertise-peer-urls "http://127.0.0.1:$peer" --initial-cluster "default=http://127.0.0.1:$peer" \
      --quota-backend-bytes 8589934592 $flags >"$work/$name.log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
      curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
      sleep 0.1
    done
    load "$warm" >/dev/null
    c0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    read -r qps p99 < <(load "$total")
    c1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    cpu=$(echo "($c1 - $c0) * 1000000 / $hz / $total" | bc -l)
    printf '%s round %d: %.0f puts/s, p99 %.1f ms, %.1f us of server CPU a put\n' \
      "$name" "$round" "$qps" "$(echo "$p99 * 1000" | bc -l)" "$cpu"
    echo "$name $qps $p99 $cpu" >>"$results"
  done
done
echo "means over $rounds rounds:"
awk '{n[$1]++; q[$1] += $2; p[$1] += $3; c[$1] += $4}
  END {for (k in n) printf "  %s: %.0f puts/s, p99 %.1f ms, %.1f us of server CPU a put\n", k, q[k]/n[k], p[k]/n[k]*1000, c[k]/n[k]}' "$results"
