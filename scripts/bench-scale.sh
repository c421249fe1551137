#!/usr/bin/env bash
# bench-scale.sh is the scale run of the benchmarks issue: for MetaStore and
# etcd 3.6.16 in turn (1 member, fresh data dir), load 100k keys of 256 B
# values, measure point-get and 100-key page latency, RSS and disk; load
# BENCH_SCALE_KEYS (10M) keys, record the disk right after the load, and
# measure the same again after BENCH_SCALE_SETTLE (60s) of background
# work (the steady state, not the load's compaction debt). Loading and measuring
# use metastore-bench (load: transactions of 128 puts; range: random
# linearizable point gets over the whole key space; range --prefix-page 100:
# Kubernetes-style pages of the whole prefix). etcd runs with
# --quota-backend-bytes raised to BENCH_SCALE_QUOTA (32 GiB).
#
# Then, unless BENCH_SCALE_OVERWRITE_KEYS=0, the space run on fresh servers:
# BENCH_SCALE_OVERWRITE_ROUNDS (10) rounds writing the same
# BENCH_SCALE_OVERWRITE_KEYS (1000000) keys, a compaction to the current
# revision (etcdctl compact --physical), BENCH_SCALE_SETTLE (60s) for
# background work, and the disk used against the live data (keys x (16 +
# 256) bytes), both the whole data dir (du: WALs and preallocated space
# included) and the store's own files (store_mb); for etcd also after a
# defrag.
#
# Knobs: METASTORE_BIN (bin/metastore), BENCH_SCALE_KEYS (10000000; 0: the
# space run only),
# BENCH_SCALE_SMALL_KEYS (100000), BENCH_SCALE_DURATION (30s per measurement),
# BENCH_SCALE_TARGETS ("metastore etcd"), BENCH_SCALE_PIN (1: server on core
# 0 and tool on core 1 while measuring; the loads run unpinned),
# BENCH_SCALE_METASTORE_FLAGS (e.g. "--engine-preset large-volume"),
# BENCH_SCALE_OUT (bench-results/scale-DATE).
set -euo pipefail
cd "$(dirname "$0")/.."

msbin=${METASTORE_BIN:-bin/metastore}
big=${BENCH_SCALE_KEYS:-10000000}
small=${BENCH_SCALE_SMALL_KEYS:-100000}
dur=${BENCH_SCALE_DURATION:-30s}
targets=${BENCH_SCALE_TARGETS:-"metastore etcd"}
pin=${BENCH_SCALE_PIN:-1}
quota=${BENCH_SCALE_QUOTA:-34359738368}
ms_flags=${BENCH_SCALE_METASTORE_FLAGS:-}
out=${BENCH_SCALE_OUT:-bench-results/scale-$(date +%Y%m%d-%H%M%S)}
benchbin=${METASTORE_BENCH:-bin/metastore-bench}
port=${BENCH_SCALE_PORT:-24801}
settle=${BENCH_SCALE_SETTLE:-60s}
etcd_dir=$(bash scripts/etcd.sh)
mkdir -p "$out"
out=$(cd "$out" && pwd)
tsv=$out/scale.tsv
printf 'target\tkeys\tmetric\tvalue\n' >"$tsv"
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" | tee -a "$out/run.log" >&2; }
rec() { printf '%s\t%s\t%s\t%s\n' "$@" >>"$tsv"; log "$1 at $2 keys: $3 = $4"; }

pid=""
stop() { [ -z "$pid" ] || { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; pid=""; }; }
trap stop EXIT

start_server() { # TARGET DATADIR: sets $data, $ep, $pid
  local t=$1
  data=$2
  rm -rf "$data"
  ep=127.0.0.1:$port
  local urls=(--listen-client-urls "http://$ep" --advertise-client-urls "http://$ep"
    --listen-peer-urls "http://127.0.0.1:$((port + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((port + 1))"
    --initial-cluster "s=http://127.0.0.1:$((port + 1))" --name s --data-dir "$data" --log-level warn)
  case $t in
  # shellcheck disable=SC2086
  metastore) "$msbin" "${urls[@]}" --quota-backend-bytes "$quota" $ms_flags >>"$out/$t.log" 2>&1 & ;;
  etcd) "$etcd_dir/etcd" "${urls[@]}" --quota-backend-bytes "$quota" >>"$out/$t.log" 2>&1 & ;;
  *) log "unknown target $t"; exit 1 ;;
  esac
  pid=$!
  for _ in $(seq 1 300); do
    "$etcd_dir/etcdctl" --endpoints "$ep" --command-timeout 2s get health >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  log "$t did not start; see $out/$t.log"
  exit 1
}

