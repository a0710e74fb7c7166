#!/usr/bin/python3
"""Write the small valid checkpoints under fixtures/good/ with real torch.save.

Run from anywhere: `tools/gen_fixtures.py [--out DIR]` (default: fixtures/good
next to this script's folder). Needs Debian's python3-torch (PyTorch 1.13).

Beside each fixture F it writes F.expected.json with what PyTorch reports
after torch.load(F). For every tensor that is its name (with a "module."
prefix removed, as bitcpm-ls lists it), the stored name, the dtype in
safetensors naming, shape, stride and storage offset. It also records the
float64 sum (t.double().sum(), for bool the number of True values), the sum
of absolute values, and the names of the other tensors on the same storage.
The file offset of each tensor's first element comes from Python's zipfile
and pickle modules reading the written file (see fixturelib.py).

A fixture F that is a shard index or a model folder gets its expected.json
beside that index or folder. Tensor values come from fixed seeds. The zip
files are byte-identical between runs. The legacy files are not: PyTorch
names legacy storages after their memory addresses. Their values, names and
layout still are identical between runs.
"""

import argparse
import collections
import json
import os
import shutil
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixturelib  # noqa: E402

SEED = 20260101
GENERATOR = "tools/gen_fixtures.py"


# ------------------------------------------------------------------ tensors


def dtype_tensors():
    """One small tensor per dtype the catalog supports."""
    return collections.OrderedDict(
        [
            ("weight_bf16", torch.randn(4, 8).to(torch.bfloat16)),
            ("weight_f16", torch.randn(3, 5).to(torch.float16)),
            ("weight_f32", torch.randn(2, 3, 4)),
            ("weight_f64", torch.randn(7, dtype=torch.float64)),
            ("ids_i64", torch.randint(-1000, 1000, (4, 4), dtype=torch.int64)),
            ("ids_i32", torch.randint(-(2**20), 2**20, (6,), dtype=torch.int32)),
            ("ids_i16", torch.randint(-30000, 30000, (5,), dtype=torch.int16)),
            ("codes_i8", torch.randint(-128, 128, (3, 3), dtype=torch.int8)),
            ("bytes_u8", torch.randint(0, 256, (10,), dtype=torch.uint8)),
            ("mask_bool", torch.randint(0, 2, (2, 5)).to(torch.bool)),
        ]
    )


def ternary(rows, columns):
    """A pseudo-quantized bf16 weight: codes in {-1, 0, 1} times a per-row scale."""
    codes = torch.randint(-1, 2, (rows, columns)).to(torch.float32)
    scale = torch.rand(rows, 1) * 0.05 + 0.01
    return (codes * scale).to(torch.bfloat16)


# The tiny Llama-shaped model of the multi-file fixtures and the model folder.
TINY = dict(vocab=64, hidden=16, intermediate=48, layers=2, heads=2, kv_heads=1, head_dim=8)


def tiny_llama_state(with_lm_head=True):
    """State dict of a 2-layer Llama with the tensor names of the BitCPM models."""
    h, i, hd = TINY["hidden"], TINY["intermediate"], TINY["head_dim"]
    q_out, kv_out = TINY["heads"] * hd, TINY["kv_heads"] * hd
    state = collections.OrderedDict()
    state["model.embed_tokens.weight"] = (torch.randn(TINY["vocab"], h) * 0.02).to(torch.bfloat16)
    for layer in range(TINY["layers"]):
        p = f"model.layers.{layer}."
        state[p + "input_layernorm.weight"] = torch.ones(h, dtype=torch.bfloat16)
        state[p + "self_attn.q_proj.weight"] = ternary(q_out, h)
        state[p + "self_attn.k_proj.weight"] = ternary(kv_out, h)
        state[p + "self_attn.v_proj.weight"] = ternary(kv_out, h)
        state[p + "self_attn.o_proj.weight"] = ternary(h, q_out)
        state[p + "post_attention_layernorm.weight"] = torch.ones(h, dtype=torch.bfloat16)
        state[p + "mlp.gate_proj.weight"] = ternary(i, h)
        state[p + "mlp.up_proj.weight"] = ternary(i, h)
        state[p + "mlp.down_proj.weight"] = ternary(h, i)
    state["model.norm.weight"] = torch.ones(h, dtype=torch.bfloat16)
    if with_lm_head:
        state["lm_head.weight"] = (torch.randn(TINY["vocab"], h) * 0.02).to(torch.bfloat16)
    return state


