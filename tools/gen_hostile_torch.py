#!/usr/bin/python3
"""Write real torch.save checkpoints whose pickle would run os.system.

fixtures/hostile/pickle/os_system_p{2,4}.pt are zip checkpoints written by
torch.save with pickle_protocol 2 and 4. Their state dict contains a tensor and
an object whose __reduce__ returns (os.system, ("touch /tmp/bcpm-pwned-marker",)),
so torch.load(weights_only=False) on them would create the marker file. The
data.pkl of each is also written beside it as os_system_p{2,4}.pkl, and
hostile/pickle/expected.json gets, for each .pkl, the globals Python's
Unpickler would import with their opcode offsets, and the offset of data.pkl
inside the .pt file.

Never load these files with torch.load or pickle.load. This script reads them
back only through zipfile and a stub Unpickler that imports nothing.
"""

import collections
import io
import json
import os
import zipfile

import torch

from gen_pickle_fixtures import HOSTILE_DIR, fix_hash_seed, global_offsets

MARKER = "/tmp/bcpm-pwned-marker"


class RunsShell:
    """Pickles as a call of os.system; creating the marker proves it ran."""

    def __reduce__(self):
        return (os.system, ("touch " + MARKER,))


def data_pkl(path):
    """Return the name, bytes and file offset of a torch zip checkpoint's data.pkl."""
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if i.filename.endswith("/data.pkl"))
        assert info.compress_type == zipfile.ZIP_STORED
        data = z.read(info)
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        header = f.read(30)
    name_len = int.from_bytes(header[26:28], "little")
    extra_len = int.from_bytes(header[28:30], "little")
    offset = info.header_offset + 30 + name_len + extra_len
    with open(path, "rb") as f:
        f.seek(offset)
        assert f.read(len(data)) == data
    return info.filename, data, offset


def main():
    os.makedirs(HOSTILE_DIR, exist_ok=True)
    path = os.path.join(HOSTILE_DIR, "expected.json")
    expected = {}
    if os.path.exists(path):
        with open(path) as f:
            expected = json.load(f)

    torch.manual_seed(0)
    for protocol in (2, 4):
        state = collections.OrderedDict()
        state["weight"] = torch.randn(2, 3)
        state["payload"] = RunsShell()
        pt = os.path.join(HOSTILE_DIR, "os_system_p%d.pt" % protocol)
        torch.save(state, pt, pickle_protocol=protocol)

        entry, data, offset = data_pkl(pt)
        pkl = "os_system_p%d.pkl" % protocol
        with open(os.path.join(HOSTILE_DIR, pkl), "wb") as f:
            f.write(data)
        expected[pkl] = {"size": len(data), "globals": global_offsets(data),
                         "pt": os.path.basename(pt), "pt_entry": entry,
                         "pt_data_offset": offset}

    with open(path, "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    fix_hash_seed()
    main()
