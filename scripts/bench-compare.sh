#!/usr/bin/env bash
# bench-compare.sh runs the standard matrix against MetaStore and real etcd
# 3.6.16 one after the other on this machine, with etcd's own load tool
# (`benchmark`, go.etcd.io/etcd/v3 tools/benchmark), and prints a markdown
# table of both absolute figures and their ratio. The same table, the raw
# tool output and the servers' logs go to $BENCH_COMPARE_OUT.
#
# The matrix follows etcd's op-guide (Documentation/op-guide/performance):
# 8 B keys, 256 B values, puts to random keys of a 100k key space, point gets
# of one key, linearizable and serializable; 1 client over 1 connection, 100
# over 10, 1000 over 100; 1 member, then 3 members on loopback (the tool
# talks to all three). "pinned" runs every server on core 0 and the tool on
# core 1 (taskset), so the ratio shows the server's own efficiency;
# "unpinned" lets the scheduler place them. The no-op server
# (`metastore-bench noop-server`) is the ceiling: gRPC, the tool and
# loopback alone.
#
# Each (members, pinning, target) starts fresh servers with empty data dirs
# (on the same disk, under $BENCH_COMPARE_OUT), runs the rows in order (puts
# first, so the gets read a store of ~100k keys), records RSS and disk, and
# stops them.
#
# Knobs (environment):
#   BENCH_COMPARE_OUT        results directory (bench-results/compare-DATE)
#   BENCH_COMPARE_REQUESTS   requests per row at 100+ clients (60000); 1-client
#                            rows run 1/20 of it for puts, 1/4 for gets
#   BENCH_COMPARE_MEMBERS    "1 3" ("none": only the extras)
#   BENCH_COMPARE_PIN        "pinned unpinned"
#   BENCH_COMPARE_ROWS       "put get-l get-s"
#   BENCH_COMPARE_CLIENTS    "1x1 100x10 1000x100" (clients x connections)
#   BENCH_COMPARE_TARGETS    "noop metastore etcd"; "metastore" expands to
#                            every entry of BENCH_COMPARE_METASTORE
#   BENCH_COMPARE_METASTORE  "NAME=BINARY ..." (metastore=bin/metastore); the
#                            Makefile passes metastore-debian=... and
#                            metastore-release=... for ROCKSDB=both
#   BENCH_COMPARE_METASTORE_FLAGS / BENCH_COMPARE_ETCD_FLAGS  extra server flags
#   BENCH_COMPARE_QUOTA      --quota-backend-bytes of both (8 GiB)
#   BENCH_COMPARE_EXTRA      "" or any of "watch compaction" (1 member, pinned,
#                            metastore-bench; see the end of this file)
#   ETCD_BENCHMARK           etcd's benchmark binary (built into the etcd cache if missing)
set -euo pipefail
cd "$(dirname "$0")/.."

out=${BENCH_COMPARE_OUT:-bench-results/compare-$(date +%Y%m%d-%H%M%S)}
requests=${BENCH_COMPARE_REQUESTS:-60000}
members_list=${BENCH_COMPARE_MEMBERS:-"1 3"}
pins=${BENCH_COMPARE_PIN:-"pinned unpinned"}
rows=${BENCH_COMPARE_ROWS:-"put get-l get-s"}
clients_list=${BENCH_COMPARE_CLIENTS:-"1x1 100x10 1000x100"}
targets=${BENCH_COMPARE_TARGETS:-"noop metastore etcd"}
metastores=${BENCH_COMPARE_METASTORE:-"metastore=bin/metastore"}
ms_flags=${BENCH_COMPARE_METASTORE_FLAGS:-}
etcd_flags=${BENCH_COMPARE_ETCD_FLAGS:-}
quota=${BENCH_COMPARE_QUOTA:-8589934592}
extra=${BENCH_COMPARE_EXTRA:-}
benchbin=${METASTORE_BENCH:-bin/metastore-bench}
[ "$members_list" = none ] && members_list=""

# Ports: member i (1..3) serves clients on base+10i+1 and peers on base+10i+2;
# below the ephemeral range (32768 up), where clients' own ports could take them.
port_base=${BENCH_COMPARE_PORT_BASE:-24000}
# start_timeout bounds the wait for a started cluster to answer, in s.
start_timeout=60

