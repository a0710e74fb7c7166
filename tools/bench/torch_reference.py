#!/usr/bin/python3
"""The reference check written in PyTorch: the baseline of bench_reference.sh.

Loads a pseudo-quantized and a latent checkpoint with torch.load and, for
every q/k/v/o and gate/up/down projection, recomputes the ternary fake-quant
of the latent weights with one group per row in float32 and compares it with
the stored tensor: codes (sign of the stored value, 0 for zeros) against the
recomputed codes, and each row's stored magnitude against the recomputed
scale cast to the stored dtype. Every other tensor must be equal. Prints the
wall time of the whole run (loading included, as the C check's time includes
opening the files) and the counts.

  tools/bench/torch_reference.py PSEUDO LATENT [--threads N]
"""

import argparse
import time

import torch

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def is_ternary(name):
    parts = name.split(".")
    return len(parts) >= 2 and parts[-1] == "weight" and parts[-2] in PROJECTIONS


def compare(p, w, eps):
    w32 = w.float()
    s = w32.abs().mean(dim=-1, keepdim=True).clamp(min=eps)
    codes = (w32 / s).round().clamp(-1, 1)
    stored_codes = torch.sign(p.float())
    stored_scale = p.float().abs().amax(dim=-1, keepdim=True)
    code_mismatches = int((codes != stored_codes).sum())
    has_scale = stored_scale > 0
    scale_mismatches = int(((s.to(p.dtype).float() != stored_scale) & has_scale).sum())
    return code_mismatches, scale_mismatches


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pseudo")
    parser.add_argument("latent")
    parser.add_argument("--eps", type=float, default=1e-5)
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    start = time.time()
    pseudo = torch.load(args.pseudo, map_location="cpu")
    latent = torch.load(args.latent, map_location="cpu")
    loaded = time.time()
    codes = scales = changed = missing = 0
    for name, p in pseudo.items():
        w = latent.get(name)
        if w is None:
            missing += 1
        elif is_ternary(name):
            c, s = compare(p, w, args.eps)
            codes += c
            scales += s
        elif not torch.equal(p, w):
            changed += 1
    missing += sum(1 for name in latent if name not in pseudo)
    end = time.time()
    print("torch_reference: %.3f s (load %.3f s, compare %.3f s), %d threads; code mismatches "
          "%d, scale mismatches %d, changed %d, missing %d" % (
              end - start, loaded - start, end - loaded, torch.get_num_threads(), codes, scales,
              changed, missing))


if __name__ == "__main__":
    main()
