#!/usr/bin/python3
"""Write the safetensors fixtures: good files from PyTorch tensors, and hostile ones.

Good fixtures (need Debian's python3-torch) go to fixtures/safetensors/:
  single.safetensors      one file with every dtype PyTorch 1.13 can hold
  sharded/                config.json, model.safetensors.index.json and two shards
  model_single/           config.json and model.safetensors
  prefer_safetensors/     model.safetensors beside an unreadable pytorch_model.bin
  manifest.json           what PyTorch reports for each tensor: dtype, shape,
                          strides, data_offsets, byte_offset and a float64 sum

Hostile fixtures (plain Python, no torch) go to fixtures/hostile/safetensors/,
each breaking one rule of the format, with expected.json listing for each the
status the reader must return and words its message must contain.

Usage: tools/gen_hostile_safetensors.py [--hostile-only]
Output is deterministic: fixed seeds, sorted keys, no timestamps.
"""

import json
import os
import shutil
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOOD_DIR = os.path.join(ROOT, "fixtures", "safetensors")
HOSTILE_DIR = os.path.join(ROOT, "fixtures", "hostile", "safetensors")

# The reference writer (huggingface/safetensors, safetensors/src/tensor.rs,
# fn prepare) sorts tensors by its Dtype enum in descending order, then by
# name, and that enum is declared in this order. F8 types are left out
# because PyTorch 1.13 has none.
DTYPE_ORDER = ["BOOL", "U8", "I8", "I16", "U16", "F16", "BF16", "I32", "U32",
               "F32", "F64", "I64", "U64"]


def header_bytes(header):
    """Serialize a header as the reference does: compact JSON padded with spaces to 8 bytes."""
    text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return text + b" " * ((8 - len(text) % 8) % 8)


def write_safetensors(path, tensors, metadata=None):
    """Write {name: (dtype, shape, raw bytes)} in the reference writer's layout.

    Returns {name: (begin, end, byte_offset)} for the manifest.
    """
    order = sorted(tensors, key=lambda n: (-DTYPE_ORDER.index(tensors[n][0]), n))
    header = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    offset = 0
    for name in order:
        dtype, shape, raw = tensors[name]
        header[name] = {"dtype": dtype, "shape": list(shape),
                        "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    head = header_bytes(header)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for name in order:
            f.write(tensors[name][2])
    start = 8 + len(head)
    return {name: (header[name]["data_offsets"][0], header[name]["data_offsets"][1],
                   start + header[name]["data_offsets"][0]) for name in order}


def write_raw(path, header_text, data=b"", length=None):
    """Write a hand-made file: a header length (default: the text's), the text, then data."""
    head = header_text.encode("utf-8")
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head) if length is None else length))
        f.write(head)
        f.write(data)
    return 8 + len(head) + len(data)


# ---------------------------------------------------------------- good fixtures

def torch_tensors(spec):
    """Turn {name: torch tensor} into the writer's input and the manifest's facts."""
    import torch

    names = {torch.bool: "BOOL", torch.uint8: "U8", torch.int8: "I8", torch.int16: "I16",
             torch.int32: "I32", torch.int64: "I64", torch.float16: "F16",
             torch.bfloat16: "BF16", torch.float32: "F32", torch.float64: "F64"}
    out, facts = {}, {}
    for name, t in spec.items():
        t = t.contiguous()
        # numpy has no bfloat16: take the same bytes through int16.
        raw = (t.view(torch.int16) if t.dtype == torch.bfloat16 else t).numpy().tobytes()
        assert len(raw) == t.numel() * t.element_size()
        out[name] = (names[t.dtype], list(t.shape), raw)
        facts[name] = {"dtype": names[t.dtype], "shape": list(t.shape),
                       "strides": list(t.stride()), "nbytes": t.numel() * t.element_size(),
                       "sum": t.double().sum().item()}
    return out, facts


def manifest_entry(facts, layout, metadata=None):
    tensors = []
    for name in sorted(facts):
        begin, end, byte_offset = layout[name]
        entry = dict(facts[name])
        entry.update({"name": name, "data_offsets": [begin, end], "byte_offset": byte_offset})
        tensors.append(entry)
    return {"metadata": metadata, "tensors": tensors}


