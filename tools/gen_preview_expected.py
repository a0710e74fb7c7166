#!/usr/bin/python3
"""Compute with PyTorch what the export of a latent checkpoint would look like.

For every ternary projection of fixtures/check/minicpm-latent-zip this computes
the fake-quant of the conversion with the float32 policy, one group per output
row (the shipped rule's group size -1) and eps 1e-5 (the shipped rule's eps):

    s = max(mean(|W_row|), eps)        W upcast to float32
    code = clamp(round(W / s), -1, 1)  round half to even

and writes the code counts, the zero fraction and the smallest and largest s
per tensor to fixtures/check/minicpm-latent-zip.preview.json. The scales are
written as float32 bit patterns in hex as well, so that a test can compare
them exactly. tests/check/cli_preview.sh compares bitcpm-check's export
preview with this file.

Usage: tools/gen_preview_expected.py [REPO_ROOT]
"""
import json
import os
import re
import struct
import sys

import torch

EPS = 1e-5
TERNARY = re.compile(r"\.(self_attn\.[qkvo]_proj|mlp\.(gate|up|down)_proj)\.weight$")


def f32_bits(x):
    return "0x%08x" % struct.unpack("<I", struct.pack("<f", x))[0]


def preview(w):
    w = w.to(torch.float32)
    s = w.abs().mean(dim=1, keepdim=True).clamp_min(EPS)
    codes = torch.round(w / s).clamp(-1, 1)
    counts = [int((codes == c).sum()) for c in (-1, 0, 1)]
    smin = float(s.min())
    smax = float(s.max())
    return {
        "codes": {"-1": counts[0], "0": counts[1], "+1": counts[2]},
        "zero_fraction": counts[1] / sum(counts),
        "scale_min": smin,
        "scale_max": smax,
        "scale_min_bits": f32_bits(smin),
        "scale_max_bits": f32_bits(smax),
        "eps_floor_groups": int((w.abs().mean(dim=1) < EPS).sum()),
    }


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(
        os.path.abspath(__file__)))
    folder = os.path.join(root, "fixtures", "check", "minicpm-latent-zip")
    state = torch.load(os.path.join(folder, "pytorch_model.bin"), map_location="cpu")
    tensors = [dict(name=name, **preview(w)) for name, w in sorted(state.items())
               if TERNARY.search(name)]
    doc = {
        "source": "fixtures/check/minicpm-latent-zip/pytorch_model.bin",
        "torch": torch.__version__,
        "policy": "float32",
        "group_size": -1,
        "eps": EPS,
        "tensors": tensors,
    }
    with open(folder + ".preview.json", "w") as out:
        json.dump(doc, out, indent=1, sort_keys=True)
        out.write("\n")


if __name__ == "__main__":
    main()
