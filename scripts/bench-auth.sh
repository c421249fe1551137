#!/usr/bin/env bash
# bench-auth.sh BINARY (put|get) (off|on) measures what auth costs: a fresh
# member pinned to core 0 (taskset -c 0), etcd's `benchmark` pinned to core 1,
# 100 clients over 10 connections, 8 B keys, 256 B values, 100k key space.
# With "on", a user with readwrite on every key is created, auth is enabled
# and the load runs as that user (--user bench:benchpw). It prints req/s and
# the member's CPU per request. docs/SECURITY.md alternates off and on.
#
#   BENCH_AUTH_TOTAL   requests measured (200000)
#   BENCH_AUTH_PORT    client port; the peer port is the next one (31379)
set -euo pipefail
bin=${1:?usage: bench-auth.sh BINARY put|get off|on}
op=${2:?usage: bench-auth.sh BINARY put|get off|on}
auth=${3:?usage: bench-auth.sh BINARY put|get off|on}
total=${BENCH_AUTH_TOTAL:-200000}
port=${BENCH_AUTH_PORT:-31379}
etcd_dir=$(bash "$(dirname "$0")/etcd.sh")
bench="$etcd_dir/benchmark"
[ -x "$bench" ] || { echo "bench-auth: $bench missing (make bench-compare builds it)" >&2; exit 1; }
data=$(mktemp -d)
ep=127.0.0.1:$port
peer=http://127.0.0.1:$((port + 1))
taskset -c 0 "$bin" --name a --data-dir "$data" --listen-client-urls "http://$ep" --advertise-client-urls "http://$ep" \
  --listen-peer-urls "$peer" --initial-advertise-peer-urls "$peer" --initial-cluster "a=$peer" >"$data.log" 2>&1 &
pid=$!
trap 'kill -INT $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$data" "$data.log"' EXIT
for _ in $(seq 50); do "$etcd_dir/etcdctl" --endpoints "$ep" endpoint health >/dev/null 2>&1 && break; sleep 0.1; done
user=()
if [ "$auth" = on ]; then
  ctl() { "$etcd_dir/etcdctl" --endpoints "$ep" "$@" >/dev/null; }
  ctl user add root:rootpw; ctl user grant-role root root
  ctl role add rw; ctl role grant-permission rw readwrite "" --from-key
  ctl user add bench:benchpw; ctl user grant-role bench rw
  ctl auth enable
  user=(--user bench:benchpw)
fi
load=(taskset -c 1 "$bench" "${user[@]}" --endpoints "$ep" --clients 100 --conns 10)
if [ "$op" = get ]; then
  "${load[@]}" put --key-size 8 --val-size 256 --key-space-size 100000 --total 20000 >/dev/null 2>&1
fi
cpu0=$(awk '{print $14+$15}' /proc/$pid/stat)
if [ "$op" = put ]; then
  out=$("${load[@]}" put --key-size 8 --val-size 256 --key-space-size 100000 --total "$total" 2>&1)
else
  out=$("${load[@]}" range 00000000 --consistency l --total "$total" 2>&1)
fi
cpu1=$(awk '{print $14+$15}' /proc/$pid/stat)
rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
ticks=$(getconf CLK_TCK)
echo "auth=$auth op=$op req/s=$rps cpu-us/req=$(echo "($cpu1-$cpu0)*1000000/$ticks/$total" | bc -l | cut -c1-6)"
