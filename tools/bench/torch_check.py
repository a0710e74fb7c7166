#!/usr/bin/python3
"""The checks bitcpm-check runs, written the way users write them today in PyTorch.

Loads a checkpoint with torch.load, then for every tensor counts NaN and Inf,
and for every decoder projection checks that each row holds only -s, 0 and +s
for one s > 0, with the code distribution. Expected names and shapes come from
config.json. This is the baseline that docs/BENCHMARKS.md compares against.

    torch_check.py CHECKPOINT --config config.json [--threads N]
"""
import argparse
import json
import re
import sys
import time

import torch

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def expected_shapes(config):
    hidden = config["hidden_size"]
    inter = config["intermediate_size"]
    heads = config["num_attention_heads"]
    kv_heads = config.get("num_key_value_heads", heads)
    head_dim = config.get("head_dim", hidden // heads)
    vocab = config["vocab_size"]
    shapes = {"model.embed_tokens.weight": (vocab, hidden), "model.norm.weight": (hidden,)}
    if not config.get("tie_word_embeddings", config.get("model_type") == "minicpm"):
        shapes["lm_head.weight"] = (vocab, hidden)
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        shapes[p + "input_layernorm.weight"] = (hidden,)
        shapes[p + "post_attention_layernorm.weight"] = (hidden,)
        shapes[p + "self_attn.q_proj.weight"] = (heads * head_dim, hidden)
        shapes[p + "self_attn.k_proj.weight"] = (kv_heads * head_dim, hidden)
        shapes[p + "self_attn.v_proj.weight"] = (kv_heads * head_dim, hidden)
        shapes[p + "self_attn.o_proj.weight"] = (hidden, heads * head_dim)
        shapes[p + "mlp.gate_proj.weight"] = (inter, hidden)
        shapes[p + "mlp.up_proj.weight"] = (inter, hidden)
        shapes[p + "mlp.down_proj.weight"] = (hidden, inter)
    return shapes


def check_ternary(weight):
    magnitude = weight.abs()
    scale = magnitude.amax(dim=1, keepdim=True)
    ternary = ((magnitude == 0) | (magnitude == scale)).all(dim=1) & (scale.squeeze(1) > 0)
    codes = torch.sign(weight)
    counts = [int((codes == c).sum()) for c in (-1, 0, 1)]
    return int((~ternary).sum()), counts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("--config", required=True)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    start = time.monotonic()
    with open(args.config, encoding="utf-8") as f:
        config = json.load(f)
    state = torch.load(args.checkpoint, map_location="cpu")
    loaded = time.monotonic()

    shapes = expected_shapes(config)
    problems = 0
    for name in shapes.keys() - state.keys():
        print(f"missing {name}")
        problems += 1
    for name in state.keys() - shapes.keys():
        print(f"unexpected {name}")
        problems += 1

    failing_rows = 0
    codes = [0, 0, 0]
    for name, tensor in state.items():
        if name in shapes and tuple(tensor.shape) != shapes[name]:
            print(f"shape {name} {tuple(tensor.shape)} != {shapes[name]}")
            problems += 1
        if tensor.is_floating_point():
            nonfinite = int((~torch.isfinite(tensor)).sum())
            if nonfinite:
                print(f"nonfinite {name} {nonfinite}")
                problems += 1
        if re.search(r"\.(%s)\.weight$" % "|".join(PROJECTIONS), name):
            rows, counts = check_ternary(tensor)
            failing_rows += rows
            codes = [a + b for a, b in zip(codes, counts)]

    total = sum(codes) or 1
    done = time.monotonic()
    print(f"torch_check: {len(state)} tensors, {problems} layout/finite problems, "
          f"{failing_rows} non-ternary rows, codes -1/0/+1 = "
          f"{codes[0] / total:.4f}/{codes[1] / total:.4f}/{codes[2] / total:.4f}; "
          f"load {loaded - start:.2f} s, checks {done - loaded:.2f} s, total {done - start:.2f} s")
    return 1 if problems or failing_rows else 0


if __name__ == "__main__":
    sys.exit(main())
