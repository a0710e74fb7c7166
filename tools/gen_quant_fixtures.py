#!/usr/bin/python3
"""Write the fake-quant fixtures of the quant tests with PyTorch.

For each case a latent matrix W is written together with what PyTorch
computes for the ternary fake quantizer

    s  = max(mean(|W_group|), eps)
    Wq = clamp(round(W / s), -1, 1) * s        # torch.round: half to even

under two compute policies:

  float32  W upcast to float32; mean, quotient, round and product in float32;
           the result cast to the stored dtype of the pseudo-quantized side.
  half     W in a 16-bit type H (the latent's own dtype when it is BF16 or
           F16, BF16 for an F32 latent). PyTorch's mean of an H tensor sums
           in float32, rounds the sum to H, then divides by the element count
           in float32 and rounds to H again: H(H(sum) / n). That equals
           H(float32 mean) only when n is a power of two and nothing
           underflows or overflows; for n = 384, 1000 or 6144 about 15% of
           BF16 and F16 Gaussian rows differ. clamp(min=eps) yields H(eps),
           W / s is computed in float32 and rounded to H, and codes times s
           is exact in H.

The stored dtype is the latent's for 16-bit latents and BF16 for F32 ones.
Cases: BF16, F16 and F32 latents with group sizes -1, 32, 64, 128 and 256,
each over rows of Gaussian weights plus rows built for edge cases (all zeros,
quotients of exactly 0.5 and 1.5, very large values, subnormal values,
negative zeros, a row whose mean falls below eps), and one larger BF16 case
with enough Gaussian elements to contain quotients that round to a tie only
in BF16.

Under pairs/ it also writes a tiny MiniCPM-shaped checkpoint pair with
torch.save: latent.pt (BF16 latent weights), pseudo.pt (its float32-policy
conversion with group size -1) and one pseudo file per planted defect, listed
in pairs/defects.json and pairs/defects.txt.

Output (fixtures/quant/ by default): per case NAME.latent.bin,
NAME.float32.bin, NAME.half.bin (row-major little-endian elements),
NAME.sum.bin and NAME.sumhalf.bin (PyTorch's float32 sums of |W| and of
|H(W)| per group, one float each; the float32 mean is sum / n), listed with shapes and dtypes in cases.json and, one case per
line for the C tests, in cases.txt.

The script checks two facts about PyTorch 1.13 that the C code relies on and
stops if either fails: the mean of an H tensor equals H(H(float32 sum) / n),
and H division equals H(float32 quotient).
"""

import argparse
import json
import os

import torch

EPS = 1e-5
GROUP_SIZES = [-1, 32, 64, 128, 256]
DTYPES = {"bf16": torch.bfloat16, "f16": torch.float16, "f32": torch.float32}
NAMES = {torch.bfloat16: "BF16", torch.float16: "F16", torch.float32: "F32"}


def half_type(dtype):
    return dtype if dtype in (torch.bfloat16, torch.float16) else torch.bfloat16