def tiny_llama(torch, generator):
    """Return a two-layer Llama-shaped state dict: hidden 8, intermediate 16, vocab 32."""
    sd = {}
    bf16 = torch.bfloat16
    sd["model.embed_tokens.weight"] = torch.randn(32, 8, generator=generator).to(bf16)
    for i in range(2):
        p = "model.layers.%d." % i
        for proj, shape in (("q_proj", (8, 8)), ("k_proj", (4, 8)), ("v_proj", (4, 8)),
                            ("o_proj", (8, 8))):
            sd[p + "self_attn." + proj + ".weight"] = (
                torch.randn(*shape, generator=generator) * 0.02).to(bf16)
        for proj, shape in (("gate_proj", (16, 8)), ("up_proj", (16, 8)),
                            ("down_proj", (8, 16))):
            sd[p + "mlp." + proj + ".weight"] = (
                torch.randn(*shape, generator=generator) * 0.02).to(bf16)
        sd[p + "input_layernorm.weight"] = torch.ones(8, dtype=bf16)
        sd[p + "post_attention_layernorm.weight"] = torch.ones(8, dtype=bf16)
    sd["model.norm.weight"] = torch.ones(8, dtype=bf16)
    sd["lm_head.weight"] = torch.randn(32, 8, generator=generator).to(bf16)
    return sd


TINY_CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
               "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2,
               "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": 32,
               "tie_word_embeddings": False, "torch_dtype": "bfloat16"}


def write_json(path, value):
    with open(path, "w") as f:
        json.dump(value, f, indent=2, sort_keys=True)
        f.write("\n")


