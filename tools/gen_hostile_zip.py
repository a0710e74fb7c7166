#!/usr/bin/python3
"""Write the torch reader's fixtures: valid checkpoints and hostile copies of them.

Valid files go to fixtures/torch/ with manifest.json, which records what
PyTorch itself reports for every tensor (dtype, shape, stride, storage offset,
storage sharing, element values and a float64 sum). Hostile files go to
fixtures/hostile/torch/; each is a valid torch.save file changed by byte
surgery, or a hand-built data.pkl, so that exactly one rule is broken.

Run with Debian's python3-torch (PyTorch 1.13): /usr/bin/python3 tools/gen_hostile_zip.py
Every output is byte-for-byte reproducible (fixed seeds, and fixed zip timestamps:
torch.save stores a zero date, the writers below a fixed one) except the two legacy
files torch.save writes, basic_legacy.pt and nested_legacy.pt: legacy storage keys
are memory addresses, so their bytes change between runs while manifest.json does not.
"""
import collections
import io
import json
import os
import pathlib
import pickle
import struct
import sys
import tempfile
import zipfile
import zlib

import torch

ROOT = pathlib.Path(__file__).resolve().parent.parent
GOOD = ROOT / "fixtures" / "torch"
HOSTILE = ROOT / "fixtures" / "hostile" / "torch"

DTYPE_NAMES = {
    torch.bfloat16: "BF16", torch.float16: "F16", torch.float32: "F32", torch.float64: "F64",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}


# ---- state dicts -------------------------------------------------------------------------

def basic_state():
    """Every dtype the reader maps, a transposed view, a slice with an offset, tied tensors."""
    g = torch.Generator().manual_seed(1234)
    base = torch.randn(4, 6, generator=g)
    embedding = torch.randn(5, 3, generator=g).to(torch.bfloat16)
    state = collections.OrderedDict()
    state["embed.weight"] = embedding
    state["lm_head.weight"] = embedding          # tied: one storage, two tensors
    state["f32.weight"] = base
    state["f32.transposed"] = base.t()           # strides (1, 6)
    state["f32.slice"] = base[1:3, 2:5]          # storage offset 8, strides (6, 1)
    state["f16.weight"] = torch.randn(3, 4, generator=g).half()
    state["f64.weight"] = torch.randn(2, 2, generator=g).double()
    state["i64.ids"] = torch.arange(-3, 7, dtype=torch.int64)
    state["i32.ids"] = torch.arange(0, 5, dtype=torch.int32)
    state["i16.ids"] = torch.arange(-2, 2, dtype=torch.int16)
    state["i8.ids"] = torch.arange(-4, 0, dtype=torch.int8)
    state["u8.ids"] = torch.arange(250, 256, dtype=torch.int32).to(torch.uint8)
    state["bool.mask"] = torch.tensor([True, False, True, True])
    state["scalar"] = torch.tensor(2.5)
    state["empty"] = torch.zeros(0, 4)
    state["param"] = torch.nn.Parameter(torch.randn(2, 2, generator=g))
    state["step"] = 7                            # not a tensor: skipped and counted
    return state


def module_state():
    """A real module's state_dict: an OrderedDict followed by a BUILD of _metadata."""
    torch.manual_seed(99)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3, bias=False), torch.nn.LayerNorm(3))
    return model.to(torch.bfloat16).state_dict()


def nested_state():
    """A DeepSpeed-style model_states file: weights under "module", optimizer beside them."""
    g = torch.Generator().manual_seed(7)
    weights = collections.OrderedDict()
    weights["module.layer.weight"] = torch.randn(3, 2, generator=g).to(torch.bfloat16)
    weights["module.norm.weight"] = torch.ones(3, dtype=torch.bfloat16)
    return {
        "module": weights,
        "optimizer": {"state": {0: {"exp_avg": torch.zeros(3, 2)}}, "param_groups": [{"lr": 0.1}]},
        "global_steps": 3,
        "ds_version": "0.9.0",
    }


