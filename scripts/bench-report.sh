#!/usr/bin/env bash
# bench-report.sh DIR prints the markdown report of a bench-compare run from
# DIR/results.tsv, DIR/resources.tsv and DIR/extra.tsv: per (members,
# pinning) one table with each target's req/s and p99 and each MetaStore
# build's ratios to etcd (req/s: higher is better; p99: lower is better).
set -euo pipefail
dir=${1:?usage: bench-report.sh RESULTS_DIR}
tsv=$dir/results.tsv

echo "## bench-compare $(basename "$dir")"
echo
echo "Host: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(uname -r)."
if [ -f "$dir/run.log" ]; then
  echo "Load average before/after: $(grep -m1 'load average before' "$dir/run.log" | sed 's/.*before: //') / $(grep -m1 'load average after' "$dir/run.log" | sed 's/.*after: //' || true)."
  echo "Command: \`$(grep -m1 'bench-compare: out=' "$dir/run.log" | sed 's/^\[[^]]*\] //')\`"
fi
echo "Load tool: etcd's \`benchmark\` (put: --key-size 8 --val-size 256 --key-space-size 100000; get: range of one 8 B key, 256 B value, after the puts). Raw output: raw/."
echo

awk -F'\t' '
NR == 1 { next }
{
  g = $1 "\t" $2
  if (!(g in gseen)) { gseen[g] = 1; groups[++ng] = g }
  r = $4 "\t" $5 "x" $6
  if (!((g, r) in rseen)) { rseen[g, r] = 1; rows[g, ++nr[g]] = r }
  if (!(($1, $3) in tseen)) { tseen[$1, $3] = 1; targets[$1, ++nt[$1]] = $3 }
  rps[g, r, $3] = $7; p99[g, r, $3] = $9; errs[g, r, $3] = $10
}
function fmt(x) { return sprintf("%.0f", x) }
END {
  for (i = 1; i <= ng; i++) {
    g = groups[i]; split(g, gp, "\t"); m = gp[1]
    printf "### %s member%s, %s\n\n", m, (m == 1 ? "" : "s"), gp[2]
    hdr = "| op | clients x conns |"; sep = "|---|---|"
    for (t = 1; t <= nt[m]; t++) { hdr = hdr " " targets[m, t] " req/s (p99 ms) |"; sep = sep "---|" }
    for (t = 1; t <= nt[m]; t++) {
      n = targets[m, t]
      if (n ~ /^metastore/) { hdr = hdr " " n "/etcd req/s | " n "/etcd p99 |"; sep = sep "---|---|" }
    }
    print hdr; print sep
    for (j = 1; j <= nr[g]; j++) {
      r = rows[g, j]; split(r, rp, "\t")
      line = "| " rp[1] " | " rp[2] " |"
      for (t = 1; t <= nt[m]; t++) {
        n = targets[m, t]
        if ((g, r, n) in rps) {
          e = errs[g, r, n] > 0 ? sprintf(", %d errors", errs[g, r, n]) : ""
          line = line " " fmt(rps[g, r, n]) " (" p99[g, r, n] e ") |"
        } else line = line " |"
      }
      for (t = 1; t <= nt[m]; t++) {
        n = targets[m, t]
        if (n !~ /^metastore/) continue
        if (((g, r, n) in rps) && ((g, r, "etcd") in rps) && rps[g, r, "etcd"] > 0 && p99[g, r, "etcd"] > 0)
          line = line sprintf(" %.2fx | %.2fx |", rps[g, r, n] / rps[g, r, "etcd"], p99[g, r, n] / p99[g, r, "etcd"])
        else line = line " | |"
      }
      print line
    }
    print ""
  }
}' "$tsv"

# The issue's targets, pinned, 100 clients over 10 connections.
echo "### Targets (pinned, 100 clients x 10 conns)"
echo
echo "| build | 1 member put >= 2x etcd | 1 member put p99 <= 0.6x etcd | 1 member linearizable get >= 1.3x etcd | 3 members put >= 1.5x etcd |"
echo "|---|---|---|---|---|"
awk -F'\t' '
NR == 1 { next }
$2 == "pinned" && $5 == 100 && $6 == 10 { rps[$1, $3, $4] = $7; p99[$1, $3, $4] = $9; if ($3 ~ /^metastore/ && !($3 in seen)) { seen[$3] = 1; ms[++n] = $3 } }
function check(m, t, row, want, what,   r) {
  if (!((m, t, row) in rps) || !((m, "etcd", row) in rps) || rps[m, "etcd", row] == 0 || p99[m, "etcd", row] == 0) return "not run"
  r = (what == "p99") ? p99[m, t, row] / p99[m, "etcd", row] : rps[m, t, row] / rps[m, "etcd", row]
  return sprintf("%.2fx %s", r, ((what == "p99") ? r <= want : r >= want) ? "met" : "**missed**")
}
END {
  for (i = 1; i <= n; i++)
    printf "| %s | %s | %s | %s | %s |\n", ms[i], check(1, ms[i], "put", 2, "rps"), check(1, ms[i], "put", 0.6, "p99"),
      check(1, ms[i], "get-l", 1.3, "rps"), check(3, ms[i], "put", 1.5, "rps")
}' "$tsv"
echo

if [ -f "$dir/resources.tsv" ] && [ "$(wc -l <"$dir/resources.tsv")" -gt 1 ]; then
  echo "### Resources at the end of each server's rows"
  echo
  echo "| members | pinning | target | largest member RSS MB | data on disk MB (all members) |"
  echo "|---|---|---|---|---|"
  awk -F'\t' 'NR > 1 && $3 != "noop" { printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5 }' "$dir/resources.tsv"
  echo
fi

if [ -f "$dir/extra.tsv" ] && [ "$(wc -l <"$dir/extra.tsv")" -gt 1 ]; then
  echo "### Extras (1 member, pinned, metastore-bench; JSON in extra/)"
  echo
  echo "| target | scenario | metric | value |"
  echo "|---|---|---|---|"
  awk -F'\t' 'NR > 1 { v = $4; if (v ~ /^[0-9.]+$/) v = sprintf("%.1f", v); printf "| %s | %s | %s | %s |\n", $1, $2, $3, v }' "$dir/extra.tsv"
  echo
fi