def generate_good():
    import torch

    g = torch.Generator().manual_seed(20260412)
    if os.path.isdir(GOOD_DIR):
        shutil.rmtree(GOOD_DIR)
    os.makedirs(GOOD_DIR)
    manifest = {}

    # One file with every dtype PyTorch 1.13 has, a scalar and an empty tensor.
    spec = {
        "bf16": torch.randn(3, 5, generator=g).to(torch.bfloat16),
        "f16": torch.randn(2, 3, generator=g).to(torch.float16),
        "f32": torch.randn(4, 2, 3, generator=g),
        "f64": torch.randn(3, generator=g).double(),
        "i64": torch.randint(-2**40, 2**40, (5,), generator=g),
        "i32": torch.randint(-2**30, 2**30, (2, 2), generator=g, dtype=torch.int32),
        "i16": torch.randint(-2**15, 2**15, (4,), generator=g, dtype=torch.int16),
        "i8": torch.randint(-128, 128, (7,), generator=g, dtype=torch.int8),
        "u8": torch.randint(0, 256, (3, 3), generator=g, dtype=torch.uint8),
        "bool": torch.randint(0, 2, (2, 3), generator=g) > 0,
        "scalar": torch.tensor(2.5),
        "empty": torch.zeros(0, 3),
        "empty_columns": torch.zeros(3, 0),
    }
    metadata = {"format": "pt"}
    tensors, facts = torch_tensors(spec)
    layout = write_safetensors(os.path.join(GOOD_DIR, "single.safetensors"), tensors, metadata)
    manifest["single.safetensors"] = manifest_entry(facts, layout, metadata)

    # A two-shard set as save_pretrained writes it, also used as a model folder.
    sd = tiny_llama(torch, g)
    names = list(sd)
    shards = {"model-00001-of-00002.safetensors": names[:len(names) // 2],
              "model-00002-of-00002.safetensors": names[len(names) // 2:]}
    sharded = os.path.join(GOOD_DIR, "sharded")
    os.makedirs(sharded)
    weight_map, total_size = {}, 0
    for shard, shard_names in shards.items():
        tensors, facts = torch_tensors({n: sd[n] for n in shard_names})
        layout = write_safetensors(os.path.join(sharded, shard), tensors, metadata)
        manifest["sharded/" + shard] = manifest_entry(facts, layout, metadata)
        for n in shard_names:
            weight_map[n] = shard
            total_size += facts[n]["nbytes"]
    write_json(os.path.join(sharded, "model.safetensors.index.json"),
               {"metadata": {"total_size": total_size}, "weight_map": weight_map})
    write_json(os.path.join(sharded, "config.json"), TINY_CONFIG)
    manifest["sharded/model.safetensors.index.json"] = {"total_size": total_size}

    # A model folder with one model.safetensors.
    single_dir = os.path.join(GOOD_DIR, "model_single")
    os.makedirs(single_dir)
    tensors, facts = torch_tensors(sd)
    layout = write_safetensors(os.path.join(single_dir, "model.safetensors"), tensors, metadata)
    manifest["model_single/model.safetensors"] = manifest_entry(facts, layout, metadata)
    write_json(os.path.join(single_dir, "config.json"), TINY_CONFIG)

    # model.safetensors comes before pytorch_model.bin, so this .bin is never read.
    prefer_dir = os.path.join(GOOD_DIR, "prefer_safetensors")
    os.makedirs(prefer_dir)
    shutil.copy(os.path.join(single_dir, "model.safetensors"), prefer_dir)
    with open(os.path.join(prefer_dir, "pytorch_model.bin"), "wb") as f:
        f.write(b"not a checkpoint: the reader must prefer model.safetensors\n")

    write_json(os.path.join(GOOD_DIR, "manifest.json"), manifest)


# ------------------------------------------------------------- hostile fixtures

def f32_bytes(values):
    return struct.pack("<%df" % len(values), *values)


def entry(dtype, shape, begin, end):
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def padded(header):
    return header_bytes(header).decode("utf-8")


def generate_hostile():
    if os.path.isdir(HOSTILE_DIR):
        shutil.rmtree(HOSTILE_DIR)
    os.makedirs(HOSTILE_DIR)
    cases = []

    def case(path, status, words, entry_name=""):
        cases.append({"path": path, "status": status, "entry": entry_name, "words": words})

    def at(name):
        return os.path.join(HOSTILE_DIR, name)

    # The header length claims 1000 bytes; the file ends long before.
    size = write_raw(at("header_past_end.safetensors"), '{"a":', b"", length=1000)
    case("header_past_end.safetensors", "corrupt",
         ["header length 1000", "runs past the end of the file", "size %d" % size])

    # One byte above the reference reader's 100,000,000-byte cap.
    write_raw(at("header_too_large.safetensors"), "{}      ", length=100000001)
    case("header_too_large.safetensors", "limit",
         ["header length 100000001", "maximum of 100000000"])

    # The closing brace is missing.
    write_raw(at("invalid_json.safetensors"),
              '{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}  ', f32_bytes([1.0]))
    case("invalid_json.safetensors", "corrupt", ["invalid JSON", "safetensors header"])

    # b starts inside a.
    write_raw(at("overlap.safetensors"),
              padded({"a": entry("F32", [4], 0, 16), "b": entry("F32", [4], 8, 24)}),
              f32_bytes([0.0] * 6))
    case("overlap.safetensors", "corrupt",
         ["data_offsets [8, 24)", "overlap tensor 'a'", "[0, 16)", "expected begin 16"], "b")

    # Two tensors over the same bytes.
    write_raw(at("alias.safetensors"),
              padded({"a": entry("F32", [4], 0, 16), "b": entry("F32", [4], 0, 16)}),
              f32_bytes([0.0] * 4))
    case("alias.safetensors", "corrupt",
         ["data_offsets [0, 16)", "alias tensor 'a'"], "b")

    # Four unused bytes between a and b.
    write_raw(at("gap.safetensors"),
              padded({"a": entry("F32", [4], 0, 16), "b": entry("F32", [4], 20, 36)}),
              f32_bytes([0.0] * 9))
    case("gap.safetensors", "corrupt",
         ["gap before this tensor", "begin at 16", "end of 'a'", "found 20"], "b")

    # Six F32 elements need 24 bytes; the offsets give 20.
    write_raw(at("byte_length.safetensors"),
              padded({"w": entry("F32", [2, 3], 0, 20)}), f32_bytes([0.0] * 5))
    case("byte_length.safetensors", "corrupt",
         ["expected 24 bytes", "shape [2, 3] of F32", "[0, 20)", "holding 20 bytes"], "w")

    # 2^31 * 2^31 elements fit in 64 bits; times 4 bytes they do not.
    write_raw(at("shape_overflow.safetensors"),
              padded({"w": entry("F32", [2147483648, 2147483648], 0, 0)}))
    case("shape_overflow.safetensors", "corrupt",
         ["shape [2147483648, 2147483648] of F32", "overflows 64 bits"], "w")

    # Four bytes after the last tensor.
    head = padded({"a": entry("F32", [4], 0, 16)})
    size = write_raw(at("trailing_bytes.safetensors"), head, f32_bytes([0.0] * 5))
    case("trailing_bytes.safetensors", "corrupt",
         ["4 trailing bytes", "end at byte %d" % (size - 4), "found %d bytes" % size])

    # The tensors need more bytes than the file has.
    head = padded({"a": entry("F32", [4], 0, 16)})
    write_raw(at("past_end.safetensors"), head, f32_bytes([0.0] * 2))
    case("past_end.safetensors", "corrupt",
         ["end at 16", "past the end of the data buffer", "has 8 bytes after the header"], "a")

    # The same name twice; json.dumps cannot write that, so the text is built by hand.
    one = '"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}'
    two = '"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}'
    write_raw(at("duplicate_name.safetensors"), "{%s,%s}" % (one, two), f32_bytes([1.0, 2.0]))
    case("duplicate_name.safetensors", "corrupt", ["key 'a' appears twice"], "a")

    # An FP8 dtype: valid safetensors, not handled by this reader.
    write_raw(at("unknown_dtype.safetensors"),
              padded({"w": entry("F8_E4M3", [4], 0, 4)}), b"\0" * 4)
    case("unknown_dtype.safetensors", "unsupported",
         ["unsupported dtype F8_E4M3", "BF16"], "w")

    # __metadata__ must map strings to strings.
    write_raw(at("metadata_not_string.safetensors"),
              padded({"__metadata__": {"step": 100}, "a": entry("F32", [1], 0, 4)}),
              f32_bytes([1.0]))
    case("metadata_not_string.safetensors", "corrupt",
         ["expected string values", "an integer", "key 'step'"], "__metadata__")

    # Shard sets. Each folder gets its own small shards.
    def shard(folder, name, tensors):
        os.makedirs(at(folder), exist_ok=True)
        header, data, offset = {}, b"", 0
        for tname, values in tensors.items():
            header[tname] = entry("F32", [len(values)], offset, offset + 4 * len(values))
            data += f32_bytes(values)
            offset += 4 * len(values)
        write_raw(os.path.join(at(folder), name), padded(header), data)

    def index(folder, weight_map, total_size=None):
        doc = {"weight_map": weight_map}
        if total_size is not None:
            doc["metadata"] = {"total_size": total_size}
        write_json(os.path.join(at(folder), "model.safetensors.index.json"), doc)

    s1, s2 = "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"

    # The second shard was never downloaded.
    shard("index_missing_shard", s1, {"a": [1.0, 2.0]})
    index("index_missing_shard", {"a": s1, "b": s2}, 16)
    case("index_missing_shard/model.safetensors.index.json", "not_found",
         ["index names shard " + s2, "does not exist"], s2)

    # b is in the second shard, but the weight map puts it in the first.
    shard("index_wrong_shard", s1, {"a": [1.0, 2.0]})
    shard("index_wrong_shard", s2, {"b": [3.0], "c": [4.0]})
    index("index_wrong_shard", {"a": s1, "b": s1, "c": s2}, 16)
    case("index_wrong_shard/model.safetensors.index.json", "corrupt",
         ["tensor b in shard " + s1, "but it is in shard " + s2], "b")

    # The second shard contains a tensor the weight map does not list.
    shard("index_unlisted", s1, {"a": [1.0, 2.0]})
    shard("index_unlisted", s2, {"b": [3.0], "extra": [4.0]})
    index("index_unlisted", {"a": s1, "b": s2}, 16)
    case("index_unlisted/model.safetensors.index.json", "corrupt",
         ["shard " + s2 + " contains tensor extra", "does not list"], "extra")

    # A shard path that climbs out of the folder.
    shard("index_dotdot", s1, {"a": [1.0, 2.0]})
    index("index_dotdot", {"a": s1, "b": "../alias.safetensors"})
    case("index_dotdot/model.safetensors.index.json", "corrupt",
         ["shard path '../alias.safetensors'", "without '..' components"], "b")

    # A correct set whose total_size is off by 4: readable, with a warning finding.
    shard("index_total_size", s1, {"a": [1.0, 2.0]})
    shard("index_total_size", s2, {"b": [3.0]})
    index("index_total_size", {"a": s1, "b": s2}, 16)
    case("index_total_size/model.safetensors.index.json", "ok",
         ["format.index-total-size", "total_size is 16 bytes", "expected 12"])

    # Model folders without a clear weights file.
    os.makedirs(at("dir_no_weights"))
    write_json(os.path.join(at("dir_no_weights"), "config.json"), {"model_type": "llama"})
    case("dir_no_weights", "not_found", ["no weights in folder", "dir_no_weights"])

    shard("dir_two_candidates", "a.safetensors", {"a": [1.0]})
    shard("dir_two_candidates", "b.safetensors", {"b": [2.0]})
    write_json(os.path.join(at("dir_two_candidates"), "config.json"), {"model_type": "llama"})
    case("dir_two_candidates", "usage",
         ["2 weights files", "a.safetensors, b.safetensors", "name the file"])

    write_json(os.path.join(HOSTILE_DIR, "expected.json"), cases)


def main():
    generate_hostile()
    if "--hostile-only" not in sys.argv[1:]:
        generate_good()
    return 0


if __name__ == "__main__":
    sys.exit(main())
