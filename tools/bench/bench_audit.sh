#!/usr/bin/env bash
# Benchmark the audit store, in two parts:
#   1. history over 10,000 runs. Records 10 models x 1,000 runs of 291 tensors
#      (an 8B checkpoint's tensor count) and 5 findings each, one transaction
#      per run as bitcpm-check writes them. Then times bitcpm-audit history
#      (all runs, --limit, --model, PATH) and verify.
#   2. digest cost on a page-cached checkpoint: xxh3-128 (and with SHA-256)
#      against a plain read of every 64-bit word in the same windows,
#      single-threaded; then bitcpm-check alternately with --no-audit and with
#      the audit record (the in-pass digest), RUNS times each, with the medians
#      of wall time and CPU time, the overhead and the peak resident set.
#
#   tools/bench/bench_audit.sh [BUILD_DIR] [WORK_DIR]
#
# WORK_DIR (default /tmp/bench-audit) receives the database (about 1 GB) and
# 1b-pseudo.bin (about 3.2 GB, written by make_8b_checkpoint.py); both are
# deleted at the end unless KEEP=1. RUNS_PER_MODEL (default 1000) scales part 1;
# PARTS (default "1 2") selects the parts to run. CHECK_FILE names an existing
# checkpoint for part 2 instead (the 8B one: make_8b_checkpoint.py --stage
# pseudo), with CHECK_CONFIG its config.json when it has none beside it;
# RUNS (default 5) sets the bitcpm-check runs of each kind.
set -euo pipefail

build=${1:-build}
work=${2:-/tmp/bench-audit}
here=$(cd "$(dirname "$0")" && pwd)
driver=$build/tests/audit/audit_driver
audit=$build/src/cli/bitcpm-audit
check=$build/src/cli/bitcpm-check
per_model=${RUNS_PER_MODEL:-1000}
parts=${PARTS:-1 2}
mkdir -p "$work"
cleanup() {
    [ "${KEEP:-0}" = 1 ] || rm -rf "$work/history.db"* "$work/check.db"* "$work/1b-pseudo.bin" "$work/time.err"
}
trap cleanup EXIT

# seconds COMMAND...: wall time of one run, output discarded.
seconds() {
    local start end
    start=$(date +%s.%N)
    "$@" >/dev/null || true # bitcpm-check exits 1 on findings
    end=$(date +%s.%N)
    echo "$end - $start" | bc -l | xargs printf '%.3f'
}

echo "== machine"
echo "$(nproc) cores, $(free -g | awk '/^Mem:/ {print $2}') GiB RAM,"\
     "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"

# cputime LABEL COMMAND...: wall and CPU time of one run, output discarded. On
# a loaded machine the CPU time is the steadier measure of what the digest costs.
cputime() {
    local label=$1
    shift
    /usr/bin/time -f "$label %e s wall, %U s user, %S s sys" "$@" >/dev/null 2>"$work/time.err" || true
    tail -n 1 "$work/time.err"
}

if [[ " $parts " == *" 1 "* ]]; then
echo "== part 1: history over $((10 * per_model)) runs"
rm -f "$work/history.db"*
start=$(date +%s.%N)
for m in 0 1 2 3 4 5 6 7 8 9; do
    "$driver" --db "$work/history.db" --repeat "$per_model" --tensors 291 --findings 5 \
        --path "/models/model-$m/model.safetensors" --config "/models/model-$m/config.json" \
        --family llama >/dev/null
done
end=$(date +%s.%N)
echo "insert: $(echo "($end - $start) / (10 * $per_model) * 1000" | bc -l | xargs printf '%.2f') ms per run," \
     "database $(du -m "$work/history.db" | cut -f1) MB"
for i in 1 2 3; do
    echo "history (all runs, text):     $(seconds "$audit" --audit-db "$work/history.db" history) s"
done
echo "history (all runs, json):     $(seconds "$audit" --audit-db "$work/history.db" history --format json) s"
echo "history --limit 20:           $(seconds "$audit" --audit-db "$work/history.db" history --limit 20) s"
echo "history --model model-3:      $(seconds "$audit" --audit-db "$work/history.db" history --model model-3) s"
echo "history PATH:                 $(seconds "$audit" --audit-db "$work/history.db" history /models/model-7/model.safetensors) s"
echo "verify (whole chain):         $(seconds "$audit" --audit-db "$work/history.db" verify) s"
rm -f "$work/history.db"*
fi

[[ " $parts " == *" 2 "* ]] || exit 0
file=${CHECK_FILE:-$work/1b-pseudo.bin}
echo "== part 2: digest on page-cached $file"
[ -f "$file" ] || /usr/bin/python3 "$here/make_8b_checkpoint.py" --shape 1b --stage pseudo --out "$file" >/dev/null
cat "$file" >/dev/null # into the page cache
for i in 1 2 3; do
    "$driver" --scan "$file" | grep '^scan'
    "$driver" --digest "$file" --time | grep '^xxh3'
done
"$driver" --digest "$file" --sha256 --time | grep '^xxh3'

# median: the middle of the numbers on stdin.
median() {
    sort -n | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# timed KIND ARGS...: one bitcpm-check run; appends "wall cpu rss_kib" to $work/KIND.times.
timed() {
    local kind=$1
    shift
    /usr/bin/time -f "%e %U %S %M" "$check" -q "$@" "$file" >/dev/null 2>"$work/time.err" || true
    tail -n 1 "$work/time.err" | awk '{ print $1, $2 + $3, $4 }' >>"$work/$kind.times"
    echo "$kind: $(tail -n 1 "$work/$kind.times" | awk '{ printf "%s s wall, %s s CPU, %d MiB peak RSS", $1, $2, $3 / 1024 }')"
}

if "$check" --help 2>/dev/null | grep -q -- '--audit-db'; then
    config=()
    [ -n "${CHECK_CONFIG:-}" ] && config=(--config "$CHECK_CONFIG")
    rm -f "$work/plain.times" "$work/audit.times"
    for i in $(seq "${RUNS:-5}"); do
        timed plain --no-audit "${config[@]}"
        rm -f "$work/check.db"*
        timed audit --audit-db "$work/check.db" "${config[@]}"
    done
    for kind in plain audit; do
        wall=$(cut -d' ' -f1 "$work/$kind.times" | median)
        cpu=$(cut -d' ' -f2 "$work/$kind.times" | median)
        rss=$(cut -d' ' -f3 "$work/$kind.times" | sort -n | tail -n 1)
        echo "median $kind: $wall s wall, $cpu s CPU, peak RSS $((rss / 1024)) MiB"
        eval "${kind}_wall=$wall ${kind}_cpu=$cpu"
    done
    echo "digest and record overhead: $(echo "($audit_wall / $plain_wall - 1) * 100" | bc -l | xargs printf '%.1f')% wall," \
         "$(echo "($audit_cpu / $plain_cpu - 1) * 100" | bc -l | xargs printf '%.1f')% CPU"
    rm -f "$work/plain.times" "$work/audit.times"
fi