def grouped(w, group_size):
    rows, columns = w.shape
    g = columns if group_size == -1 else group_size
    return w.reshape(rows, columns // g, g)


def fake_quant(w, group_size, eps):
    """Return the float32-policy and half-policy results and the float32 sums
    of |W| and of |H(W)| per group."""
    stored = half_type(w.dtype)

    w32 = grouped(w.float(), group_size)
    mean32 = w32.abs().mean(dim=-1, keepdim=True)
    s32 = mean32.clamp(min=eps)
    # The C code takes the mean as the float32 sum divided by n in float32.
    sum32 = w32.abs().sum(dim=-1, keepdim=True)
    assert torch.equal(mean32, sum32 / w32.shape[-1])
    q32 = ((w32 / s32).round().clamp(-1, 1) * s32).reshape(w.shape).to(stored)

    h = half_type(w.dtype)
    wh = grouped(w.to(h), group_size)
    if h == torch.bfloat16:
        sh = wh.abs().mean(dim=-1, keepdim=True).clamp(min=eps)
        qh = ((wh / sh).round().clamp(-1, 1) * sh).reshape(w.shape).to(stored)
    else:
        # PyTorch 1.13 has no CPU round or clamp for F16. Both are exact on any
        # F16 value, so they run on the float32 copy of the F16 quotient, and
        # torch.maximum replaces clamp(min=eps).
        sh = torch.maximum(wh.abs().mean(dim=-1, keepdim=True), torch.tensor(eps, dtype=h))
        codes = (wh / sh).float().round().clamp(-1, 1)
        qh = (codes * sh.float()).to(h).reshape(w.shape).to(stored)

    # The two facts about 16-bit arithmetic the C code reproduces.
    n = wh.shape[-1]
    sum32h = wh.float().abs().sum(dim=-1, keepdim=True)
    assert torch.equal(wh.abs().mean(dim=-1, keepdim=True), (sum32h.to(h).float() / n).to(h))
    assert torch.equal(wh / sh, (wh.float() / sh.float()).to(h))
    return q32, qh, sum32.reshape(-1), sum32h.reshape(-1)


def edge_rows(columns, dtype, generator):
    """Rows that exercise the corners of the formula, in dtype."""
    rows = []
    # All zeros: s is eps.
    rows.append(torch.zeros(columns))
    # Quotients of exactly +-0.5 and +-1.5: with s a power of two every element
    # is exact in each dtype and the mean of |W| over any 8 elements is s.
    s = 2.0 ** -6
    pattern = torch.tensor([0.5, 1.5, 1.0, 1.0, -0.5, -1.5, -1.0, -1.0]) * s
    rows.append(pattern.repeat(columns // 8))
    # Very large values (F16 tops out at 65504).
    big = 6.0e4 if dtype == torch.float16 else 1.0e30
    rows.append(torch.randn(columns, generator=generator) * big / 4)
    # Subnormal values of the dtype.
    tiny = {torch.bfloat16: 1e-39, torch.float16: 2e-6, torch.float32: 1e-39}[dtype]
    rows.append(torch.randn(columns, generator=generator) * tiny)
    # Gaussian with every third element a negative zero.
    row = torch.randn(columns, generator=generator) * 0.02
    row[::3] = -0.0
    rows.append(row)
    # A mean below eps that is not zero.
    rows.append(torch.randn(columns, generator=generator) * 1e-7)
    return torch.stack(rows).to(dtype)


def write_case(out, cases, name, w, group_size, eps):
    q32, qh, sum32, sum32h = fake_quant(w, group_size, eps)
    files = {}
    for kind, t in (("latent", w), ("float32", q32), ("half", qh), ("sum", sum32),
                    ("sumhalf", sum32h)):
        path = "%s.%s.bin" % (name, kind)
        data = t.contiguous()
        if data.dtype in (torch.bfloat16, torch.float16):
            data = data.view(torch.int16)
        with open(os.path.join(out, path), "wb") as f:
            f.write(data.numpy().tobytes())
        files[kind] = path
    disagree = int((q32.float() != qh.float()).sum())
    cases.append({
        "name": name,
        "latent_dtype": NAMES[w.dtype],
        "stored_dtype": NAMES[q32.dtype],
        "rows": w.shape[0],
        "columns": w.shape[1],
        "group_size": group_size,
        "eps": eps,
        "files": files,
        "policy_disagreements": disagree,
    })


# ---------------------------------------------------------------- checkpoint pairs

PROJECTIONS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
               "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def tiny_latent(generator, layers=2, hidden=64, intermediate=128, kv=32, vocab=96):
    """A MiniCPM-shaped latent state dict in BF16, small enough to commit."""
    shapes = {"self_attn.q_proj": (hidden, hidden), "self_attn.k_proj": (kv, hidden),
              "self_attn.v_proj": (kv, hidden), "self_attn.o_proj": (hidden, hidden),
              "mlp.gate_proj": (intermediate, hidden), "mlp.up_proj": (intermediate, hidden),
              "mlp.down_proj": (hidden, intermediate)}
    sd = {"model.embed_tokens.weight":
          (torch.randn(vocab, hidden, generator=generator) * 0.02).to(torch.bfloat16)}
    for i in range(layers):
        prefix = "model.layers.%d." % i
        sd[prefix + "input_layernorm.weight"] = torch.ones(hidden, dtype=torch.bfloat16)
        for name in PROJECTIONS:
            w = torch.randn(*shapes[name], generator=generator) * 0.02
            sd[prefix + name + ".weight"] = w.to(torch.bfloat16)
        sd[prefix + "post_attention_layernorm.weight"] = torch.ones(hidden, dtype=torch.bfloat16)
    sd["model.norm.weight"] = torch.ones(hidden, dtype=torch.bfloat16)
    sd["lm_head.weight"] = (torch.randn(vocab, hidden, generator=generator) * 0.02).to(
        torch.bfloat16)
    return sd


def is_ternary_name(name):
    return any(name.endswith(p + ".weight") for p in PROJECTIONS)


def convert(latent, eps):
    """What qat-convert.py --group_size -1 writes, computed in float32."""
    return {name: (fake_quant(t, -1, eps)[0] if is_ternary_name(name) else t.clone())
            for name, t in latent.items()}


def write_pairs(out, generator, eps):
    """Write latent.pt, a correct pseudo.pt and one pseudo file per planted defect,
    all with torch.save. Returns the manifest of planted defects."""
    os.makedirs(out, exist_ok=True)
    latent = tiny_latent(generator)
    pseudo = convert(latent, eps)
    torch.save(latent, os.path.join(out, "latent.pt"))
    torch.save(pseudo, os.path.join(out, "pseudo.pt"))
    manifest = {"ternary": sorted(n for n in latent if is_ternary_name(n)), "defects": []}

    def planted(name, rule, tensor, row=-1, column=-1, note="", latent_file="latent.pt"):
        manifest["defects"].append({"pseudo": name, "latent": latent_file, "rule": rule,
                                    "tensor": tensor, "row": row, "column": column,
                                    "note": note})

    # One row's scale off by 1/16.
    bad = dict(pseudo)
    name = "model.layers.1.mlp.up_proj.weight"
    t = bad[name].clone()
    t[5] = (t[5].float() * (1 + 1 / 16)).to(t.dtype)
    bad[name] = t
    torch.save(bad, os.path.join(out, "scale.pt"))
    planted("scale.pt", "reference.scale", name, 5, note="row 5 scaled by 17/16")

    # One code flipped: the first zero of row 3 becomes +s.
    bad = dict(pseudo)
    name = "model.layers.0.self_attn.k_proj.weight"
    t = bad[name].clone()
    column = int((t[3] == 0).nonzero()[0])
    t[3, column] = t[3].abs().max()
    bad[name] = t
    torch.save(bad, os.path.join(out, "flip.pt"))
    planted("flip.pt", "reference.codes", name, 3, column, note="code 0 flipped to +1")

    # A tensor quantized twice.
    bad = dict(pseudo)
    name = "model.layers.0.mlp.down_proj.weight"
    bad[name] = fake_quant(pseudo[name], -1, eps)[0]
    torch.save(bad, os.path.join(out, "twice.pt"))
    planted("twice.pt", "reference.scale", name, note="fake quantizer applied twice")

    # A tensor missing from the pseudo-quantized side.
    bad = dict(pseudo)
    name = "model.layers.1.self_attn.v_proj.weight"
    del bad[name]
    torch.save(bad, os.path.join(out, "missing.pt"))
    planted("missing.pt", "reference.missing", name, note="deleted from the pseudo side")

    # A norm changed by the conversion.
    bad = dict(pseudo)
    name = "model.layers.0.post_attention_layernorm.weight"
    t = bad[name].clone()
    t[7] = 2.0
    bad[name] = t
    torch.save(bad, os.path.join(out, "changed.pt"))
    planted("changed.pt", "reference.changed", name, 0, 7, note="norm element 7 set to 2")

    # A ternary tensor whose shape differs between the sides (half its rows).
    bad = dict(pseudo)
    name = "model.layers.0.self_attn.q_proj.weight"
    bad[name] = pseudo[name][:32].clone()
    torch.save(bad, os.path.join(out, "shape.pt"))
    planted("shape.pt", "reference.codes", name, note="rows 32-63 cut off")

    # NaN in the latent weights, compared with the correct pseudo file.
    bad = dict(latent)
    name = "model.layers.1.self_attn.o_proj.weight"
    t = bad[name].clone()
    t[9, 33] = float("nan")
    bad[name] = t
    torch.save(bad, os.path.join(out, "latent_nan.pt"))
    planted("pseudo.pt", "values.nonfinite", name, 9, 33, note="NaN in the latent",
            latent_file="latent_nan.pt")

    # A latent ternary tensor in float64, a dtype the comparison does not take:
    # the run must stop with a critical finding (not listed in defects.txt,
    # whose pairs all run to the end).
    bad = dict(latent)
    name = "model.layers.0.self_attn.q_proj.weight"
    bad[name] = latent[name].double()
    torch.save(bad, os.path.join(out, "latent_f64.pt"))

    with open(os.path.join(out, "defects.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    # Plain lines for the C tests: pseudo latent rule tensor row column.
    with open(os.path.join(out, "defects.txt"), "w") as f:
        for d in manifest["defects"]:
            f.write("%s %s %s %s %d %d\n" % (d["pseudo"], d["latent"], d["rule"], d["tensor"],
                                             d["row"], d["column"]))
    with open(os.path.join(out, "ternary.txt"), "w") as f:
        f.write("\n".join(manifest["ternary"]) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..",
                                                      "fixtures", "quant"))
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    generator = torch.Generator().manual_seed(1234)
    cases = []
    columns = 512
    for key, dtype in DTYPES.items():
        gaussian = torch.randn(10, columns, generator=generator) * 0.02
        w = torch.cat([gaussian.to(dtype), edge_rows(columns, dtype, generator)])
        for group_size in GROUP_SIZES:
            name = "%s_g%s" % (key, "row" if group_size == -1 else group_size)
            write_case(args.out, cases, name, w, group_size, EPS)

    # Rows of 384: a group size that is not a power of two, so that the mean of a
    # 16-bit tensor rounds twice (see the policy notes above).
    for key in ("bf16", "f16"):
        w = (torch.randn(64, 384, generator=generator) * 0.02).to(DTYPES[key])
        write_case(args.out, cases, "%s_cols384_grow" % key, w, -1, EPS)

    # Enough Gaussian BF16 elements for quotients that tie only after BF16 rounding.
    w = (torch.randn(128, 1024, generator=generator) * 0.02).to(torch.bfloat16)
    write_case(args.out, cases, "bf16_gaussian_grow", w, -1, EPS)

    with open(os.path.join(args.out, "cases.json"), "w") as f:
        json.dump({"generator": "tools/gen_quant_fixtures.py",
                   "torch": torch.__version__, "cases": cases}, f, indent=1)
        f.write("\n")
    write_pairs(os.path.join(args.out, "pairs"), generator, EPS)

    # The same list as plain lines for the C tests, which do not parse JSON:
    # name latent_dtype stored_dtype rows columns group_size eps.
    with open(os.path.join(args.out, "cases.txt"), "w") as f:
        for case in cases:
            f.write("%s %s %s %d %d %d %.9g\n" % (
                case["name"], case["latent_dtype"], case["stored_dtype"], case["rows"],
                case["columns"], case["group_size"], case["eps"]))
    for case in cases:
        print("%-20s %s -> %s, %d elements differ between policies" % (
            case["name"], case["latent_dtype"], case["stored_dtype"],
            case["policy_disagreements"]))


if __name__ == "__main__":
    main()
