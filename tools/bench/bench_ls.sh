#!/bin/sh
# Measure bitcpm-ls on a page-cached checkpoint: wall time and peak resident
# memory of each of N runs, with GNU time (Debian package "time").
#
# Usage: tools/bench/bench_ls.sh [-n RUNS] [-b BITCPM_LS] CHECKPOINT
#   -n RUNS       number of timed runs (default 10)
#   -b BITCPM_LS  the executable (default build/src/cli/bitcpm-ls)
# The checkpoint is read once with cat first so that every run finds it in the
# page cache. The figures therefore leave out disk speed.
# Output: one line per run (GNU time's wall seconds, to 10 ms, and max RSS),
# their min/median/max, then the mean wall time of another RUNS runs timed
# together with date(1) to the nanosecond, which resolves runs under 10 ms.
set -eu

runs=10
ls_command=build/src/cli/bitcpm-ls
while getopts n:b: option; do
    case $option in
    n) runs=$OPTARG ;;
    b) ls_command=$OPTARG ;;
    *) echo "usage: $0 [-n RUNS] [-b BITCPM_LS] CHECKPOINT" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
if [ $# -ne 1 ]; then
    echo "usage: $0 [-n RUNS] [-b BITCPM_LS] CHECKPOINT" >&2
    exit 2
fi
checkpoint=$1
if [ ! -x /usr/bin/time ]; then
    echo "$0: /usr/bin/time not found; install the Debian package 'time'" >&2
    exit 2
fi

cat "$checkpoint" >/dev/null
"$ls_command" "$checkpoint" >/dev/null   # warm-up run, not counted

results=$(mktemp)
trap 'rm -f "$results"' EXIT
i=1
while [ "$i" -le "$runs" ]; do
    /usr/bin/time -f '%e %M' -a -o "$results" "$ls_command" "$checkpoint" >/dev/null
    i=$((i + 1))
done

echo "run wall_s max_rss_kib"
awk '{ print NR, $1, $2 }' "$results"
sort -n "$results" | awk '
    { wall[NR] = $1; if ($2 > rss) rss = $2 }
    END {
        median = (NR % 2) ? wall[(NR + 1) / 2] : (wall[NR / 2] + wall[NR / 2 + 1]) / 2
        printf "runs %d: wall min %.2f s, median %.2f s, max %.2f s; peak RSS %d KiB (%.1f MiB)\n",
               NR, wall[1], median, wall[NR], rss, rss / 1024
    }'

started=$(date +%s%N)
i=1
while [ "$i" -le "$runs" ]; do
    "$ls_command" "$checkpoint" >/dev/null
    i=$((i + 1))
done
finished=$(date +%s%N)
awk -v ns=$((finished - started)) -v n="$runs" \
    'BEGIN { printf "mean wall over %d more runs, timed together: %.4f s\n", n, ns / n / 1e9 }'