etcd_dir=$(bash scripts/etcd.sh)
etcdctl=$etcd_dir/etcdctl
benchmark=${ETCD_BENCHMARK:-$etcd_dir/benchmark}
if [ ! -x "$benchmark" ]; then
  echo "bench-compare: building etcd's benchmark tool into $etcd_dir" >&2
  w=$(mktemp -d)
  (cd "$w" && go mod init benchbuild >/dev/null 2>&1 &&
    go get go.etcd.io/etcd/v3@v3.6.8 >/dev/null 2>&1 &&
    go build -o "$benchmark" go.etcd.io/etcd/v3/tools/benchmark) >&2
  rm -rf "$w"
fi
[ -x "$benchbin" ] || { echo "bench-compare: $benchbin missing (make build)" >&2; exit 1; }

mkdir -p "$out"
out=$(cd "$out" && pwd)
tsv=$out/results.tsv
res=$out/resources.tsv
printf 'members\tpin\ttarget\trow\tclients\tconns\treq_s\tp50_ms\tp99_ms\terrors\n' >"$tsv"
printf 'members\tpin\ttarget\trss_mb\tdisk_mb\n' >"$res"
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" | tee -a "$out/run.log" >&2; }

pids=()
stop_servers() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
trap stop_servers EXIT

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# start TARGET BINARY MEMBERS PIN: starts a cluster, sets $endpoints and
# $datadir, and waits until every member answers a linearizable get.
start() {
  local target=$1 bin=$2 n=$3 pin=$4 i cluster="" cp pp
  local pre=()
  [ "$pin" = pinned ] && pre=(taskset -c 0)
  datadir=$out/data/$target-$n-$pin
  rm -rf "$datadir"
  mkdir -p "$datadir"
  endpoints=""
  for i in $(seq 1 "$n"); do
    cluster+="${cluster:+,}m$i=http://127.0.0.1:$((port_base + 10 * i + 2))"
  done
  for i in $(seq 1 "$n"); do
    cp=$((port_base + 10 * i + 1))
    pp=$((port_base + 10 * i + 2))
    port_free "$cp" && port_free "$pp" || { log "port $cp or $pp is in use"; exit 1; }
    endpoints+="${endpoints:+,}127.0.0.1:$cp"
    case $target in
    noop)
      "${pre[@]}" "$benchbin" noop-server --listen "127.0.0.1:$cp" >"$datadir/m$i.log" 2>&1 &
      ;;
    *)
      local flags=$ms_flags
      [ "$target" = etcd ] && flags=$etcd_flags
      # shellcheck disable=SC2086
      "${pre[@]}" "$bin" --name "m$i" --data-dir "$datadir/m$i" \
        --listen-client-urls "http://127.0.0.1:$cp" --advertise-client-urls "http://127.0.0.1:$cp" \
        --listen-peer-urls "http://127.0.0.1:$pp" --initial-advertise-peer-urls "http://127.0.0.1:$pp" \
        --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token "bench-$target-$n" \
        --quota-backend-bytes "$quota" --log-level warn $flags >"$datadir/m$i.log" 2>&1 &
      ;;
    esac
    pids+=($!)
  done
  local deadline=$((SECONDS + start_timeout)) ep
  for ep in ${endpoints//,/ }; do
    until "$etcdctl" --endpoints "$ep" --command-timeout 2s get --consistency l health >/dev/null 2>&1; do
      if [ $SECONDS -gt $deadline ]; then
        log "$target ($n members) did not answer on $ep within ${start_timeout}s; logs in $datadir"
        exit 1
      fi
      sleep 0.2
    done
  done
}

# record_resources TARGET N PIN: the largest member RSS and the total data size.
record_resources() {
  local rss=0 p r disk
  for p in "${pids[@]}"; do
    r=$(ps -o rss= -p "$p" 2>/dev/null | tr -d ' ' || true)
    [ -n "$r" ] && [ "$r" -gt "$rss" ] && rss=$r
  done
  disk=$(du -sk "$datadir" | cut -f1)
  printf '%s\t%s\t%s\t%.0f\t%.0f\n' "$2" "$3" "$1" "$(echo "$rss / 1024" | bc -l)" "$(echo "$disk / 1024" | bc -l)" >>"$res"
}