def small_state():
    """Two tensors on storages '0' (a, F32 2x3) and '1' (b, BF16 of 4): the base of most hostile files."""
    g = torch.Generator().manual_seed(5)
    return collections.OrderedDict(
        [("a", torch.randn(2, 3, generator=g)), ("b", torch.randn(4, generator=g).to(torch.bfloat16))])


# ---- manifest ----------------------------------------------------------------------------

def describe(state, nested_key=None):
    """What PyTorch reports for the tensors of a loaded state dict."""
    weights = state[nested_key] if nested_key else state
    groups = {}
    tensors = []
    for name, value in weights.items():
        if not isinstance(value, torch.Tensor):
            continue
        pointer = value.storage().data_ptr()
        group = groups.setdefault(pointer, len(groups))
        values = value.detach().double().flatten().tolist()
        tensors.append({
            "name": name,
            "dtype": DTYPE_NAMES[value.dtype],
            "shape": list(value.shape),
            "stride": list(value.stride()),
            "storage_offset": value.storage_offset(),
            "storage_group": group,
            "sum": value.detach().double().sum().item(),
            "values": values,
        })
    ignored = len(state) - 1 if nested_key else len(weights) - len(tensors)
    return {"nested_key": nested_key, "ignored_entries": ignored, "tensors": tensors}


# ---- a small zip writer, to control every field --------------------------------------------

def local_header(name, data, crc, method, extra=b"", sizes=None):
    csize, usize = sizes if sizes else (len(data), len(data))
    return struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0x800, method, 0, 0x21,
                       crc, csize, usize, len(name), len(extra)) + name + extra


def write_zip(entries, zip64=False, align=64):
    """Write [(name, bytes)] stored; zip64 puts every size and offset in zip64 extra fields."""
    out = bytearray()
    central = bytearray()
    for name, data in entries:
        name = name.encode()
        crc = zlib.crc32(data)
        offset = len(out)
        if zip64:
            extra = struct.pack("<HHQQ", 1, 16, len(data), len(data))
            header = local_header(name, data, crc, 0, extra, (0xFFFFFFFF, 0xFFFFFFFF))
        else:
            header = local_header(name, data, crc, 0)
        pad = (-(offset + len(header) + 4)) % align
        header = header[:28] + struct.pack("<H", len(header) - 30 - len(name) + 4 + pad) + \
            header[30:] + struct.pack("<HH", 0x4246, pad) + b"Z" * pad  # "FB" padding, as torch
        out += header + data
        if zip64:
            cextra = struct.pack("<HHQQQ", 1, 24, len(data), len(data), offset)
            sizes = (0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF)
        else:
            cextra = b""
            sizes = (len(data), len(data), offset)
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0x800, 0, 0, 0x21, crc,
                               sizes[0], sizes[1], len(name), len(cextra), 0, 0, 0, 0,
                               sizes[2]) + name + cextra
    directory_offset = len(out)
    out += central
    end64 = len(out)
    count = len(entries)
    out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, count, count,
                       len(central), directory_offset)
    out += struct.pack("<IIQI", 0x07064B50, 0, end64, 1)
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    return bytes(out)


def read_entries(path):
    with zipfile.ZipFile(path) as archive:
        return [(info.filename, archive.read(info)) for info in archive.infolist()]


def rename_top(entries, top):
    return [(top + "/" + name.split("/", 1)[1], data) for name, data in entries]


def deflate_copy(source, target):
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            copy = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            copy.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(copy, src.read(info))


# ---- hand-built pickles ------------------------------------------------------------------

class FakeStorage:
    """Stands for a storage in a hand-built pickle; pickled as its persistent id.

    view is None or (view_key, offset, size) in elements, the sixth item of a legacy id.
    """
    def __init__(self, cls, key, numel, view=None):
        self.cls, self.key, self.numel, self.view = cls, key, numel, view


