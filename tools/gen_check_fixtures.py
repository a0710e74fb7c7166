#!/usr/bin/python3
"""Write the checkpoints that the rule engine's tests (tests/rules/) check.

Small models of both architectures of the BitCPM-CANN family (2 layers,
hidden 64, intermediate 128, 4 attention heads, 2 key/value heads, vocabulary
256), written by PyTorch itself:

- a correct pseudo-quantized model and a correct latent model of each
  architecture, each as torch.save zip, torch.save legacy, safetensors and
  two safetensors shards with an index;
- one checkpoint per planted defect (torch.save zip), with the rule id,
  tensor and position that the defect plants recorded in expectations.json;
- configs of the four released sizes (fixtures/check/configs/) with the
  tensor shapes their model cards give, for the layout tests.

The pseudo-quantized weights are the fake quantizer's output: for each row
of a ternary weight, s = max(mean(|W|), eps) and Wq = clamp(round(W / s),
-1, 1) * s, computed in float32 and stored as bfloat16. Seeds are fixed, so
the tensor values are the same on every run with the same PyTorch; the
legacy files still differ between runs in their storage keys, which PyTorch
derives from object ids.

Run from the repository root: /usr/bin/python3 tools/gen_check_fixtures.py
To write only some of the checkpoints added after the first set (so that the
committed legacy files keep their storage keys), name them with --only, for
example --only defect-damaged-rows.
"""

import argparse
import datetime
import json
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixturelib  # noqa: E402

OUT = os.path.join("fixtures", "check")
EPS = 1e-5
LAYERS = 2

# The reduced sizes shared by both architectures.
SMALL = dict(hidden_size=64, intermediate_size=128, num_attention_heads=4,
             num_key_value_heads=2, vocab_size=256, num_hidden_layers=LAYERS)

CONFIGS = {
    # MiniCPM: no head_dim key (hidden / heads = 16) and no tie key (tied by default).
    "minicpm": dict(architectures=["MiniCPMForCausalLM"], model_type="minicpm",
                    rms_norm_eps=1e-5, scale_emb=12, scale_depth=1.4, dim_model_base=256,
                    torch_dtype="bfloat16", **SMALL),
    # Llama: an explicit head_dim that differs from hidden / heads, and an untied head.
    "llama": dict(architectures=["LlamaForCausalLM"], model_type="llama", head_dim=32,
                  tie_word_embeddings=False, rms_norm_eps=1e-5, torch_dtype="bfloat16",
                  **SMALL),
}

TERNARY = ["self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
           "self_attn.o_proj.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight",
           "mlp.down_proj.weight"]