class RMSNorm(torch.nn.Module):
    def __init__(self, size):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(size))


class TiedModel(torch.nn.Module):
    """A module tree whose state_dict() names match the Llama layout.

    Saving state_dict() of a real module gives the OrderedDict with its
    _metadata attribute (a BUILD in the pickle), and the tied lm_head.weight
    is the same Parameter as model.embed_tokens.weight.
    """

    def __init__(self):
        super().__init__()
        h, hd = TINY["hidden"], TINY["head_dim"]
        self.model = torch.nn.Module()
        self.model.embed_tokens = torch.nn.Embedding(TINY["vocab"], h)
        self.model.layers = torch.nn.ModuleList()
        for _ in range(TINY["layers"]):
            layer = torch.nn.Module()
            layer.input_layernorm = RMSNorm(h)
            layer.self_attn = torch.nn.Module()
            for proj, (out, inp) in {
                "q_proj": (TINY["heads"] * hd, h),
                "k_proj": (TINY["kv_heads"] * hd, h),
                "v_proj": (TINY["kv_heads"] * hd, h),
                "o_proj": (h, TINY["heads"] * hd),
            }.items():
                setattr(layer.self_attn, proj, torch.nn.Linear(inp, out, bias=False))
            layer.post_attention_layernorm = RMSNorm(h)
            layer.mlp = torch.nn.Module()
            for proj, (out, inp) in {
                "gate_proj": (TINY["intermediate"], h),
                "up_proj": (TINY["intermediate"], h),
                "down_proj": (h, TINY["intermediate"]),
            }.items():
                setattr(layer.mlp, proj, torch.nn.Linear(inp, out, bias=False))
            self.model.layers.append(layer)
        self.model.norm = RMSNorm(h)
        self.lm_head = torch.nn.Linear(h, TINY["vocab"], bias=False)
        self.lm_head.weight = self.model.embed_tokens.weight


def tied_state():
    model = TiedModel().to(torch.bfloat16)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Linear) and name != "lm_head":
                module.weight.copy_(ternary(*module.weight.shape))
    return model.state_dict()


def view_tensors(dtype):
    """Views that keep their storage offsets and strides through torch.save."""
    base = (torch.arange(8 * 16, dtype=torch.float64).reshape(8, 16) * 0.25 - 3.0).to(dtype)
    unsaved = torch.randn(100).to(dtype)
    return collections.OrderedDict(
        [
            ("base", base),
            ("transposed", base.t()),
            ("rows_2_to_5", base[2:5]),
            ("every_third_column", base[:, ::3]),
            ("column_7", base[:, 7]),
            ("block", base[1:4, 2:10:2]),
            ("expanded", torch.randn(4, 1).to(dtype).expand(4, 6)),
            # The base of this slice is not in the dict, but torch.save writes
            # its whole storage and the slice keeps offset 40.
            ("slice_of_unsaved", unsaved[40:60]),
        ]
    )


def shape_tensors():
    return collections.OrderedDict(
        [
            ("scalar", torch.tensor(3.5)),
            ("empty", torch.empty(0)),
            ("zero_middle", torch.empty(2, 0, 3)),
            # ZeRO-3 runs have saved every parameter with shape [0].
            ("zero3_bf16", torch.empty(0, dtype=torch.bfloat16)),
            ("four_dims", torch.randn(2, 3, 2, 2)),
            ("parameter", torch.nn.Parameter(torch.randn(3, 3), requires_grad=False)),
            ("parameter_grad", torch.nn.Parameter(torch.randn(5))),
        ]
    )


# ----------------------------------------------------------- expected files


def strip_module(name):
    return name[len("module."):] if name.startswith("module.") else name


