#!/usr/bin/env bash
# Benchmark the reference check (a pseudo-quantized checkpoint against the
# fake-quant of its latent checkpoint) on page-cached BitCPM-shaped pairs,
# against two baselines, in one run:
#   - memscan: every 64-bit word of both files summed on all cores (the floor);
#   - tools/bench/torch_reference.py: the same comparison written in PyTorch.
# It also times tools/bench/scan_bench.c, the ternary scan and value
# statistics the rule engine runs on each file.
#
#   tools/bench/bench_reference.sh [BUILD_DIR] [WORK_DIR] [LAYERS] [TORCH_LAYERS]
#
# BUILD_DIR (default build) must hold libbitcpm.a. WORK_DIR (default
# /tmp/bench-reference) receives an 8B-shaped pair with LAYERS decoder layers
# (default 8; 32 is the full model, 2 x 16.4 GB) and a 1B-shaped pair with
# TORCH_LAYERS layers (default 4), where the C check and memscan are timed
# again. The PyTorch baseline runs on the 1B-shaped pair (best of three) and,
# last, once on the 8B-shaped pair when the free memory allows: torch.load of
# PyTorch 1.13 reads whole files into memory. Both files of a pair must fit
# in the page cache together, or the timings measure the disk.
# The memory scans, the comparison alone (reference_bench.c, the library
# call) and the whole command (BUILD_DIR/src/cli/bitcpm-check PSEUDO
# --reference LATENT, which also runs the rule engine's checks, once with its
# default audit record written to a scratch database and once with
# --no-audit) run in turn, five rounds, so that load from other jobs hits
# them alike; each timing is the best of the five.
set -euo pipefail

build=${1:-build}
work=${2:-/tmp/bench-reference}
layers=${3:-8}
torch_layers=${4:-4}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
threads=$(nproc)
mkdir -p "$work"

cc -O2 -pthread -o "$work/memscan" "$here/memscan.c"
for driver in reference_bench scan_bench; do
    # shellcheck disable=SC2046
    cc -O2 -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -I"$root/src" \
        -o "$work/$driver" "$here/$driver.c" "$build/libbitcpm.a" \
        $(pkg-config --libs sqlite3 zlib yaml-0.1 jansson libxxhash libcrypto) -lpthread -lm
done

make_pair() { # shape layers prefix
    local latent="$work/$3-latent.bin" pseudo="$work/$3-pseudo.bin"
    [ -f "$latent" ] || /usr/bin/python3 "$here/make_8b_checkpoint.py" --shape "$1" \
        --layers "$2" --stage latent --out "$latent"
    [ -f "$pseudo" ] || /usr/bin/python3 "$here/make_reference_pair.py" --latent "$latent" \
        --out "$pseudo"
}

best_line() { # reads "KEY output line" lines; prints, per KEY, the line with the shortest "N.NNN s" time
    awk '
        match($0, /[0-9.]+ s[ ,]/) {
            t = substr($0, RSTART, RLENGTH - 3) + 0
            key = $1
            if (!(key in best) || t < best[key]) { best[key] = t; line[key] = $0 }
            if (!(key in seen)) { seen[key] = 1; order[++n] = key }
        }
        END { for (i = 1; i <= n; i++) print substr(line[order[i]], length(order[i]) + 2) }'
}

cli_time() { # label pseudo latent [options]; prints the wall time of the whole bitcpm-check command
    local label=$1 pseudo=$2 latent=$3 start end rc=0
    shift 3
    start=$(date +%s.%N)
    /usr/bin/time -f %M -o "$work/rss.txt" "$build/src/cli/bitcpm-check" "$pseudo" \
        --reference "$latent" --threads "$threads" "$@" > /dev/null 2>&1 || rc=$?
    end=$(date +%s.%N)
    awk -v s="$start" -v e="$end" -v rc="$rc" -v label="$label" -v kb="$(tail -n 1 "$work/rss.txt")" \
        'BEGIN { printf "%s: %.3f s, peak RSS %.1f MiB, exit status %d\n", label, e - s, kb / 1024, rc }'
}

run_pair() { # prefix
    local latent="$work/$1-latent.bin" pseudo="$work/$1-pseudo.bin"
    cat "$latent" "$pseudo" > /dev/null # into the page cache
    echo "## $1: $(du -h "$pseudo" | cut -f1) + $(du -h "$latent" | cut -f1), load $(cut -d' ' -f1-3 /proc/loadavg)"
    for _ in 1 2 3 4 5; do
        "$work/memscan" "$pseudo" "$threads" | sed 's/^/1 /'
        "$work/memscan" "$latent" "$threads" | sed 's/^/2 /'
        "$work/reference_bench" "$pseudo" "$latent" "$threads" | sed -n '1s/^/3 /p'
        cli_time "bitcpm-check --reference (audit on)" "$pseudo" "$latent" \
            --audit-db "$work/bench-audit.db" | sed 's/^/4 /'
        cli_time "bitcpm-check --reference --no-audit" "$pseudo" "$latent" --no-audit |
            sed 's/^/7 /'
    done | best_line
    rm -f "$work/bench-audit.db"
    for _ in 1 2 3; do
        "$work/scan_bench" "$pseudo" "$threads" | sed 's/^/5 /'
        "$work/scan_bench" "$latent" "$threads" | sed 's/^/6 /'
    done | best_line
}

make_pair 8b "$layers" "8b-${layers}l"
make_pair 1b "$torch_layers" "1b-${torch_layers}l"

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(free -g | awk '/Mem:/ {print $2}') GiB"
torch_pair() { # prefix rounds; the PyTorch script on a pair, best of rounds
    for _ in $(seq "$2"); do
        /usr/bin/python3 "$here/torch_reference.py" --threads "$threads" \
            "$work/$1-pseudo.bin" "$work/$1-latent.bin" | sed 's/^/8 /'
    done | best_line
}

run_pair "8b-${layers}l"
run_pair "1b-${torch_layers}l"
echo "## PyTorch, 1b-${torch_layers}l"
torch_pair "1b-${torch_layers}l" 3

# torch.load keeps both files in memory, next to their page-cache copies.
need=$(( $(stat -c %s "$work/8b-${layers}l-pseudo.bin") * 23 / 10 ))
avail=$(( $(awk '/MemAvailable/ {print $2}' /proc/meminfo) * 1024 ))
if [ "$avail" -ge "$need" ]; then
    echo "## PyTorch, 8b-${layers}l (last: it pushes the pairs out of the page cache)"
    torch_pair "8b-${layers}l" 1
else
    echo "## PyTorch, 8b-${layers}l: skipped, $((need >> 30)) GiB of free memory needed, $((avail >> 30)) GiB available"
fi