def head_dim(cfg):
    return cfg.get("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])


def layer_shapes(cfg):
    h, i = cfg["hidden_size"], cfg["intermediate_size"]
    q = cfg["num_attention_heads"] * head_dim(cfg)
    kv = cfg["num_key_value_heads"] * head_dim(cfg)
    return {
        "input_layernorm.weight": [h],
        "self_attn.q_proj.weight": [q, h],
        "self_attn.k_proj.weight": [kv, h],
        "self_attn.v_proj.weight": [kv, h],
        "self_attn.o_proj.weight": [h, q],
        "post_attention_layernorm.weight": [h],
        "mlp.gate_proj.weight": [i, h],
        "mlp.up_proj.weight": [i, h],
        "mlp.down_proj.weight": [h, i],
    }


def fake_quant_rows(w):
    """Per-row ternary fake quantization in float32, stored as bfloat16."""
    w32 = w.float()
    s = w32.abs().mean(dim=1, keepdim=True).clamp(min=EPS)
    return (torch.clamp(torch.round(w32 / s), -1, 1) * s).to(torch.bfloat16)


def build_model(family, stage, seed):
    """State dict of a small model: stage 'latent', 'pseudo' or 'gaussian' (f32, std 1)."""
    cfg = CONFIGS[family]
    g = torch.Generator().manual_seed(seed)
    h, v = cfg["hidden_size"], cfg["vocab_size"]
    dtype = torch.float32 if stage == "gaussian" else torch.bfloat16
    std = 1.0 if stage == "gaussian" else 0.02

    def randn(*shape):
        return (torch.randn(*shape, generator=g) * std).to(dtype)

    sd = {"model.embed_tokens.weight": randn(v, h)}
    for layer in range(cfg["num_hidden_layers"]):
        for suffix, shape in layer_shapes(cfg).items():
            name = "model.layers.%d.%s" % (layer, suffix)
            if suffix.endswith("layernorm.weight"):
                sd[name] = (1 + 0.1 * torch.randn(*shape, generator=g)).to(dtype)
            elif stage == "pseudo":
                sd[name] = fake_quant_rows(randn(*shape))
            else:
                sd[name] = randn(*shape)
    sd["model.norm.weight"] = (1 + 0.1 * torch.randn(h, generator=g)).to(dtype)
    if cfg.get("tie_word_embeddings", True):
        sd["lm_head.weight"] = sd["model.embed_tokens.weight"]  # same storage, as torch.save keeps it
    else:
        sd["lm_head.weight"] = randn(v, h)
    return sd


# ---------------------------------------------------------------- writers


def fresh_dir(name):
    path = os.path.join(OUT, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def write_config(folder, cfg):
    fixturelib.write_json(os.path.join(folder, "config.json"), cfg)


def untied_copy(sd):
    """safetensors cannot share storage: drop a tied head, as save_pretrained does."""
    out = {}
    emb = sd["model.embed_tokens.weight"]
    for name, t in sd.items():
        if name == "lm_head.weight" and t.data_ptr() == emb.data_ptr():
            continue
        out[name] = t
    return out


def write_model(name, cfg, sd, fmt, with_config=True):
    """Write sd in format fmt into fixtures/check/<name>/; return the path a test opens."""
    folder = fresh_dir(name)
    if with_config:
        write_config(folder, cfg)
    if fmt == "zip":
        path = os.path.join(folder, "pytorch_model.bin")
        torch.save(sd, path)
    elif fmt == "legacy":
        path = os.path.join(folder, "pytorch_model.bin")
        torch.save(sd, path, _use_new_zipfile_serialization=False)
    elif fmt == "safetensors":
        path = os.path.join(folder, "model.safetensors")
        fixturelib.write_safetensors(path, untied_copy(sd))
    elif fmt == "sharded":
        tensors = untied_copy(sd)
        names = list(tensors)
        half = len(names) // 2
        weight_map, total = {}, 0
        for k, part in enumerate([names[:half], names[half:]]):
            shard = "model-%05d-of-00002.safetensors" % (k + 1)
            fixturelib.write_safetensors(os.path.join(folder, shard),
                                         {n: tensors[n] for n in part})
            for n in part:
                weight_map[n] = shard
                total += tensors[n].numel() * tensors[n].element_size()
        path = os.path.join(folder, "model.safetensors.index.json")
        fixturelib.write_json(path, {"metadata": {"total_size": total},
                                     "weight_map": dict(sorted(weight_map.items()))})
    else:
        raise ValueError(fmt)
    return os.path.relpath(path, OUT)


# ---------------------------------------------------------------- defects


def plant_defects():
    """Write one checkpoint per defect; return their expectations."""
    expectations = []

    def expect(name, path, rule, tensor, row=None, column=None, **extra):
        entry = dict(name=name, path=path, rule=rule, tensor=tensor, row=row, column=column,
                     severity="error")
        entry.update(extra)
        expectations.append(entry)

    # A value that is not -s, 0 or +s: half the row's scale, at row 5, column 17.
    sd = build_model("llama", "pseudo", 101)
    t = "model.layers.1.mlp.down_proj.weight"
    w = sd[t].clone()
    s = w[5].float().abs().max()
    w[5, 17] = (0.5 * s).to(torch.bfloat16)
    sd[t] = w
    path = write_model("defect-nonternary", CONFIGS["llama"], sd, "zip")
    expect("nonternary", path, "ternary.values", t, 5, 17, value=float(w[5, 17].float()),
           scale=float(s))

    # A missing tensor.
    sd = build_model("llama", "pseudo", 102)
    t = "model.layers.1.mlp.gate_proj.weight"
    del sd[t]
    expect("missing-tensor", write_model("defect-missing-tensor", CONFIGS["llama"], sd, "zip"),
           "layout.missing", t)

    # A missing layer: every tensor of layer 0.
    sd = build_model("minicpm", "pseudo", 103)
    for k in [k for k in sd if k.startswith("model.layers.0.")]:
        del sd[k]
    expect("missing-layer", write_model("defect-missing-layer", CONFIGS["minicpm"], sd, "zip"),
           "layout.missing", "model.layers.0")

    # An extra tensor: a bias on a linear that has none.
    sd = build_model("minicpm", "pseudo", 104)
    t = "model.layers.1.mlp.gate_proj.bias"
    sd[t] = torch.zeros(CONFIGS["minicpm"]["intermediate_size"], dtype=torch.bfloat16)
    expect("extra-tensor", write_model("defect-extra-tensor", CONFIGS["minicpm"], sd, "zip"),
           "layout.unexpected", t)

    # A wrong shape: k_proj with 16 rows too many (still ternary).
    sd = build_model("llama", "pseudo", 105)
    t = "model.layers.0.self_attn.k_proj.weight"
    g = torch.Generator().manual_seed(1105)
    cfg = CONFIGS["llama"]
    rows = cfg["num_key_value_heads"] * head_dim(cfg) + 16
    sd[t] = fake_quant_rows((torch.randn(rows, cfg["hidden_size"], generator=g) * 0.02)
                            .to(torch.bfloat16))
    expect("wrong-shape", write_model("defect-wrong-shape", cfg, sd, "zip"), "layout.shape", t,
           shape=list(sd[t].shape))

    # A wrong dtype: one projection in float64 (values still ternary).
    sd = build_model("minicpm", "pseudo", 106)
    t = "model.layers.1.self_attn.v_proj.weight"
    sd[t] = sd[t].to(torch.float64)
    expect("wrong-dtype", write_model("defect-wrong-dtype", CONFIGS["minicpm"], sd, "zip"),
           "layout.dtype", t, dtype="F64")

    # NaN in a ternary tensor at row 3, column 5.
    sd = build_model("llama", "pseudo", 107)
    t = "model.layers.0.mlp.up_proj.weight"
    w = sd[t].clone()
    w[3, 5] = float("nan")
    sd[t] = w
    expect("nan", write_model("defect-nan", CONFIGS["llama"], sd, "zip"), "values.nonfinite",
           t, 3, 5)

    # An empty tensor where weights belong, as ZeRO-3 saves partitioned parameters.
    sd = build_model("minicpm", "pseudo", 108)
    t = "model.layers.0.self_attn.o_proj.weight"
    sd[t] = torch.empty(0, dtype=torch.bfloat16)
    expect("zero3-empty", write_model("defect-zero3-empty", CONFIGS["minicpm"], sd, "zip"),
           "layout.shape", t)

    # lm_head missing although the config unties it.
    sd = build_model("llama", "pseudo", 109)
    del sd["lm_head.weight"]
    expect("lm-head-missing", write_model("defect-lm-head-missing", CONFIGS["llama"], sd, "zip"),
           "layout.missing", "lm_head.weight")

    # One row quantized as two tensor-parallel shards: each half of row 7 has its own scale.
    sd = build_model("minicpm", "pseudo", 110)
    t = "model.layers.1.self_attn.o_proj.weight"
    g = torch.Generator().manual_seed(1110)
    columns = sd[t].shape[1]
    latent = (torch.randn(columns, generator=g) * 0.02).to(torch.bfloat16)
    half = columns // 2
    left = fake_quant_rows(latent[:half].unsqueeze(0))[0]
    right = fake_quant_rows((latent[half:].float() * 3).to(torch.bfloat16).unsqueeze(0))[0]
    w = sd[t].clone()
    w[7] = torch.cat([left, right])
    sd[t] = w
    scales = sorted({float(x) for x in w[7].float().abs().unique() if x != 0})
    assert len(scales) == 2, scales
    expect("two-scale-row", write_model("defect-two-scale-row", CONFIGS["minicpm"], sd, "zip"),
           "ternary.groups", t, 7, half, shards=2, scales=scales, severity="warning")

    plant_more_defects(expect)
    return expectations


def plant_more_defects(expect):
    """Defects beyond the basic set: scales, the tie rule, mixed stages, globals."""
    # A scale outlier: layer 2's up_proj scaled 16 times (4 layers, so each kind has 4 tensors).
    cfg4 = dict(CONFIGS["minicpm"], num_hidden_layers=4)
    sd = build_model_layers("minicpm", cfg4, 111)
    t = "model.layers.2.mlp.up_proj.weight"
    sd[t] = (sd[t].float() * 16).to(torch.bfloat16)
    expect("scale-outlier", write_model("defect-scale-outlier", cfg4, sd, "zip"),
           "ternary.scale", t, severity="warning")

    # One row whose scale is a subnormal bfloat16 number (2^-130), at row 9.
    sd = build_model("llama", "pseudo", 112)
    t = "model.layers.0.mlp.gate_proj.weight"
    w = sd[t].clone()
    codes = torch.sign(w[9].float())
    w[9] = (codes * 2.0 ** -130).to(torch.bfloat16)
    assert 0 < float(w[9].float().abs().max()) < 2.0 ** -126
    sd[t] = w
    expect("subnormal-scale", write_model("defect-subnormal-scale", CONFIGS["llama"], sd, "zip"),
           "ternary.scale", t, 9, None)

    # A tied model whose head has its own, different values.
    sd = build_model("minicpm", "pseudo", 113)
    g = torch.Generator().manual_seed(1113)
    sd["lm_head.weight"] = (torch.randn(*sd["lm_head.weight"].shape, generator=g) * 0.02) \
        .to(torch.bfloat16)
    expect("tied-head-distinct", write_model("defect-tied-head-distinct", CONFIGS["minicpm"], sd,
                                             "zip"),
           "layout.tie", "lm_head.weight", severity="warning")

    # An untied model whose head shares the embedding's storage.
    sd = build_model("llama", "pseudo", 114)
    sd["lm_head.weight"] = sd["model.embed_tokens.weight"]
    expect("untied-head-shared", write_model("defect-untied-head-shared", CONFIGS["llama"], sd,
                                             "zip"),
           "layout.tie", "lm_head.weight", severity="warning")

    # A pseudo-quantized model in which the conversion missed one tensor.
    sd = build_model("llama", "pseudo", 115)
    latent = build_model("llama", "latent", 115)
    t = "model.layers.1.self_attn.v_proj.weight"
    sd[t] = latent[t]
    expect("mixed-stage", write_model("defect-mixed-stage", CONFIGS["llama"], sd, "zip"),
           "stage.mismatch", t)

    # A plain-data object that no rule allows, saved beside the weights.
    sd = build_model("llama", "pseudo", 116)
    sd["saved_on"] = datetime.date(2025, 1, 31)
    expect("unknown-global", write_model("defect-unknown-global", CONFIGS["llama"], sd, "zip"),
           "security.unknown-global", None, severity="any")

    # Without a config: one layer's k_proj has a shape the other layers do not share.
    cfg3 = dict(CONFIGS["minicpm"], num_hidden_layers=3)
    sd = build_model_layers("minicpm", cfg3, 117)
    t = "model.layers.1.self_attn.k_proj.weight"
    sd[t] = fake_quant_rows((torch.randn(48, 64, generator=g) * 0.02).to(torch.bfloat16))
    expect("noconfig-wrong-shape", write_model("noconfig-wrong-shape", None, sd, "zip",
                                               with_config=False),
           "layout.shape", t)


def write_damaged_rows():
    """A damaged pseudo-quantized export: in every ternary tensor, 15 rows of each
    32 are exact -s/0/+s and each of the other 17 has one or two values moved by
    0.003, so that those rows hold 2 to 4 distinct magnitudes, far fewer than
    latent weights. Its expectations go to expected.json beside it."""
    cfg = CONFIGS["llama"]
    sd = build_model("llama", "pseudo", 118)
    tensors = {}
    for name in sorted(sd):
        if not any(name.endswith(t) for t in TERNARY):
            continue
        w = sd[name].clone()
        rows, columns = w.shape
        damaged = 0
        first = None
        for r in range(rows):
            if r % 32 < 15:
                continue
            moved = [(3 * r + 1) % columns]
            if r % 3 == 0:
                moved.append((moved[0] + columns // 2) % columns)
            for k, c in enumerate(moved):
                w[r, c] = (w[r, c].float() + (0.003 if k == 0 else -0.003)).to(torch.bfloat16)
            magnitudes = {float(x) for x in w[r].float().abs().unique() if x != 0}
            assert 2 <= len(magnitudes) <= 4, (name, r, magnitudes)
            damaged += 1
            if first is None:
                c = min(moved)
                first = dict(row=r, column=c, value=float(w[r, c].float()))
        sd[name] = w
        tensors[name] = dict(groups=rows, groups_bad=damaged, **first)
    path = write_model("defect-damaged-rows", cfg, sd, "zip")
    fixturelib.write_json(os.path.join(OUT, "defect-damaged-rows", "expected.json"),
                          dict(path=path, rule="ternary.values", stage="pseudo",
                               tensors=tensors))


# Checkpoints that --only can write alone.
ADDED = {"defect-damaged-rows": write_damaged_rows}


def build_model_layers(family, cfg, seed):
    """build_model for a config with another layer count."""
    saved = CONFIGS[family]
    CONFIGS[family] = cfg
    try:
        return build_model(family, "pseudo", seed)
    finally:
        CONFIGS[family] = saved


# ---------------------------------------------------------------- the four sizes


# From the model cards (FAMILY facts table). The 3B values are unconfirmed there.
SIZES = {
    "0.5b": dict(family="minicpm", H=1024, I=4096, layers=24, nh=16, nkv=2, hd=64, V=73448,
                 tied=True, head_dim_key=False),
    "1b": dict(family="llama", H=2048, I=6144, layers=28, nh=16, nkv=2, hd=128, V=73448,
               tied=False, head_dim_key=False),
    "3b": dict(family="llama", H=2560, I=10240, layers=32, nh=32, nkv=2, hd=128, V=73448,
               tied=False, head_dim_key=True),
    "8b": dict(family="minicpm", H=4096, I=16384, layers=32, nh=32, nkv=2, hd=128, V=73448,
               tied=False, head_dim_key=False),
}

# Layer count written into the configs: the layout test does not need 32 layers.
REDUCED_LAYERS = 3


def write_size_configs():
    folder = os.path.join(OUT, "configs")
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    expected = {}
    for size, p in SIZES.items():
        cfg = {
            "architectures": ["MiniCPMForCausalLM" if p["family"] == "minicpm"
                              else "LlamaForCausalLM"],
            "model_type": p["family"],
            "hidden_size": p["H"],
            "intermediate_size": p["I"],
            "num_hidden_layers": REDUCED_LAYERS,
            "num_attention_heads": p["nh"],
            "num_key_value_heads": p["nkv"],
            "vocab_size": p["V"],
            "max_position_embeddings": 32768,
        }
        if p["head_dim_key"]:
            cfg["head_dim"] = p["hd"]
        # 0.5B leaves the key out and relies on the MiniCPM default (tied).
        if not (p["family"] == "minicpm" and p["tied"]):
            cfg["tie_word_embeddings"] = p["tied"]
        fixturelib.write_json(os.path.join(folder, "bitcpm-%s.json" % size), cfg)

        q, kv = p["nh"] * p["hd"], p["nkv"] * p["hd"]
        shapes = {"model.embed_tokens.weight": [p["V"], p["H"]],
                  "model.norm.weight": [p["H"]],
                  "lm_head.weight": [p["V"], p["H"]]}
        per_layer = {
            "input_layernorm.weight": [p["H"]],
            "self_attn.q_proj.weight": [q, p["H"]],
            "self_attn.k_proj.weight": [kv, p["H"]],
            "self_attn.v_proj.weight": [kv, p["H"]],
            "self_attn.o_proj.weight": [p["H"], q],
            "post_attention_layernorm.weight": [p["H"]],
            "mlp.gate_proj.weight": [p["I"], p["H"]],
            "mlp.up_proj.weight": [p["I"], p["H"]],
            "mlp.down_proj.weight": [p["H"], p["I"]],
        }
        for layer in range(REDUCED_LAYERS):
            for suffix, shape in per_layer.items():
                shapes["model.layers.%d.%s" % (layer, suffix)] = shape
        expected[size] = dict(config="bitcpm-%s.json" % size, family=p["family"],
                              tied=p["tied"], layers=REDUCED_LAYERS,
                              full_layers=p["layers"], shapes=shapes)
    fixturelib.write_json(os.path.join(folder, "expected.json"), expected)


# ---------------------------------------------------------------- main


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", action="append", choices=sorted(ADDED),
                        help="write only this added checkpoint (repeatable)")
    args = parser.parse_args()
    os.makedirs(OUT, exist_ok=True)
    if args.only:
        for name in args.only:
            ADDED[name]()
        return
    for write in ADDED.values():
        write()
    good = []
    for k, family in enumerate(["minicpm", "llama"]):
        for j, stage in enumerate(["pseudo", "latent"]):
            sd = build_model(family, stage, 10 * k + j + 1)
            for fmt in ["zip", "legacy", "safetensors", "sharded"]:
                name = "%s-%s-%s" % (family, stage, fmt)
                good.append(dict(name=name, path=write_model(name, CONFIGS[family], sd, fmt),
                                 family=family, stage=stage, format=fmt, config=True))

    # Without a config the layer count comes from the names.
    sd = build_model("minicpm", "pseudo", 201)
    good.append(dict(name="noconfig-pseudo", family="minicpm", stage="pseudo", format="zip",
                     config=False,
                     path=write_model("noconfig-pseudo", None, sd, "zip", with_config=False)))

    # Training arguments saved beside the weights, as Megatron-LM does: a global the rules allow.
    sd = build_model("llama", "pseudo", 204)
    sd["args"] = argparse.Namespace(lr=0.001, seed=1234, tensor_model_parallel_size=1)
    good.append(dict(name="allowed-namespace", family="llama", stage="pseudo", format="zip",
                     config=True, path=write_model("allowed-namespace", CONFIGS["llama"], sd,
                                                   "zip")))

    # A latent model with zero-initialised output projections: zeros fit either stage.
    sd = build_model("llama", "latent", 207)
    for k in [k for k in sd if k.endswith("o_proj.weight")]:
        sd[k] = torch.zeros_like(sd[k])
    good.append(dict(name="latent-zero-o-proj", family="llama", stage="latent", format="zip",
                     config=True, path=write_model("latent-zero-o-proj", CONFIGS["llama"], sd,
                                                   "zip")))

    defects = plant_defects()

    sd = build_model("minicpm", "pseudo", 202)
    for k in [k for k in sd if k.startswith("model.layers.1.")]:
        del sd[k]
    sd3 = build_model("minicpm", "pseudo", 203)
    for k in [k for k in sd3 if k.startswith("model.layers.1.")]:
        sd[k.replace("layers.1.", "layers.2.")] = sd3[k]
    defects.append(dict(name="noconfig-missing-layer", rule="layout.missing", severity="error",
                        tensor="model.layers.1", row=None, column=None,
                        path=write_model("noconfig-missing-layer", None, sd, "zip",
                                         with_config=False)))

    # A name with a huge layer index and no config: the layer count must not follow it blindly.
    sd = build_model("minicpm", "pseudo", 205)
    sd["model.layers.999999.input_layernorm.weight"] = torch.ones(64, dtype=torch.bfloat16)
    write_model("noconfig-huge-layer-index", None, sd, "zip", with_config=False)

    # A view whose stride of 0 makes 2^40 elements of one stored value (torch.save keeps it).
    sd = build_model("minicpm", "pseudo", 206)
    sd["model.layers.0.input_layernorm.weight"] = torch.ones(1, dtype=torch.bfloat16).expand(2 ** 40)
    write_model("hostile-broadcast", CONFIGS["minicpm"], sd, "zip")

    sd = build_model("llama", "gaussian", 301)
    gaussian = write_model("gaussian-f32", CONFIGS["llama"], sd, "zip")

    stages = [
        dict(name="latent-asserted-pseudo", path="llama-latent-zip/pytorch_model.bin",
             stage="pseudo", rule="stage.mismatch", detected="latent"),
        dict(name="pseudo-asserted-latent", path="minicpm-pseudo-zip/pytorch_model.bin",
             stage="latent", rule="stage.mismatch", detected="pseudo"),
        dict(name="gaussian-asserted-pseudo", path=gaussian, stage="pseudo",
             rule="stage.mismatch", detected="latent"),
    ]
    write_size_configs()
    fixturelib.write_json(os.path.join(OUT, "expectations.json"),
                          dict(good=good, defects=defects, stages=stages))


if __name__ == "__main__":
    main()