# store_mb TARGET: the store's own files in MiB (apparent size, so without
# preallocation), without the raft log: MetaStore's SST, blob and WAL files
# under member/engine (the WAL holds what is still in memtables), etcd's
# bbolt file member/snap/db.
store_mb() {
  case $1 in
  metastore) find "$data/member/engine" \( -name '*.sst' -o -name '*.blob' -o -name '*.log' \) -printf '%s\n' | awk '{s += $1} END {printf "%.1f", s / 1048576}' ;;
  etcd) awk '{printf "%.1f", $1 / 1048576}' <<<"$(stat -c %s "$data/member/snap/db")" ;;
  esac
}

keysize=16 # "/bench/" and 9 hex digits: enough for 10^10 keys
common=(--key-size "$keysize" --val-size 256 --progress none --out "$out")

measure() { # TARGET KEYS
  local t=$1 n=$2 tool=() r
  if [ "$pin" = 1 ]; then
    taskset -a -c -p 0 "$pid" >/dev/null
    tool=(taskset -c 1)
  fi
  r=$("${tool[@]}" "$benchbin" range "${common[@]}" --endpoints "$ep" --target-name "$t" --key-space "$n" --prefill=false \
    --consistency l --clients 100 --conns 10 --duration "$dur" 2>>"$out/bench.log")
  echo "$r" >>"$out/bench.txt"
  local j
  j=$(ls -t "$out"/range-"$t"-*.json | head -n1)
  rec "$t" "$n" get_req_s "$(jq -r .ops_per_s "$j")"
  rec "$t" "$n" get_p99_ms "$(jq -r '.latency.p99_ns / 1e6' "$j")"
  r=$("${tool[@]}" "$benchbin" range "${common[@]}" --endpoints "$ep" --target-name "$t" --key-space "$n" --prefill=false \
    --prefix-page 100 --clients 10 --conns 2 --duration "$dur" 2>>"$out/bench.log")
  echo "$r" >>"$out/bench.txt"
  j=$(ls -t "$out"/range-"$t"-*.json | head -n1)
  rec "$t" "$n" page100_req_s "$(jq -r .ops_per_s "$j")"
  rec "$t" "$n" page100_p99_ms "$(jq -r '.latency.p99_ns / 1e6' "$j")"
  [ "$pin" = 1 ] && taskset -a -c -p 0-$(($(nproc) - 1)) "$pid" >/dev/null
  rec "$t" "$n" rss_mb "$(($(ps -o rss= -p "$pid") / 1024))"
  rec "$t" "$n" disk_mb "$(($(du -sk "$data" | cut -f1) / 1024))"
}

load() { # TARGET KEYS
  "$benchbin" load "${common[@]}" --endpoints "$ep" --target-name "$1" --keys "$2" --key-space "$2" \
    --clients 32 --conns 4 --txn-ops 128 2>>"$out/bench.log" | tee -a "$out/bench.txt" >/dev/null
  local j
  j=$(ls -t "$out"/load-"$1"-*.json | head -n1)
  rec "$1" "$2" load_keys_s "$(jq -r '(.extra[] | select(.unit == "keys/s") | .value) // 0' "$j")"
  rec "$1" "$2" load_s "$(jq -r .elapsed_s "$j")"
}

log "bench-scale: keys $small then $big, $dur per measurement, pin=$pin, targets ($targets); load average $(cut -d' ' -f1-3 /proc/loadavg)"
for t in $targets; do
  [ "$big" -gt 0 ] || break # BENCH_SCALE_KEYS=0: the space run only
  start_server "$t" "$out/data-$t"
  load "$t" "$small"
  measure "$t" "$small"
  load "$t" "$big"
  rec "$t" "$big" disk_after_load_mb "$(($(du -sk "$data" | cut -f1) / 1024))"
  # Measure the steady state: background work (compaction of what the load
  # left in L0, memtable flushes) has BENCH_SCALE_SETTLE to finish first,
  # instead of competing with the gets on the pinned core.
  sleep "$settle"
  measure "$t" "$big"
  stop
  rm -rf "$data"
done

