#!/usr/bin/env bash
# bench-presets.sh measures each tuning preset (tuning/presets.go) on the
# standard rows of bench-compare (1 member, pinned, 100 clients over 10
# connections: put, linearizable and serializable get; etcd once beside
# them) and on a scale load (BENCH_PRESETS_KEYS keys, then get and page p99,
# RSS and disk, through bench-scale.sh), and prints one table per part with
# each preset's RSS beside its stated memory budget. docs/TUNING.md holds
# the figures.
#
# Knobs: METASTORE_BIN (bin/metastore), BENCH_PRESETS ("default write-heavy
# read-heavy large-volume low-memory"), BENCH_PRESETS_KEYS (1000000; 0 skips
# the scale part), BENCH_PRESETS_OUT (bench-results/presets-DATE), and the
# BENCH_COMPARE_* / BENCH_SCALE_* knobs of the two scripts.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${METASTORE_BIN:-bin/metastore}
presets=${BENCH_PRESETS:-"default write-heavy read-heavy large-volume low-memory"}
keys=${BENCH_PRESETS_KEYS:-1000000}
out=${BENCH_PRESETS_OUT:-bench-results/presets-$(date +%Y%m%d-%H%M%S)}
mkdir -p "$out"
out=$(cd "$out" && pwd)

# The budgets the presets state (tuning.Options.MemoryBudgetBytes), in MiB.
budget() {
  case $1 in
  default) echo 1536 ;; write-heavy) echo 3328 ;; read-heavy) echo 2560 ;;
  large-volume) echo 2048 ;; low-memory) echo 96 ;; *) echo "?" ;;
  esac
}

# BENCH_PRESETS_REPORT_ONLY=1 only prints the report of BENCH_PRESETS_OUT.
first=1
[ "${BENCH_PRESETS_REPORT_ONLY:-0}" = 1 ] && presets=""
for p in $presets; do
  targets="metastore"
  [ $first = 1 ] && targets="metastore etcd"
  first=0
  BENCH_COMPARE_OUT=$out/std-$p BENCH_COMPARE_METASTORE="$p=$bin" BENCH_COMPARE_METASTORE_FLAGS="--engine-preset $p" \
    BENCH_COMPARE_TARGETS=$targets BENCH_COMPARE_MEMBERS=1 BENCH_COMPARE_PIN=${BENCH_COMPARE_PIN:-pinned} \
    BENCH_COMPARE_CLIENTS=${BENCH_COMPARE_CLIENTS:-100x10} bash scripts/bench-compare.sh >/dev/null
  if [ "$keys" -gt 0 ]; then
    BENCH_SCALE_OUT=$out/scale-$p BENCH_SCALE_TARGETS=metastore BENCH_SCALE_KEYS=$keys BENCH_SCALE_OVERWRITE_KEYS=0 \
      BENCH_SCALE_METASTORE_FLAGS="--engine-preset $p" METASTORE_BIN=$bin bash scripts/bench-scale.sh >/dev/null
  fi
done

{
  echo "## bench-presets $(basename "$out")"
  echo
  echo "Standard rows: 1 member, ${BENCH_COMPARE_PIN:-pinned}, 100 clients over 10 connections, etcd's benchmark, ${BENCH_COMPARE_REQUESTS:-60000} requests per row (etcd 3.6.16 measured once, in the first preset's run)."
  echo
  echo "| preset | budget MiB | put req/s (p99 ms) | get-l req/s (p99 ms) | get-s req/s (p99 ms) | RSS MiB after the rows |"
  echo "|---|---|---|---|---|---|"
  for f in "$out"/std-*/results.tsv; do
    d=$(dirname "$f")
    p=${d##*/std-}
    awk -F'\t' -v p="$p" -v b="$(budget "$p")" -v rss="$(awk -F'\t' -v p="$p" '$3 == p {print $4}' "$d/resources.tsv")" '
      $3 == p || $3 == "etcd" { v[$3, $4] = sprintf("%.0f (%s)", $7, $9) }
      END {
        printf "| %s | %s | %s | %s | %s | %s |\n", p, b, v[p, "put"], v[p, "get-l"], v[p, "get-s"], rss
        if (("etcd", "put") in v) printf "| etcd 3.6.16 | | %s | %s | %s | |\n", v["etcd", "put"], v["etcd", "get-l"], v["etcd", "get-s"]
      }' "$f"
  done
  if ls "$out"/scale-*/scale.tsv >/dev/null 2>&1; then
    echo
    echo "Scale: $keys keys of 256 B loaded, then measured (measurements ${BENCH_SCALE_DURATION:-30s} each, server on core 0 and tool on core 1)."
    echo
    echo "| preset | budget MiB | load keys/s | get p99 ms | 100-key page p99 ms | RSS MiB | disk MiB |"
    echo "|---|---|---|---|---|---|---|"
    for f in "$out"/scale-*/scale.tsv; do
      d=$(dirname "$f")
      p=${d##*/scale-}
      awk -F'\t' -v p="$p" -v b="$(budget "$p")" -v k="$keys" '$2 == k { v[$3] = $4 }
        END { printf "| %s | %s | %.0f | %.1f | %.1f | %s | %s |\n", p, b, v["load_keys_s"], v["get_p99_ms"], v["page100_p99_ms"], v["rss_mb"], v["disk_mb"] }' "$f"
    done
  fi
} | tee "$out/report.md"