class FakeTensor:
    def __init__(self, storage, offset, size, stride):
        self.args = (storage, offset, tuple(size), tuple(stride), False, collections.OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class TorchPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, FakeStorage):
            return ("storage", obj.cls, obj.key, "cpu", obj.numel)
        return None


class LegacyPickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, FakeStorage):
            return ("storage", obj.cls, obj.key, "cpu", obj.numel, obj.view)
        return None


def hand_pickle(obj):
    buffer = io.BytesIO()
    TorchPickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def legacy_file(obj, storages):
    """A legacy torch.save file: storages is [(key, numel, raw bytes)] in data order."""
    buffer = io.BytesIO()
    pickle.dump(0x1950A86A20F9469CFC6C, buffer, protocol=2)
    pickle.dump(1001, buffer, protocol=2)
    pickle.dump({"protocol_version": 1001, "little_endian": True,
                 "type_sizes": {"short": 2, "int": 4, "long": 4}}, buffer, protocol=2)
    LegacyPickler(buffer, protocol=2).dump(obj)
    pickle.dump([key for key, _, _ in storages], buffer, protocol=2)
    for _, numel, raw in storages:
        buffer.write(struct.pack("<q", numel) + raw)
    return buffer.getvalue()


def legacy_views():
    """Storage views as PyTorch before 1.0 wrote them: windows (view_key, offset, size) into a root storage."""
    root = torch.arange(12, dtype=torch.float32) * 0.5
    whole = FakeStorage(torch.FloatStorage, "10", 12)
    window = FakeStorage(torch.FloatStorage, "10", 12, ("11", 4, 6))
    state = collections.OrderedDict([
        ("whole", FakeTensor(whole, 0, (3, 4), (4, 1))),
        ("window", FakeTensor(window, 0, (2, 3), (3, 1))),
        ("window_tail", FakeTensor(window, 1, (5,), (1,))),
    ])
    return legacy_file(state, [("10", 12, root.numpy().tobytes())])


def torch_rejects(path):
    try:
        torch.load(path)
    except Exception as error:  # PyTorch raises RuntimeError or ValueError here
        return type(error).__name__ + ": " + str(error).splitlines()[0][:120]
    return None


# ---- byte surgery on central directory records -------------------------------------------

