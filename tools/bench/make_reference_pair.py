#!/usr/bin/python3
"""Write the pseudo-quantized conversion of a latent checkpoint with PyTorch.

Reads a latent checkpoint (as tools/bench/make_8b_checkpoint.py --stage
latent writes it), replaces every q/k/v/o and gate/up/down projection by its
ternary fake-quant with one group per row, computed in float32
(s = max(mean(|W|), eps), Wq = clamp(round(W / s), -1, 1) * s, cast back to
the stored dtype), copies every other tensor, and saves the result with
torch.save. This is the pair the reference benchmark compares.

Tensors are converted one at a time, replacing the latent tensor in the
dictionary, so memory peaks near the size of one checkpoint.

Example:
  tools/bench/make_reference_pair.py --latent /tmp/bench/8b-latent.bin \\
      --out /tmp/bench/8b-pseudo-ref.bin
"""

import argparse
import sys
import time

import torch

PROJECTIONS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def is_ternary(name):
    parts = name.split(".")
    return len(parts) >= 2 and parts[-1] == "weight" and parts[-2] in PROJECTIONS


def fake_quant_rows(w, eps, block=1024):
    """Float32-policy fake-quant with one group per row, a block of rows at a time."""
    out = torch.empty_like(w)
    for start in range(0, w.shape[0], block):
        w32 = w[start:start + block].float()
        s = w32.abs().mean(dim=-1, keepdim=True).clamp(min=eps)
        out[start:start + block] = ((w32 / s).round().clamp(-1, 1) * s).to(w.dtype)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latent", required=True, help="latent checkpoint to read")
    parser.add_argument("--out", required=True, help="pseudo-quantized checkpoint to write")
    parser.add_argument("--eps", type=float, default=1e-5, help="eps (default: %(default)s)")
    args = parser.parse_args()

    start = time.time()
    state = torch.load(args.latent, map_location="cpu")
    for name in list(state):
        if is_ternary(name):
            state[name] = fake_quant_rows(state[name], args.eps)
    torch.save(state, args.out)
    print("wrote %s in %.1f s" % (args.out, time.time() - start), file=sys.stderr)


if __name__ == "__main__":
    main()
