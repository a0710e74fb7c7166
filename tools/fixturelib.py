"""Shared helpers for the fixture and benchmark generators in tools/.

Everything a test compares against comes from PyTorch (tensor values, dtypes,
shapes, strides, storage offsets, storage sharing, as torch.load reports them)
or from Python's standard library reading the written file (zip entry offsets
through zipfile, pickle structure through pickle.Unpickler). Nothing here
imports the C code under test.

There is no safetensors package on the build machine, so write_safetensors()
writes the container itself. The tensor bytes come from PyTorch
(Tensor.numpy().tobytes() of a contiguous copy). The container follows the
safetensors format exactly: an 8-byte little-endian header length N, then N
bytes of JSON padded with spaces to a multiple of 8, then the tensors back to
back in the order of their data_offsets.
"""

import collections
import io
import json
import os
import pickle
import struct
import zipfile

import torch

# torch dtype -> safetensors dtype name, which is also the C catalog's naming.
ST_DTYPES = {
    torch.bool: "BOOL",
    torch.uint8: "U8",
    torch.int8: "I8",
    torch.int16: "I16",
    torch.int32: "I32",
    torch.int64: "I64",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.float32: "F32",
    torch.float64: "F64",
}


def element_size(dtype):
    return torch.empty((), dtype=dtype).element_size()


# ---------------------------------------------------------------- safetensors


def tensor_bytes(t):
    """Return the row-major little-endian bytes of t, as PyTorch stores them in memory."""
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        # numpy has no bfloat16; a same-size view keeps the bits.
        t = t.view(torch.int16)
    return t.numpy().tobytes()


def _alignment_order(item):
    """Sort key of the reference writer: larger elements first, then by name."""
    name, t = item
    return (-element_size(t.dtype), name)


def write_safetensors(path, tensors, metadata=None):
    """Write tensors (name -> torch.Tensor) to path in the safetensors format.

    Tensors are stored contiguous, ordered as the reference implementation
    orders them (element size descending, then name), so that the data
    offsets start at 0 and leave no gaps. Returns the header as a dict.
    """
    header = collections.OrderedDict()
    header["__metadata__"] = dict(metadata or {"format": "pt"})
    blobs = []
    offset = 0
    for name, t in sorted(tensors.items(), key=_alignment_order):
        data = tensor_bytes(t)
        header[name] = {
            "dtype": ST_DTYPES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        blobs.append(data)
        offset += len(data)

    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for data in blobs:
            f.write(data)
    return header


def safetensors_byte_offsets(path):
    """Return name -> absolute file offset of each tensor in a safetensors file."""
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(length))
    base = 8 + length
    return {
        name: base + entry["data_offsets"][0]
        for name, entry in header.items()
        if name != "__metadata__"
    }


# ------------------------------------------------- torch files through pickle


class StorageRef:
    """A persistent storage id as the pickle names it."""

    def __init__(self, pid):
        self.key = str(pid[2])
        self.dtype = pid[1].dtype
        self.numel = int(pid[4])


class TensorRef:
    """The arguments of one _rebuild_tensor_v2 call."""

    def __init__(self, storage, offset, size, stride):
        self.storage = storage
        self.offset = int(offset)
        self.size = tuple(size)
        self.stride = tuple(stride)


class _LayoutUnpickler(pickle.Unpickler):
    """Unpickle a checkpoint into TensorRef objects without creating tensors.

    Only the globals a state dict uses are resolved; anything else raises,
    which is right for the fixtures this module writes.
    """

    def find_class(self, module, name):
        if module == "torch._utils" and name == "_rebuild_tensor_v2":
            return lambda storage, offset, size, stride, *rest: TensorRef(
                storage, offset, size, stride)
        if module == "torch._utils" and name == "_rebuild_parameter":
            return lambda data, *rest: data
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch" and name.endswith("Storage"):
            return getattr(torch, name)
        if module == "torch" and name == "Size":
            return torch.Size
        if module in ("builtins", "__builtin__") and name in ("set", "frozenset"):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"unexpected global {module}.{name}")

    def persistent_load(self, pid):
        return StorageRef(pid)


def _zip_data_offsets(path):
    """Return zip entry name -> offset of its first data byte, using zipfile."""
    offsets = {}
    with open(path, "rb") as f, zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            f.seek(info.header_offset)
            local = f.read(30)
            name_length, extra_length = struct.unpack("<HH", local[26:30])
            offsets[info.filename] = info.header_offset + 30 + name_length + extra_length
    return offsets


def torch_zip_layout(path):
    """Return (object of TensorRefs, storage key -> file offset) of a zip checkpoint."""
    offsets = _zip_data_offsets(path)
    with zipfile.ZipFile(path) as archive:
        pkl = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
        prefix = pkl[: -len("data.pkl")]
        obj = _LayoutUnpickler(io.BytesIO(archive.read(pkl))).load()
    storages = {
        name[len(prefix) + len("data/"):]: offset
        for name, offset in offsets.items()
        if name.startswith(prefix + "data/")
    }
    return obj, storages


def torch_legacy_layout(path):
    """Return (object of TensorRefs, storage key -> file offset) of a legacy checkpoint.

    The legacy format is five pickles (magic number, protocol version,
    system info, the object, the list of storage keys) followed, for each key
    in that list, by an int64 element count and the storage's raw bytes.
    """
    refs = {}

    class Recorder(_LayoutUnpickler):
        def persistent_load(self, pid):
            ref = StorageRef(pid)
            refs[ref.key] = ref
            return ref

    storages = {}
    with open(path, "rb") as f:
        for _ in range(3):
            pickle.load(f)
        obj = Recorder(f).load()
        keys = pickle.load(f)
        for key in keys:
            (numel,) = struct.unpack("<q", f.read(8))
            storages[key] = f.tell()
            f.seek(numel * element_size(refs[key].dtype), os.SEEK_CUR)
    return obj, storages


# ------------------------------------------------------- expected descriptions


def storage_identity(t):
    """Identify t's storage; two tensors share one when the identities match.

    Compares the storage implementation (PyTorch 1.13's untyped storage
    handle) rather than data_ptr(), which is 0 for every empty storage.
    """
    return t.storage().untyped()._cdata


def extent_bytes(t):
    """Bytes from the first element t addresses to one past the last one."""
    if t.numel() == 0:
        return 0
    last = sum((size - 1) * stride for size, stride in zip(t.shape, t.stride()))
    return (last + 1) * t.element_size()


def describe_tensor(name, stored_name, t, file, byte_offset):
    """Describe one tensor as PyTorch reports it, for an expected.json file."""
    values = t.detach().double()
    return collections.OrderedDict(
        name=name,
        stored_name=stored_name,
        dtype=ST_DTYPES[t.dtype],
        shape=list(t.shape),
        stride=list(t.stride()),
        storage_offset=t.storage_offset(),
        file=file,
        byte_offset=byte_offset,
        nbytes=extent_bytes(t),
        numel=t.numel(),
        sum=values.sum().item(),
        abs_sum=values.abs().sum().item(),
        shared_with=[],
    )


def fill_sharing(descriptions, identities):
    """Set shared_with of each description from parallel storage identities."""
    groups = collections.defaultdict(list)
    for desc, ident in zip(descriptions, identities):
        groups[ident].append(desc["name"])
    for desc, ident in zip(descriptions, identities):
        desc["shared_with"] = sorted(n for n in groups[ident] if n != desc["name"])


def write_json(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
