#!/usr/bin/env bash
# bench-pgo.sh profiles MetaStore under the standard scenarios and merges the
# CPU profiles into cmd/metastore/default.pgo, the profile `go build` uses
# for profile-guided optimization (-pgo=auto, the default). Then, unless
# PGO_COMPARE=0, it builds the PGO binary and measures it beside the binary
# without PGO and etcd (scripts/bench-compare.sh, 1 member, pinned).
#
# Knobs: METASTORE_BIN (bin/metastore-nopgo: a build with -pgo=off),
# PGO_DURATION (30s per scenario), PGO_OUT (bench-results/pgo-DATE),
# PGO_COMPARE (1), and the BENCH_COMPARE_* knobs for the comparison.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${METASTORE_BIN:-bin/metastore-nopgo}
dur=${PGO_DURATION:-30s}
out=${PGO_OUT:-bench-results/pgo-$(date +%Y%m%d-%H%M%S)}
benchbin=${METASTORE_BENCH:-bin/metastore-bench}
port=${PGO_PORT:-24901}
mkdir -p "$out"
out=$(cd "$out" && pwd)
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" | tee -a "$out/run.log" >&2; }

data=$out/data
rm -rf "$data"
"$bin" --name pgo --data-dir "$data" --enable-pprof \
  --listen-client-urls "http://127.0.0.1:$port" --advertise-client-urls "http://127.0.0.1:$port" \
  --listen-peer-urls "http://127.0.0.1:$((port + 1))" --initial-advertise-peer-urls "http://127.0.0.1:$((port + 1))" \
  --initial-cluster "pgo=http://127.0.0.1:$((port + 1))" --log-level warn >"$out/server.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true' EXIT
ep=127.0.0.1:$port
etcdctl=$(bash scripts/etcd.sh)/etcdctl
for _ in $(seq 1 150); do
  "$etcdctl" --endpoints "$ep" --command-timeout 2s get health >/dev/null 2>&1 && break
  sleep 0.2
done

# The scenarios: what the standard matrix and Kubernetes send.
common=(--endpoints "$ep" --clients 100 --conns 10 --key-size 16 --val-size 256 --key-space 100000
  --duration "$dur" --progress none --out "$out" --pprof-url "http://$ep")
runs=(
  "put "
  "range --consistency l --prefill=true"
  "range --consistency s --prefill=false"
  "txn-k8s --key-space 10000 --prefill=true"
  "range --prefix-page 100 --clients 10 --conns 2 --prefill=false"
)
log "profiling $bin ($("$bin" version 2>/dev/null | head -n1)) for $dur per scenario; load average $(cut -d' ' -f1-3 /proc/loadavg)"
for r in "${runs[@]}"; do
  # The scenario's own flags come after the common ones, so they win.
  # shellcheck disable=SC2086
  "$benchbin" ${r%% *} "${common[@]}" ${r#* } 2>>"$out/bench.log" | tee -a "$out/bench.txt"
done
kill $pid
wait $pid 2>/dev/null || true
trap - EXIT

profiles=("$out"/*.cpu.pb.gz)
go tool pprof -proto "${profiles[@]}" >"$out/merged.pgo" 2>/dev/null
cp "$out/merged.pgo" cmd/metastore/default.pgo
log "merged ${#profiles[@]} CPU profiles into cmd/metastore/default.pgo ($(du -h cmd/metastore/default.pgo | cut -f1))"
go tool pprof -top -nodecount 25 cmd/metastore/default.pgo 2>/dev/null | tee "$out/top.txt" | head -n 32 >&2

if [ "${PGO_COMPARE:-1}" = 1 ]; then
  eval_env=""
  [ "${ROCKSDB:-debian}" = release ] && eval_env=$(bash scripts/rocksdb-release.sh --export)
  (eval "$eval_env" && go build -o bin/metastore-pgo ./cmd/metastore)
  log "before/after: $bin (no PGO) and bin/metastore-pgo against etcd"
  BENCH_COMPARE_OUT=$out/compare BENCH_COMPARE_METASTORE="metastore-nopgo=$bin metastore-pgo=bin/metastore-pgo" \
    BENCH_COMPARE_TARGETS=${BENCH_COMPARE_TARGETS:-"metastore etcd"} BENCH_COMPARE_MEMBERS=${BENCH_COMPARE_MEMBERS:-1} \
    BENCH_COMPARE_PIN=${BENCH_COMPARE_PIN:-pinned} BENCH_COMPARE_CLIENTS=${BENCH_COMPARE_CLIENTS:-100x10} \
    bash scripts/bench-compare.sh
fi
