#!/usr/bin/env bash
# Benchmark bitcpm-check on page-cached checkpoints with BitCPM-CANN shapes
# against two baselines, in one run:
#   - memscan: every 64-bit word of the same file summed on all cores (the floor);
#   - tools/bench/torch_check.py: the same checks written in PyTorch.
#
#   tools/bench/bench_check.sh [BUILD_DIR] [WORK_DIR]
#
# WORK_DIR (default /tmp/bench) receives 8b-pseudo.bin (about 16.4 GB) and
# 1b-pseudo.bin (about 3.2 GB) unless they already exist. PyTorch's torch.load
# of 1.13 reads the whole file into memory, so the PyTorch baseline runs on the
# 1B-shaped file, where bitcpm-check and memscan are timed again.
set -euo pipefail

build=${1:-build}
work=${2:-/tmp/bench}
here=$(cd "$(dirname "$0")" && pwd)
check="$build/src/cli/bitcpm-check"
mkdir -p "$work"

cc -O2 -pthread -o "$work/memscan" "$here/memscan.c"

make_checkpoint() { # shape output
    [ -f "$2" ] || /usr/bin/python3 "$here/make_8b_checkpoint.py" --shape "$1" --stage pseudo --out "$2"
}

write_config() { # shape output
    /usr/bin/python3 - "$1" "$2" <<'PY'
import json, sys
shape, out = sys.argv[1], sys.argv[2]
configs = {
    "8b": {"architectures": ["MiniCPMForCausalLM"], "model_type": "minicpm", "hidden_size": 4096,
           "intermediate_size": 16384, "num_hidden_layers": 32, "num_attention_heads": 32,
           "num_key_value_heads": 2, "vocab_size": 73448, "tie_word_embeddings": False,
           "rms_norm_eps": 1e-6, "scale_emb": 12, "scale_depth": 1.4, "dim_model_base": 256},
    "1b": {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048,
           "intermediate_size": 6144, "num_hidden_layers": 28, "num_attention_heads": 16,
           "num_key_value_heads": 2, "vocab_size": 73448, "tie_word_embeddings": False},
}
json.dump(configs[shape], open(out, "w"), indent=2)
PY
}

timed() { # label command...
    local label=$1
    shift
    /usr/bin/time -f "$label: wall %e s, peak RSS %M KiB" "$@" >"$work/$label.out" 2>"$work/$label.err" || true
    tail -n 1 "$work/$label.err"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $(free -g | awk '/Mem:/ {print $2}') GiB RAM"

for shape in 8b 1b; do
    file="$work/$shape-pseudo.bin"
    config="$work/$shape-config.json"
    make_checkpoint "$shape" "$file"
    write_config "$shape" "$config"
    echo "== $shape: $(du -h "$file" | cut -f1) $file"
    cat "$file" >/dev/null # page-cache it

    for run in 1 2 3; do
        timed "memscan-$shape-$run" "$work/memscan" "$file"
        timed "check-$shape-$run" "$check" --no-audit -q --config "$config" "$file"
    done
    grep -h memscan "$work"/memscan-"$shape"-*.out
    head -n 1 "$work/check-$shape-1.out"

    if [ "$shape" = 1b ]; then
        timed "torch-$shape" /usr/bin/python3 "$here/torch_check.py" "$file" --config "$config"
        tail -n 1 "$work/torch-$shape.out"
    fi
done