# run_row TARGET N PIN ROW CLIENTS CONNS: one run of etcd's benchmark.
run_row() {
  local target=$1 n=$2 pin=$3 row=$4 c=$5 k=$6 total args raw
  local pre=()
  [ "$pin" = pinned ] && pre=(taskset -c 1)
  case $row in
  put)
    total=$requests
    [ "$c" -eq 1 ] && total=$((requests / 20))
    args=(put --key-size 8 --val-size 256 --key-space-size 100000)
    ;;
  get-l | get-s)
    total=$requests
    [ "$c" -eq 1 ] && total=$((requests / 4))
    args=(range benchkey --consistency "${row#get-}")
    ;;
  *) log "unknown row $row"; exit 1 ;;
  esac
  raw=$out/raw/$target-$n-$pin-$row-${c}x$k.txt
  mkdir -p "$out/raw"
  echo "+ ${pre[*]} $benchmark --endpoints $endpoints --conns $k --clients $c ${args[*]} --total $total" >"$raw"
  "${pre[@]}" "$benchmark" --endpoints "$endpoints" --conns "$k" --clients "$c" "${args[@]}" --total "$total" >>"$raw" 2>&1 || true
  local rps p50 p99 errs
  rps=$(awk '/Requests\/sec:/{print $2}' "$raw")
  p50=$(awk '/^ *50% in/{print $3 * 1000}' "$raw")
  p99=$(awk '/^ *99% in/{print $3 * 1000}' "$raw")
  errs=$(awk '/Error distribution:/{e=1; next} e && /\[[0-9]+\]/{gsub(/[\[\]]/,"",$1); s+=$1} END{print s+0}' "$raw")
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$n" "$pin" "$target" "$row" "$c" "$k" "${rps:-0}" "${p50:-0}" "${p99:-0}" "$errs" >>"$tsv"
  log "$(printf '%-18s %s member(s) %-8s %-5s %4s clients %3s conns: %8.0f req/s  p99 %6.1f ms  errors %s' \
    "$target" "$n" "$pin" "$row" "$c" "$k" "${rps:-0}" "${p99:-0}" "$errs")"
}

# The targets in run order: noop (1 member only), each MetaStore build, etcd.
expand_targets() {
  local t e
  for t in $targets; do
    case $t in
    metastore) for e in $metastores; do echo "$e"; done ;;
    etcd) echo "etcd=$etcd_dir/etcd" ;;
    noop) echo "noop=$benchbin" ;;
    *) echo "$t" ;;
    esac
  done
}