owkeys=${BENCH_SCALE_OVERWRITE_KEYS:-1000000}
rounds=${BENCH_SCALE_OVERWRITE_ROUNDS:-10}
if [ "$owkeys" -gt 0 ]; then
  live_mb=$(echo "$owkeys * ($keysize + 256) / 1048576" | bc -l)
  for t in $targets; do
    start_server "$t" "$out/data-ow-$t"
    for r in $(seq 1 "$rounds"); do
      "$benchbin" load "${common[@]}" --endpoints "$ep" --target-name "$t" --keys "$owkeys" --key-space "$owkeys" \
        --clients 32 --conns 4 --txn-ops 128 2>>"$out/bench.log" >>"$out/bench.txt"
    done
    rec "$t" "$owkeys" ow_disk_before_compact_mb "$(($(du -sk "$data" | cut -f1) / 1024))"
    rev=$("$etcd_dir/etcdctl" --endpoints "$ep" endpoint status -w json | jq '.[0].Status.header.revision')
    c0=$(date +%s.%N)
    "$etcd_dir/etcdctl" --endpoints "$ep" --command-timeout 30m compact "$rev" --physical >/dev/null
    rec "$t" "$owkeys" ow_compact_s "$(echo "$(date +%s.%N) - $c0" | bc -l)"
    sleep "$settle"
    d=$(($(du -sk "$data" | cut -f1) / 1024))
    rec "$t" "$owkeys" ow_disk_after_compact_mb "$d"
    rec "$t" "$owkeys" ow_disk_over_live "$(echo "$d / $live_mb" | bc -l)"
    st=$(store_mb "$t")
    rec "$t" "$owkeys" ow_store_after_compact_mb "$st"
    rec "$t" "$owkeys" ow_store_over_live "$(echo "$st / $live_mb" | bc -l)"
    if [ "$t" = etcd ]; then
      "$etcd_dir/etcdctl" --endpoints "$ep" --command-timeout 30m defrag >/dev/null
      d=$(($(du -sk "$data" | cut -f1) / 1024))
      rec "$t" "$owkeys" ow_disk_after_defrag_mb "$d"
      rec "$t" "$owkeys" ow_disk_over_live_after_defrag "$(echo "$d / $live_mb" | bc -l)"
      st=$(store_mb "$t")
      rec "$t" "$owkeys" ow_store_after_defrag_mb "$st"
      rec "$t" "$owkeys" ow_store_over_live_after_defrag "$(echo "$st / $live_mb" | bc -l)"
    fi
    stop
    rm -rf "$data"
  done
  log "space run: $rounds rounds of $owkeys keys; live data $(printf '%.0f' "$live_mb") MiB"
fi
log "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

{
  echo "## bench-scale $(basename "$out")"
  echo
  echo "1 member each; $small then $big keys (16 B keys, 256 B values); measurements ${dur} each$([ "$pin" = 1 ] && echo ", server on core 0 and tool on core 1"). Load average before/after: $(grep -m1 'load average' "$out/run.log" | sed 's/.*load average //') / $(cut -d' ' -f1-3 /proc/loadavg)."
  echo
  echo "| metric | keys | $(echo "$targets" | sed 's/ / | /g') | $(for t in $targets; do [ "$t" = etcd ] || printf '%s/etcd | ' "$t"; done)"
  echo "|---|---|$(for _ in $targets; do printf -- '---|'; done)$(for t in $targets; do [ "$t" = etcd ] || printf -- '---|'; done)"
  awk -F'\t' -v targets="$targets" '
  NR > 1 { k = $3 "\t" $2; if (!(k in seen)) { seen[k] = 1; order[++n] = k }; v[k, $1] = $4 }
  END {
    nt = split(targets, t, " ")
    for (i = 1; i <= n; i++) {
      split(order[i], mk, "\t"); line = "| " mk[1] " | " mk[2] " |"
      for (j = 1; j <= nt; j++) line = line " " ((order[i], t[j]) in v ? sprintf("%.1f", v[order[i], t[j]]) : "") " |"
      for (j = 1; j <= nt; j++) if (t[j] != "etcd") {
        if (((order[i], t[j]) in v) && v[order[i], "etcd"] > 0) line = line sprintf(" %.2fx |", v[order[i], t[j]] / v[order[i], "etcd"])
        else line = line " |"
      }
      print line
    }
  }' "$tsv"
  echo
  if grep -q ow_disk "$tsv"; then
    echo "Space after overwrites (target: MetaStore <= 1.3x the live data with no defrag):"
    echo
    awk -F'\t' '$3 ~ /^ow_/ { printf "- %s: %s = %.2f\n", $1, $3, $4 }' "$tsv"
    echo
  fi
  if [ "$big" -gt 0 ]; then
    echo "Growth from $small to $big keys (p99 at $big / p99 at $small; target <= 1.5):"
    echo
    for t in $targets; do
      awk -F'\t' -v t="$t" -v s="$small" -v b="$big" '$1 == t { v[$2, $3] = $4 }
        END { printf "- %s: get p99 %.2fx, page p99 %.2fx\n", t, v[b, "get_p99_ms"] / (v[s, "get_p99_ms"] + 1e-9), v[b, "page100_p99_ms"] / (v[s, "page100_p99_ms"] + 1e-9) }' "$tsv"
    done
  fi
} | tee "$out/report.md"
