#!/usr/bin/python3
"""Write a full-size BitCPM-shaped checkpoint with real torch.save, in little RAM.

The benchmarks of every bitcpm command read what this script writes, so keep
its command line stable.

Shapes (from the BitCPM-CANN model cards):
  8b  MiniCPM layout: hidden 4096, intermediate 16384, 32 layers, 32/2 heads,
      head_dim 128, vocab 73448, untied lm_head: 291 tensors, about 16.4 GB.
  1b  Llama layout: hidden 2048, intermediate 6144, 28 layers, 16/2 heads,
      head_dim 128, vocab 73448, untied lm_head.

Stages:
  pseudo  every q/k/v/o and gate/up/down row contains codes in {-1, 0, 1} times
          one per-row scale, stored as bf16 (what qat-convert.py writes);
          embedding and lm_head Gaussian (std 0.02), norms ones.
  latent  every tensor Gaussian with std 0.02 in bf16, norms ones.

Each tensor is backed by its own scratch file through
torch.from_file(shared=True), filled a block of rows at a time, so the
process never holds more than one block in anonymous memory. The scratch
files are unlinked as soon as they are mapped, so nothing is left behind if
the script stops early; their disk space (as much as the output) is in use
until the script exits. Values depend only on --seed and the other options.

Example:
  tools/bench/make_8b_checkpoint.py --out /tmp/bench/8b-pseudo.bin
"""

import argparse
import collections
import os
import sys
import tempfile
import time

import torch

SHAPES = {
    "8b": dict(hidden=4096, intermediate=16384, layers=32, heads=32, kv_heads=2,
               head_dim=128, vocab=73448),
    "1b": dict(hidden=2048, intermediate=6144, layers=28, heads=16, kv_heads=2,
               head_dim=128, vocab=73448),
}

# Elements filled per block: 16 Mi bf16 values, 32 MiB, plus float32 temporaries.
BLOCK_ELEMENTS = 1 << 24

TERNARY = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def tensor_plan(shape, layers):
    """Return name -> (shape, kind) in the order transformers writes a state dict."""
    h, i, hd = shape["hidden"], shape["intermediate"], shape["head_dim"]
    q_out, kv_out = shape["heads"] * hd, shape["kv_heads"] * hd
    plan = collections.OrderedDict()
    plan["model.embed_tokens.weight"] = ((shape["vocab"], h), "gaussian")
    for layer in range(layers):
        p = f"model.layers.{layer}."
        plan[p + "input_layernorm.weight"] = ((h,), "ones")
        plan[p + "self_attn.q_proj.weight"] = ((q_out, h), "ternary")
        plan[p + "self_attn.k_proj.weight"] = ((kv_out, h), "ternary")
        plan[p + "self_attn.v_proj.weight"] = ((kv_out, h), "ternary")
        plan[p + "self_attn.o_proj.weight"] = ((h, q_out), "ternary")
        plan[p + "post_attention_layernorm.weight"] = ((h,), "ones")
        plan[p + "mlp.gate_proj.weight"] = ((i, h), "ternary")
        plan[p + "mlp.up_proj.weight"] = ((i, h), "ternary")
        plan[p + "mlp.down_proj.weight"] = ((h, i), "ternary")
    plan["model.norm.weight"] = ((h,), "ones")
    plan["lm_head.weight"] = ((shape["vocab"], h), "gaussian")
    return plan


def fill_block(block, kind, generator):
    """Fill a [rows, columns] bf16 block in place."""
    rows, columns = block.shape
    if kind == "ones":
        block.fill_(1.0)
    elif kind == "gaussian":
        values = torch.randn(rows, columns, generator=generator) * 0.02
        block.copy_(values)
    else:
        # Per-row scale near mean(|W|) of a std-0.02 Gaussian latent (0.016).
        scale = 0.016 * (1.0 + 0.1 * torch.randn(rows, 1, generator=generator))
        codes = torch.randint(-1, 2, (rows, columns), generator=generator, dtype=torch.int8)
        block.copy_(codes.to(torch.float32) * scale)


def make_tensor(scratch_dir, index, shape, kind, generator):
    """Create one bf16 tensor backed by an unlinked scratch file and fill it."""
    numel = 1
    for size in shape:
        numel *= size
    path = os.path.join(scratch_dir, f"{index:04d}.bin")
    flat = torch.from_file(path, shared=True, size=numel, dtype=torch.bfloat16)
    os.unlink(path)

    matrix = flat.view(-1, shape[-1])
    rows_per_block = max(1, BLOCK_ELEMENTS // shape[-1])
    for start in range(0, matrix.shape[0], rows_per_block):
        fill_block(matrix[start:start + rows_per_block], kind, generator)
    return flat.view(*shape)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--out", required=True, help="checkpoint to write (torch.save zip format)")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="8b",
                        help="model shape (default: %(default)s)")
    parser.add_argument("--layers", type=int, default=None,
                        help="number of decoder layers (default: the shape's, 32 for 8b)")
    parser.add_argument("--stage", choices=("pseudo", "latent"), default="pseudo",
                        help="pseudo-quantized ternary or latent Gaussian weights "
                             "(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument("--scratch", default=None,
                        help="folder for the scratch files (default: beside --out)")
    return parser.parse_args(argv)


def main(argv):
    args = parse_args(argv)
    shape = SHAPES[args.shape]
    layers = shape["layers"] if args.layers is None else args.layers
    if layers < 0:
        sys.exit("make_8b_checkpoint.py: --layers must be >= 0")

    out = os.path.abspath(args.out)
    os.makedirs(os.path.dirname(out), exist_ok=True)
    scratch_dir = tempfile.mkdtemp(prefix=".scratch-", dir=args.scratch or os.path.dirname(out))
    generator = torch.Generator().manual_seed(args.seed)
    plan = tensor_plan(shape, layers)

    started = time.monotonic()
    state = collections.OrderedDict()
    try:
        for index, (name, (dims, kind)) in enumerate(plan.items()):
            if args.stage == "latent" and kind == "ternary":
                kind = "gaussian"
            state[name] = make_tensor(scratch_dir, index, dims, kind, generator)
        filled = time.monotonic()
        torch.save(state, out)
    finally:
        os.rmdir(scratch_dir)
    saved = time.monotonic()

    total = sum(t.numel() * t.element_size() for t in state.values())
    print(f"{out}: {len(state)} tensors, {total} bytes of bf16 data, "
          f"file {os.path.getsize(out)} bytes; fill {filled - started:.1f} s, "
          f"torch.save {saved - filled:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