value256=$(printf 'v%.0s' $(seq 1 256))
host_load() { cut -d' ' -f1-3 /proc/loadavg; }
log "bench-compare: out=$out requests=$requests members=($members_list) pin=($pins) rows=($rows) clients=($clients_list)"
log "load average before: $(host_load)"
for n in $members_list; do
  for pin in $pins; do
    for te in $(expand_targets); do
      target=${te%%=*}
      bin=${te#*=}
      [ "$target" = noop ] && [ "$n" -ne 1 ] && continue
      log "== $target, $n member(s), $pin (load average $(host_load))"
      start "$target" "$bin" "$n" "$pin"
      "$etcdctl" --endpoints "${endpoints%%,*}" put benchkey "$value256" >/dev/null
      for row in $rows; do
        for ck in $clients_list; do
          run_row "$target" "$n" "$pin" "$row" "${ck%x*}" "${ck#*x}"
        done
      done
      record_resources "$target" "$n" "$pin"
      stop_servers
      [ "$target" = noop ] || rm -rf "$datadir"
    done
  done
done

# Extras, 1 member pinned, with metastore-bench (the JSON results under
# $out/extra): "watch" compares put throughput with no watcher, with
# $BENCH_COMPARE_WATCHERS watchers on another prefix, and with as many on
# the written prefix; "compaction" puts
# while compacting to current - retention every interval, and reports put
# p99 during and outside compactions.
watchers=${BENCH_COMPARE_WATCHERS:-10000}
extra_dur=${BENCH_COMPARE_EXTRA_DURATION:-30s}
# The compaction row runs long enough for two compactions of about 600k
# revisions each at 10k puts/s (the issue asks about compacting 1M).
compact_interval=${BENCH_COMPARE_COMPACT_INTERVAL:-60s}
compact_dur=${BENCH_COMPARE_COMPACT_DURATION:-150s}
if [ -n "$extra" ]; then
  printf 'target\tscenario\tmetric\tvalue\n' >"$out/extra.tsv"
  mkdir -p "$out/extra"
  for te in $(expand_targets); do
    target=${te%%=*}
    bin=${te#*=}
    [ "$target" = noop ] && continue
    for x in $extra; do
      log "== extra $x: $target, 1 member, pinned"
      start "$target" "$bin" 1 pinned
      common=(--endpoints "$endpoints" --target-name "$target" --clients 100 --conns 10 --key-size 16
        --val-size 256 --key-space 100000 --duration "$extra_dur" --progress none --out "$out/extra")
      case $x in
      watch)
        # Put runs of the same length: no watcher (before and after); $watchers watchers
        # on another prefix that gets 0.2 put/s (BENCH_COMPARE_WATCH_IDLE_RATE; the server matches every put
        # against them but delivers little: its watch bookkeeping); and the
        # watch scenario itself, where every put is delivered to every
        # watcher on its prefix (bound by delivery, the tool's included).
        taskset -c 1 "$benchbin" put "${common[@]}" 2>>"$out/extra/$target-watch.log" >/dev/null
        base=$(jq -r .ops_per_s "$(ls -t "$out"/extra/put-"$target"-*.json | head -n1)")
        taskset -c 1 "$benchbin" watch "${common[@]}" --prefix /watched/ --target-name "$target-idle-watchers" \
          --watchers "$watchers" --watch-streams 100 --clients 1 --conns 1 --rate "${BENCH_COMPARE_WATCH_IDLE_RATE:-0.2}" \
          --duration "$(( ${extra_dur%s} + 25 ))s" 2>>"$out/extra/$target-watch.log" >/dev/null &
        wpid=$!
        sleep 15 # the watchers' creation (watchCreateTimeout is 10 s)
        taskset -c 1 "$benchbin" put "${common[@]}" 2>>"$out/extra/$target-watch.log" >/dev/null
        idle=$(jq -r .ops_per_s "$(ls -t "$out"/extra/put-"$target"-*.json | head -n1)")
        wait "$wpid" || true
        # The baseline again, on the store as large as the idle row left it:
        # the idle row is compared with the mean of the two, so the store's
        # growth during the rows is not taken for the watchers' cost.
        taskset -c 1 "$benchbin" put "${common[@]}" 2>>"$out/extra/$target-watch.log" >/dev/null
        base2=$(jq -r .ops_per_s "$(ls -t "$out"/extra/put-"$target"-*.json | head -n1)")
        base=$(echo "($base + $base2) / 2" | bc -l)
        taskset -c 1 "$benchbin" watch "${common[@]}" --watchers "$watchers" --watch-streams 100 2>>"$out/extra/$target-watch.log" >/dev/null || true
        w=$(ls -t "$out"/extra/watch-"$target"-*.json | head -n1)
        with=$(jq -r '.classes.put.count / .elapsed_s' "$w")
        printf '%s\twatch\tput_req_s_no_watchers\t%.0f\n' "$target" "$base" >>"$out/extra.tsv"
        printf '%s\twatch\tput_req_s_%d_watchers_other_prefix\t%.0f\n' "$target" "$watchers" "$idle" >>"$out/extra.tsv"
        printf '%s\twatch\tput_req_s_%d_watchers_delivering\t%.0f\n' "$target" "$watchers" "$with" >>"$out/extra.tsv"
        log "$target: puts/s with no watcher $base, with $watchers watchers on another prefix $idle, delivering $with"
        ;;
      compaction)
        taskset -c 1 "$benchbin" compaction "${common[@]}" --duration "$compact_dur" --compact-interval "$compact_interval" \
          --compact-retention 10000 2>>"$out/extra/$target-compaction.log" >/dev/null || true
        c=$(ls -t "$out"/extra/compaction-"$target"-*.json | head -n1)
        jq -r --arg t "$target" '"\($t)\tcompaction\tp99_during_ms\t\(.classes["during-compaction"].p99_ns / 1e6)",
          "\($t)\tcompaction\tp99_outside_ms\t\(.classes["outside-compaction"].p99_ns / 1e6)",
          "\($t)\tcompaction\tcompactions\t\(.counters.compactions // 0)"' "$c" >>"$out/extra.tsv"
        ;;
      esac
      stop_servers
      rm -rf "$datadir"
    done
  done
fi
log "load average after: $(host_load)"

# The report: one table per (members, pinning); MetaStore builds against etcd.
bash scripts/bench-report.sh "$out" | tee "$out/report.md"