def describe_torch_file(path, file_label, nested_key=None):
    """Describe every tensor of a torch.save file, reading it back with torch.load."""
    loaded = torch.load(path)
    is_zip = open(path, "rb").read(2) == b"PK"
    layout, storage_offsets = (
        fixturelib.torch_zip_layout(path) if is_zip else fixturelib.torch_legacy_layout(path)
    )
    state = loaded[nested_key] if nested_key else loaded
    layout_state = layout[nested_key] if nested_key else layout

    descriptions, identities = [], []
    for stored, t in state.items():
        if not torch.is_tensor(t):
            continue
        ref = layout_state[stored]
        # The pickle and torch.load must agree, or the layout reader is wrong.
        assert ref.offset == t.storage_offset(), stored
        assert ref.size == tuple(t.shape), stored
        assert ref.stride == t.stride(), stored
        byte_offset = storage_offsets[ref.storage.key] + ref.offset * t.element_size()
        descriptions.append(
            fixturelib.describe_tensor(strip_module(stored), stored, t, file_label, byte_offset)
        )
        identities.append((file_label, fixturelib.storage_identity(t)))
    return descriptions, identities


def describe_safetensors_file(path, file_label, tensors):
    offsets = fixturelib.safetensors_byte_offsets(path)
    descriptions, identities = [], []
    for name, t in tensors.items():
        t = t.contiguous()
        descriptions.append(fixturelib.describe_tensor(name, name, t, file_label, offsets[name]))
        identities.append((file_label, name))
    return descriptions, identities


def write_expected(fixture, fmt, parts, files, nested_key=None, config=None):
    descriptions, identities = [], []
    for d, i in parts:
        descriptions += d
        identities += i
    fixturelib.fill_sharing(descriptions, identities)
    stripped = sum(1 for d in descriptions if d["name"] != d["stored_name"])
    expected = collections.OrderedDict(
        generator=GENERATOR,
        torch_version=torch.__version__,
        format=fmt,
        files=files,
        config=config,
        nested_key=nested_key,
        stripped_prefix="module." if stripped else None,
        stripped_count=stripped,
        tensors=descriptions,
    )
    fixturelib.write_json(fixture + ".expected.json", expected)


# ---------------------------------------------------------------- fixtures


def save_torch(out, rel, obj, legacy=False, nested_key=None):
    path = os.path.join(out, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    torch.save(obj, path, _use_new_zipfile_serialization=not legacy)
    label = os.path.basename(rel)
    write_expected(
        path,
        "torch-legacy" if legacy else "torch-zip",
        [describe_torch_file(path, label, nested_key)],
        [label],
        nested_key=nested_key,
    )


def deepspeed_checkpoint():
    """The dict DeepSpeed writes as global_stepN/mp_rank_00_model_states.pt."""
    weights = collections.OrderedDict(
        ("module." + name, t) for name, t in tiny_llama_state().items() if ".layers.1." not in name
    )
    return {
        "module": weights,
        "buffer_names": [],
        "optimizer": None,
        "param_shapes": [collections.OrderedDict((n, t.shape) for n, t in weights.items())],
        "lr_scheduler": None,
        "sparse_tensor_module_names": set(),
        "skipped_steps": 0,
        "global_steps": 5,
        "global_samples": 40,
        "dp_world_size": 1,
        "mp_world_size": 1,
        "ds_config": {"train_batch_size": 8, "bf16": {"enabled": True}},
        "ds_version": "0.9.5",
    }


def lightning_checkpoint():
    """A PyTorch Lightning checkpoint: weights under "state_dict", no prefix to strip."""
    weights = collections.OrderedDict(
        [("model.linear.weight", torch.randn(4, 3)), ("model.linear.bias", torch.randn(4))]
    )
    return {
        "epoch": 3,
        "global_step": 120,
        "pytorch-lightning_version": "1.9.0",
        "state_dict": weights,
        "loops": None,
        "callbacks": {},
        "optimizer_states": [],
        "lr_schedulers": [],
    }


def split_shards(state):
    """Layer 0 and the embedding in shard 1, the rest in shard 2."""
    first, second = collections.OrderedDict(), collections.OrderedDict()
    for name, t in state.items():
        (first if ".layers.0." in name or "embed_tokens" in name else second)[name] = t
    return [first, second]


def write_index(path, shards, names):
    total = sum(t.numel() * t.element_size() for shard in shards for t in shard.values())
    weight_map = collections.OrderedDict()
    for shard, name in zip(shards, names):
        for tensor_name in shard:
            weight_map[tensor_name] = name
    fixturelib.write_json(path, {"metadata": {"total_size": total}, "weight_map": weight_map})


def sharded_safetensors(out):
    folder = os.path.join(out, "sharded-safetensors")
    os.makedirs(folder, exist_ok=True)
    shards = split_shards(tiny_llama_state())
    names = [f"model-0000{k + 1}-of-00002.safetensors" for k in range(2)]
    parts = []
    for shard, name in zip(shards, names):
        fixturelib.write_safetensors(os.path.join(folder, name), shard)
        parts.append(describe_safetensors_file(os.path.join(folder, name), name, shard))
    index = os.path.join(folder, "model.safetensors.index.json")
    write_index(index, shards, names)
    write_expected(index, "safetensors", parts, names)


def sharded_bin(out):
    folder = os.path.join(out, "sharded-bin")
    os.makedirs(folder, exist_ok=True)
    shards = split_shards(tiny_llama_state())
    names = [f"pytorch_model-0000{k + 1}-of-00002.bin" for k in range(2)]
    parts = []
    for shard, name in zip(shards, names):
        path = os.path.join(folder, name)
        torch.save(shard, path)
        parts.append(describe_torch_file(path, name))
    index = os.path.join(folder, "pytorch_model.bin.index.json")
    write_index(index, shards, names)
    write_expected(index, "torch-zip", parts, names)


def model_dir(out):
    folder = os.path.join(out, "model-dir")
    os.makedirs(folder, exist_ok=True)
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": TINY["hidden"],
        "intermediate_size": TINY["intermediate"],
        "num_hidden_layers": TINY["layers"],
        "num_attention_heads": TINY["heads"],
        "num_key_value_heads": TINY["kv_heads"],
        "head_dim": TINY["head_dim"],
        "vocab_size": TINY["vocab"],
        "rms_norm_eps": 1e-05,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
    }
    fixturelib.write_json(os.path.join(folder, "config.json"), config)
    state = tiny_llama_state()
    weights = os.path.join(folder, "model.safetensors")
    fixturelib.write_safetensors(weights, state)
    write_expected(
        folder,
        "safetensors",
        [describe_safetensors_file(weights, "model.safetensors", state)],
        ["model.safetensors"],
        config="config.json",
    )


