#!/usr/bin/python3
"""Write a torch.save checkpoint over 4 GiB, and check a bitcpm-ls listing of it.

  gen_large_checkpoint.py write OUT EXPECTED
      Write OUT (about 4.25 GiB, zip format, so it needs zip64 records) and
      EXPECTED, a JSON description of every tensor as PyTorch reports it, with
      the file offset of its first element taken from Python's zipfile module.
  gen_large_checkpoint.py compare EXPECTED LISTING
      Compare the output of `bitcpm-ls --format json OUT` with EXPECTED.
      Exit 0 when names, dtypes, shapes, strides, storage offsets, byte
      offsets, sizes and storage sharing all match, else print the first
      difference and exit 1.

The big tensors are backed by sparse scratch files (torch.from_file), so
writing needs little RAM and no scratch disk space. The checkpoint itself
takes its full size. The layout puts the third big tensor across the 4 GiB
offset and places a small tensor and a view whose data lie beyond 4 GiB,
where zip offsets only fit in zip64 extra fields. Used by the large-zip64 test
of tests/catalog/.
"""

import collections
import json
import os
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fixturelib  # noqa: E402

GIB = 1 << 30

# name -> shape of the bf16 tensors, in file order: 1.5 + 1.5 + 1.25 GiB.
BIG = collections.OrderedDict(
    [
        ("model.embed_tokens.weight", (64, 128)),
        ("big.0.weight", (32768, 24576)),
        ("big.1.weight", (32768, 24576)),
        ("big.2.weight", (27307, 24576)),
    ]
)


def file_backed_bf16(scratch_dir, name, shape):
    """Create a zero bf16 tensor on a sparse, already unlinked scratch file."""
    numel = 1
    for size in shape:
        numel *= size
    path = os.path.join(scratch_dir, name)
    flat = torch.from_file(path, shared=True, size=numel, dtype=torch.bfloat16)
    os.unlink(path)
    return flat.view(*shape)


def build_state(scratch_dir):
    state = collections.OrderedDict()
    for name, shape in BIG.items():
        state[name] = file_backed_bf16(scratch_dir, name, shape)
    # A few known values so that a reader of the data can check where it landed.
    state["model.embed_tokens.weight"][0, :4] = torch.tensor([1.0, 2.0, 3.0, 4.0])
    state["big.2.weight"][-1, -4:] = torch.tensor([-1.0, 0.5, 0.25, 2.0])
    # Stored after the big tensors, so its data lie beyond 4 GiB.
    state["tail.bias"] = torch.arange(16, dtype=torch.float32)
    # A view of the last rows of big.2: same storage, data beyond 4 GiB.
    state["big.2.last_rows"] = state["big.2.weight"][-2:]
    return state


def write(out, expected_path):
    scratch_dir = tempfile.mkdtemp(prefix=".scratch-", dir=os.path.dirname(os.path.abspath(out)))
    try:
        state = build_state(scratch_dir)
        started = time.monotonic()
        torch.save(state, out)
        seconds = time.monotonic() - started
    finally:
        os.rmdir(scratch_dir)

    # torch.load in PyTorch 1.13 reads every storage into memory, so the
    # description comes from the written pickle and zipfile's offsets, checked
    # against the tensors PyTorch saved.
    layout, storage_offsets = fixturelib.torch_zip_layout(out)
    assert list(layout) == list(state)
    for name, ref in layout.items():
        t = state[name]
        assert ref.size == tuple(t.shape), name
        assert ref.stride == t.stride(), name
        assert ref.offset == t.storage_offset(), name
        assert ref.storage.dtype == t.dtype, name
    groups = collections.defaultdict(list)
    for name, ref in layout.items():
        groups[ref.storage.key].append(name)

    tensors = []
    for name, ref in layout.items():
        element = fixturelib.element_size(ref.storage.dtype)
        numel = 1
        for size in ref.size:
            numel *= size
        last = sum((size - 1) * stride for size, stride in zip(ref.size, ref.stride))
        tensors.append(
            collections.OrderedDict(
                name=name,
                dtype=fixturelib.ST_DTYPES[ref.storage.dtype],
                shape=list(ref.size),
                stride=list(ref.stride),
                storage_offset=ref.offset,
                byte_offset=storage_offsets[ref.storage.key] + ref.offset * element,
                nbytes=(last + 1) * element if numel else 0,
                shared_with=sorted(n for n in groups[ref.storage.key] if n != name),
            )
        )
    fixturelib.write_json(
        expected_path,
        collections.OrderedDict(file_size=os.path.getsize(out), torch_version=torch.__version__,
                                tensors=tensors),
    )
    print(f"wrote {out}: {os.path.getsize(out)} bytes, {len(tensors)} tensors, "
          f"torch.save {seconds:.1f} s")


def compare(expected_path, listing_path):
    with open(expected_path) as f:
        expected = json.load(f)
    with open(listing_path) as f:
        listing = json.load(f)

    got = {t["name"]: t for t in listing["tensors"]}
    problems = []
    if len(listing["tensors"]) != len(expected["tensors"]):
        problems.append(f"expected {len(expected['tensors'])} tensors, "
                        f"listed {len(listing['tensors'])}")
    for want in expected["tensors"]:
        t = got.get(want["name"])
        if t is None:
            problems.append(f"'{want['name']}' is not listed")
            continue
        pairs = [
            ("dtype", want["dtype"], t["dtype"]),
            ("shape", want["shape"], t["shape"]),
            ("strides", want["stride"], t["strides"]),
            ("storage_offset", want["storage_offset"], t["storage_offset"]),
            ("byte_offset", want["byte_offset"], t["byte_offset"]),
            ("nbytes", want["nbytes"], t["nbytes"]),
            ("shared_with", want["shared_with"], sorted(t["shared_with"])),
        ]
        for key, w, g in pairs:
            if w != g:
                problems.append(f"'{want['name']}': {key}: expected {w}, listed {g}")
    if listing.get("findings"):
        problems.append(f"unexpected findings: {listing['findings']}")

    if problems:
        for p in problems:
            print("large-zip64: " + p, file=sys.stderr)
        return 1
    beyond = [t["name"] for t in expected["tensors"] if t["byte_offset"] >= 4 * GIB]
    print(f"all {len(expected['tensors'])} tensors match; file {expected['file_size']} bytes; "
          f"data beyond 4 GiB: {', '.join(beyond)}")
    return 0


def main(argv):
    if len(argv) == 3 and argv[0] == "write":
        write(argv[1], argv[2])
        return 0
    if len(argv) == 3 and argv[0] == "compare":
        return compare(argv[1], argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