def central_records(data):
    """Offsets of the central directory records, read with Python's zipfile."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        start = archive.start_dir
    offsets, pos = [], start
    while data[pos:pos + 4] == b"PK\x01\x02":
        offsets.append(pos)
        n, m, k = struct.unpack_from("<HHH", data, pos + 28)
        pos += 46 + n + m + k
    return offsets


def patch(data, offset, fmt, *values):
    data = bytearray(data)
    struct.pack_into(fmt, data, offset, *values)
    return bytes(data)


# ---- main --------------------------------------------------------------------------------

def save(state, path, **kwargs):
    torch.save(state, path, **kwargs)
    return path


def main():
    GOOD.mkdir(parents=True, exist_ok=True)
    HOSTILE.mkdir(parents=True, exist_ok=True)
    manifest = {}

    # Valid files, each checked by loading it back with PyTorch.
    save(basic_state(), GOOD / "basic.pt")
    save(basic_state(), GOOD / "basic_legacy.pt", _use_new_zipfile_serialization=False)
    save(module_state(), GOOD / "module.pt")
    save(nested_state(), GOOD / "nested.pt")
    save(nested_state(), GOOD / "nested_legacy.pt", _use_new_zipfile_serialization=False)
    (GOOD / "renamed_top.pt").write_bytes(
        write_zip(rename_top(read_entries(GOOD / "basic.pt"), "model-final")))
    (GOOD / "zip64.pt").write_bytes(write_zip(read_entries(GOOD / "basic.pt"), zip64=True))
    deflate_copy(GOOD / "basic.pt", GOOD / "deflated.pt")
    (GOOD / "legacy_views.pt").write_bytes(legacy_views())

    # The pickle of a sparse checkpoint over 4 GiB, which tests/torch assembles around it in the
    # build folder: tensor "big" on storage '0' (2^30 + 256 F32, 4 GiB + 1 KiB) and tensor
    # "after" on storage '1' (8 BF16 elements whose bytes are 0, 1, ..., 15), whose entry
    # therefore starts past the 4 GiB that 32-bit zip offsets reach.
    big_numel = (1 << 30) + 256
    big = FakeStorage(torch.FloatStorage, "0", big_numel)
    after = FakeStorage(torch.BFloat16Storage, "1", 8)
    (GOOD / "sparse_zip64.pkl").write_bytes(hand_pickle(collections.OrderedDict([
        ("big", FakeTensor(big, 0, (big_numel // 1024, 1024), (1024, 1))),
        ("after", FakeTensor(after, 0, (8,), (1,)))])))
    after_values = torch.frombuffer(bytearray(range(16)), dtype=torch.bfloat16)
    sparse = {"big_numel": big_numel, "after_values": after_values.double().tolist()}
    (GOOD / "sparse_zip64.json").write_text(json.dumps(sparse, indent=1) + "\n")

    nested_files = {"nested.pt", "nested_legacy.pt"}
    for path in sorted(GOOD.glob("*.pt")):
        loaded = torch.load(path)
        manifest[path.name] = describe(loaded, "module" if path.name in nested_files else None)
    (GOOD / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")

    # Hostile files. Base: small.pt, top folder "small", entries data.pkl, data/0, data/1, version.
    with tempfile.TemporaryDirectory() as scratch:
        small = pathlib.Path(scratch) / "small.pt"
        save(small_state(), small)
        base = small.read_bytes()
        entries = read_entries(small)
    write = lambda name, data: (HOSTILE / name).write_bytes(data)
    records = central_records(base)

    write("truncated.pt", base[:len(base) // 2])
    # The last record's name length runs past the directory, the first record's extra length too.
    write("cd_name_overflow.pt", patch(base, records[-1] + 28, "<H", 0xFFFF))
    write("cd_extra_overflow.pt", patch(base, records[0] + 30, "<H", 0xFFFF))

    # zip64: data/1's 64-bit sizes claim 2^40 bytes; then the zip64 end record offset points past the file.
    z64 = write_zip(entries, zip64=True)
    record = central_records(z64)[2]
    assert z64[record + 46:record + 46 + 12] == b"small/data/1"
    write("zip64_size_lies.pt", patch(z64, record + 46 + 12 + 4, "<QQ", 1 << 40, 1 << 40))
    write("zip64_end_lies.pt", patch(z64, len(z64) - 22 - 20 + 8, "<Q", len(z64) + 4096))

    # Storage key '1' (tensor b) has no entry: data/1 is renamed data/9 in its local and central headers.
    write("missing_storage.pt", write_zip([(n.replace("data/1", "data/9"), d) for n, d in entries]))

    # Tensor w: 6 F32 elements in storage '0', but size (4, 2) needs 8.
    storage = FakeStorage(torch.FloatStorage, "0", 6)
    past = {"w": FakeTensor(storage, 0, (4, 2), (2, 1))}
    data = [("small/data.pkl", hand_pickle(past)), ("small/data/0", bytes(24)), ("small/version", b"3\n")]
    write("past_storage.pt", write_zip(data))

    # Tensor huge: size (2^40, 2^40) of F32 is 2^82 bytes.
    huge = {"huge": FakeTensor(storage, 0, (1 << 40, 1 << 40), (1 << 40, 1))}
    data[0] = ("small/data.pkl", hand_pickle(huge))
    write("overflow_shape.pt", write_zip(data))

    # A state dict key that is an int, not a str.
    data[0] = ("small/data.pkl", hand_pickle({3: FakeTensor(storage, 0, (6,), (1,))}))
    write("int_key.pt", write_zip(data))

    # Entry data/1's local header sits inside the data of data/0: a copy of it is placed there
    # and data/1's central record points at the copy.
    name1, data1 = entries[2]
    inner = local_header(name1.encode(), data1, zlib.crc32(data1), 0) + data1
    fake = write_zip([entries[0], ("small/data/0", entries[1][1] + inner), entries[2], entries[3]])
    with zipfile.ZipFile(io.BytesIO(fake)) as archive:
        info = archive.getinfo("small/data/0")
    n, m = struct.unpack_from("<HH", fake, info.header_offset + 26)
    inside = info.header_offset + 30 + n + m + len(entries[1][1])
    write("overlap.pt", patch(fake, central_records(fake)[2] + 42, "<I", inside))

    # Stored data.pkl whose CRC in the central directory is off by one (torch.save writes real CRCs there).
    crc = struct.unpack_from("<I", base, central_records(base)[0] + 16)[0]
    write("stored_crc_mismatch.pt", patch(base, central_records(base)[0] + 16, "<I", crc ^ 1))

    # Two entries named small/data/0, with different bytes.
    write("duplicate_entry.pt", write_zip(entries[:2] + [("small/data/0", bytes(24))] + entries[2:]))

    # A local header offset far outside the file.
    write("local_outside.pt", patch(base, central_records(base)[1] + 42, "<I", 0x7FFF0000))

    # Deflated data.pkl whose CRC in the central directory is off by one.
    with zipfile.ZipFile(HOSTILE / "crc_mismatch.pt", "w", zipfile.ZIP_DEFLATED) as dst:
        for name, blob in entries:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            dst.writestr(info, blob)
    blob = (HOSTILE / "crc_mismatch.pt").read_bytes()
    first = central_records(blob)[0]
    crc = struct.unpack_from("<I", blob, first + 16)[0]
    write("crc_mismatch.pt", patch(blob, first + 16, "<I", crc ^ 1))

    # The same deflated archive with data.pkl cut to 10 compressed bytes, with an uncompressed size
    # no deflate stream of its length can reach, encrypted (flag bit 0), and with method 12 (bzip2).
    write("deflate_short.pt", patch(blob, first + 20, "<I", 10))
    write("deflate_bomb.pt", patch(blob, first + 24, "<I", 0x7FFFFFFF))
    flags = struct.unpack_from("<H", blob, first + 8)[0]
    write("encrypted.pt", patch(blob, first + 8, "<H", flags | 1))
    write("bzip2.pt", patch(blob, first + 10, "<H", 12))

    # A byteorder entry saying big.
    write("big_endian.pt", write_zip(entries[:3] + [("small/byteorder", b"big")] + entries[3:]))

    # Legacy file cut 3 bytes short: storage '1' (b, BF16 of 4, 8 bytes) keeps 5. It is built by
    # hand because torch.save names legacy storages by memory address and sorts by that name.
    tensors = small_state()
    legacy_state = collections.OrderedDict([
        ("a", FakeTensor(FakeStorage(torch.FloatStorage, "0", 6), 0, (2, 3), (3, 1))),
        ("b", FakeTensor(FakeStorage(torch.BFloat16Storage, "1", 4), 0, (4,), (1,)))])
    legacy_bytes = legacy_file(legacy_state, [
        ("0", 6, tensors["a"].numpy().tobytes()),
        ("1", 4, tensors["b"].view(torch.int16).numpy().tobytes())])
    with tempfile.TemporaryDirectory() as scratch:
        whole = pathlib.Path(scratch) / "legacy.pt"
        whole.write_bytes(legacy_bytes)
        assert torch.equal(torch.load(whole)["b"], tensors["b"])
    write("legacy_truncated.pt", legacy_bytes[:-3])

    # What PyTorch makes of each hostile file, for the record.
    report = {path.name: torch_rejects(path) for path in sorted(HOSTILE.glob("*.pt"))}
    (HOSTILE / "torch_load.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