def single_safetensors(out):
    tensors = dtype_tensors()
    tensors.update(tiny_llama_state())
    path = os.path.join(out, "single.safetensors")
    fixturelib.write_safetensors(path, tensors)
    write_expected(
        path,
        "safetensors",
        [describe_safetensors_file(path, "single.safetensors", tensors)],
        ["single.safetensors"],
    )


def main():
    default_out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "good")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=default_out, help="output folder (default: %(default)s)")
    args = parser.parse_args()
    out = os.path.normpath(args.out)

    # Start from an empty folder so that a renamed fixture leaves no stale file.
    if os.path.isdir(out):
        shutil.rmtree(out)
    os.makedirs(out)

    # Each fixture reseeds, so adding one does not change the others.
    steps = [
        lambda: save_torch(out, "torch-zip-dtypes.pt", dtype_tensors()),
        lambda: save_torch(out, "torch-legacy-dtypes.pt", dtype_tensors(), legacy=True),
        lambda: save_torch(out, "torch-zip-tied.pt", tied_state()),
        lambda: save_torch(out, "torch-zip-views.pt", view_tensors(torch.float32)),
        lambda: save_torch(out, "torch-zip-views-bf16.pt", view_tensors(torch.bfloat16)),
        lambda: save_torch(out, "torch-legacy-views.pt", view_tensors(torch.float32), legacy=True),
        lambda: save_torch(out, "torch-zip-shapes.pt", shape_tensors()),
        lambda: save_torch(out, "mp_rank_00_model_states.pt", deepspeed_checkpoint(),
                           nested_key="module"),
        lambda: save_torch(out, "lightning.ckpt", lightning_checkpoint(),
                           nested_key="state_dict"),
        lambda: single_safetensors(out),
        lambda: sharded_safetensors(out),
        lambda: sharded_bin(out),
        lambda: model_dir(out),
    ]
    for number, step in enumerate(steps):
        torch.manual_seed(SEED + number)
        step()

    total = sum(
        os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(out) for f in files
    )
    print(f"wrote {len(steps)} fixtures to {out} ({total} bytes)")


if __name__ == "__main__":
    main()
