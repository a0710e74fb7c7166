#!/usr/bin/python3
"""Write the pickle machine's fixtures and what Python itself reads from them.

Outputs, all under fixtures/:
  pickle/sample_p{0..5}.pkl   one plain-data value pickled by Python's pickle
                              module at each protocol
  pickle/python2_text.pkl     protocol 0 opcodes only Python 2 wrote (STRING,
                              INT 00/01, LONG ...L), hand-assembled
  pickle/torch_state_p{2,4}.pkl
                              data.pkl of a real torch.save of a small state
                              dict (tensors sharing a storage, a view with an
                              offset and strides, OrderedDict _metadata)
  pickle/expected.json        for each of those, the canonical text of the
                              value as pickle.loads returns it (see canonical()),
                              and for the torch pickles every tensor's
                              _rebuild_tensor_v2 arguments
  hostile/pickle/*.pkl        malformed and malicious pickles
  hostile/pickle/expected.json
                              for each hostile pickle, the globals Python's
                              Unpickler would import with their opcode offsets

Python's Unpickler reads every hostile file with find_class and
persistent_load replaced by stubs, so nothing a fixture names is imported or
called. The C tests compare against this output; run this script again after
changing it and commit what it writes.
"""

import collections
import io
import json
import os
import pickle
import pickletools
import struct
import sys
import types
import warnings
import zipfile

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PICKLE_DIR = os.path.join(ROOT, "fixtures", "pickle")
HOSTILE_DIR = os.path.join(ROOT, "fixtures", "hostile", "pickle")


# ---------------------------------------------------------------- canonical text


def escape(data):
    """Printable ASCII as is (except backslash and quote), other bytes as \\xHH."""
    out = []
    for b in data:
        if 0x20 <= b < 0x7F and b not in (0x5C, 0x27):
            out.append(chr(b))
        else:
            out.append("\\x%02x" % b)
    return "".join(out)


def canonical(value):
    """Return the one-line text of a plain value. canonical_text() in
    tests/pickle/pickle_test_util.c writes the same text from the C value tree.

    int       int:DECIMAL when it fits int64, else bigint:HEX of the minimal
              little-endian two's complement bytes (pickle.encode_long)
    float     float:HEX of the IEEE-754 bits, big-endian
    str       s'...', bytes and bytearray b'...', escaped by escape()
    tuple (..), list [..], dict and OrderedDict {k:v,..} in insertion order,
    set and frozenset set{..} with items sorted by their canonical text.
    """
    if value is None:
        return "None"
    if value is True:
        return "True"
    if value is False:
        return "False"
    if isinstance(value, int):
        if -(2**63) <= value < 2**63:
            return "int:%d" % value
        return "bigint:" + pickle.encode_long(value).hex()
    if isinstance(value, float):
        return "float:" + struct.pack(">d", value).hex()
    if isinstance(value, str):
        return "s'" + escape(value.encode("utf-8", "surrogatepass")) + "'"
    if isinstance(value, (bytes, bytearray)):
        return "b'" + escape(bytes(value)) + "'"
    if isinstance(value, tuple):
        return "(" + ",".join(canonical(v) for v in value) + ")"
    if isinstance(value, list):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(canonical(k) + ":" + canonical(v) for k, v in value.items()) + "}"
    if isinstance(value, (set, frozenset)):
        return "set{" + ",".join(sorted(canonical(v) for v in value)) + "}"
    raise TypeError("no canonical form for %r" % type(value))


# ---------------------------------------------------------------- plain pickles


def sample_value():
    """Every plain type a checkpoint's metadata may hold, with edge values."""
    od = collections.OrderedDict()
    od["z"] = 1
    od["a"] = [1.5, -2.25]
    shared = ["shared", 7]
    return {
        "none": None,
        "true": True,
        "false": False,
        "ints": [0, 1, -1, 255, 256, 65535, 65536, -129, 2**31 - 1, -(2**31), 2**31,
                 2**63 - 1, -(2**63), 2**63, -(2**63) - 1, 2**100, -(2**100) + 12345],
        "floats": [0.0, -0.0, 1.5, -3.25, 1e300, 5e-324, float("inf"), float("-inf"),
                   0.1],
        "strings": ["", "plain", "quote ' and \\ backslash", "line\nbreak\r\x1a\x00",
                    "h\u00e9llo \u2713 \U0001d11e", "\u0100\u00ff"],
        "bytes": [b"", b"\x00\xff\x80abc", bytearray(b""), bytearray(b"\x01\x02")],
        "tuple": (1, (2, (3,)), ()),
        "nested": {"a": {"b": {"c": [[], [[]]]}}},
        "set": {1, 2, 3},
        "frozenset": frozenset(["x", "y"]),
        "ordered": od,
        "shared": [shared, shared],
        "int_keys": {1: "one", -5: "minus five", 2**40: "big"},
    }


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)


def python2_text_pickle():
    """Protocol 0 as Python 2 wrote it: byte strings as STRING, booleans as INT
    00/01, longs with a trailing L, and a dict built by MARK ... DICT."""
    return (
        b"(dp0\n"
        b"S'str'\np1\nS'a\\'b\\\\c\\n\\x41\\101\\q'\np2\n"
        b"sS'dq'\np3\nS\"say \\\"hi\\\"\"\np4\n"
        b"sS'bools'\np5\n(I01\nI00\nlp6\n"
        b"sS'ints'\np7\n(I42\nI-7\nL123L\nL-98765432109876543210L\nL18446744073709551616\ntp8\n"
        b"sS'float'\np9\nF2.5\n"
        b"sS'uni'\np10\nVcaf\\u00e9 \\U0001d11e back\\\\slash\np11\n"
        b"sS'dict'\np12\n(S'k'\nI1\ndp13\n"
        b"sS'again'\np14\ng13\ns."
    )


def rare_opcodes_pickle():
    """Protocol 5 plain data through opcodes Python 3's pickler rarely or never
    writes: FRAME, BINSTRING, SHORT_BINSTRING, BINBYTES8, BYTEARRAY8,
    BINUNICODE8, LONG4, DUP, POP_MARK, LIST, DICT and FROZENSET from a MARK,
    EMPTY_SET with ADDITEMS, text PUT/GET, LONG_BINPUT/LONG_BINGET, and a
    recorded POP that discards a MARK (pickle.py's load_pop)."""
    body = (
        b"(" 
        b"T\x03\x00\x00\x00abc"                      # BINSTRING
        b"U\x02hi"                                     # SHORT_BINSTRING
        b"\x8e\x03\x00\x00\x00\x00\x00\x00\x00b\x00c"   # BINBYTES8
        b"\x96\x02\x00\x00\x00\x00\x00\x00\x00\xff\x01"  # BYTEARRAY8
        b"\x8d\x04\x00\x00\x00\x00\x00\x00\x00\xe2\x9c\x93!"  # BINUNICODE8
        b"\x8b\x09\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x80\xff"  # LONG4
        b"K\x05\x32"                                  # BININT1 5, DUP
        b"(K\x01K\x02\x31"                            # MARK 1 2 POP_MARK
        b"(K\x07K\x08l"                                # LIST from MARK
        b"(U\x01kK\x09d"                               # DICT from MARK
        b"(K\x03K\x04K\x03\x91"                       # FROZENSET from MARK
        b"\x8f(K\x0aK\x0b\x90"                         # EMPTY_SET, ADDITEMS
        b"G\xbf\xf8\x00\x00\x00\x00\x00\x00"         # BINFLOAT -1.5
        b"Fnan\n"                                      # FLOAT text
        b"F-inf\n"
        b"I-42\n"                                      # INT text
        b"p77\ng77\n"                                 # PUT 77 keeps, GET 77 copies
        b"r\x00\x00\x01\x00j\x00\x00\x01\x00"          # LONG_BINPUT / LONG_BINGET 65536
        b"(0"                                          # MARK then POP: discards the MARK
        b"t."
    )
    return b"\x80\x05\x95" + len(body).to_bytes(8, "little") + body


def calls_pickle():
    """Calls through INST, OBJ, NEWOBJ_EX and a text PERSID, each naming a
    global the C test checks."""
    return (
        b"\x80\x04("
        b"(K\x01ifoo.mod\nKlass\n"                      # INST foo.mod.Klass(1)
        b"(cfoo.mod\nOther\nK\x02K\x03o"                 # OBJ Other(2, 3)
        b"\x8c\x07foo.mod\x8c\x05Third\x93"               # STACK_GLOBAL Third
        b"K\x04\x85}\x8c\x01k\x88s\x92"                   # NEWOBJ_EX(Third, (4,), {'k': True})
        b"Pkey-0\n"                                    # PERSID 'key-0'
        b"t."
    )


# ---------------------------------------------------------------- torch pickles


def torch_state_dict():
    torch.manual_seed(1)
    base = torch.randn(4, 6)
    sd = collections.OrderedDict()
    sd["layer.weight"] = base
    sd["layer.bias"] = torch.zeros(6, dtype=torch.bfloat16)
    sd["view.strided"] = base[1:, ::2]       # storage offset 6, strides (6, 2)
    sd["view.column"] = base[:, 3]           # storage offset 3, stride (6,)
    sd["count"] = torch.tensor(7, dtype=torch.int64)
    sd._metadata = collections.OrderedDict({"": {"version": 1}, "layer": {"version": 2}})
    return sd


class StubUnpickler(pickle.Unpickler):
    """Records what Python's Unpickler would import and never imports it."""

    def __init__(self, data):
        super().__init__(io.BytesIO(data))
        self.globals = []

    def find_class(self, module, name):
        self.globals.append((module, name))
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return rebuild_record
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch" and name.endswith("Storage"):
            return "%s.%s" % (module, name)
        if (module, name) in (("__builtin__", "set"), ("builtins", "set")):
            return set
        return Stub

    def persistent_load(self, pid):
        return ("persid",) + tuple(pid)


class Stub:
    """Stands in for any other global: accepts every call and BUILD."""

    def __init__(self, *args, **kwargs):
        self.args = args

    def __setstate__(self, state):
        self.state = state


def rebuild_record(storage, offset, size, stride, requires_grad, hooks, *rest):
    return {"storage": storage, "offset": offset, "size": list(size), "stride": list(stride),
            "requires_grad": requires_grad}


def torch_pickle(protocol):
    sd = torch_state_dict()
    buf = io.BytesIO()
    torch.save(sd, buf, pickle_protocol=protocol)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as z:
        name = next(n for n in z.namelist() if n.endswith("/data.pkl"))
        data = z.read(name)

    records = StubUnpickler(data).load()
    tensors = []
    for key, rec in records.items():
        tensor = sd[key]
        # The recorded arguments must be what PyTorch itself reports.
        assert rec["offset"] == tensor.storage_offset(), key
        assert rec["size"] == list(tensor.shape), key
        assert rec["stride"] == list(tensor.stride()), key
        _, tag, storage_type, storage_key, location, numel = rec["storage"]
        assert tag == "storage"
        tensors.append({
            "name": key, "storage_type": storage_type, "storage_key": storage_key,
            "location": location, "numel": numel, "storage_offset": rec["offset"],
            "size": rec["size"], "stride": rec["stride"],
            "requires_grad": rec["requires_grad"],
        })
    metadata_keys = list(records._metadata.keys())
    return data, {"tensors": tensors, "metadata_keys": metadata_keys}


# ---------------------------------------------------------------- hostile pickles


def global_offsets(data):
    """(module, name, offset) of every GLOBAL, STACK_GLOBAL and INST, in order.

    The names come from Python's Unpickler (it calls find_class once per
    opcode, in file order) and the offsets from pickletools.genops."""
    offsets = []
    try:
        for op, arg, pos in pickletools.genops(data):
            if op.name in ("GLOBAL", "STACK_GLOBAL", "INST"):
                offsets.append(pos)
    except ValueError:
        pass  # truncated or unknown opcode: the offsets before it stand
    unpickler = StubUnpickler(data)
    try:
        unpickler.load()
    except Exception:
        pass
    assert len(offsets) == len(unpickler.globals), (offsets, unpickler.globals)
    return [{"module": m, "name": n, "offset": o}
            for (m, n), o in zip(unpickler.globals, offsets)]


class CallsEval:
    def __reduce__(self):
        return (eval, ("1 + 1",))


def unknown_class():
    """An instance of foo.bar.Baz, a class that exists only in this process."""
    foo = types.ModuleType("foo")
    bar = types.ModuleType("foo.bar")
    sys.modules["foo"] = foo
    sys.modules["foo.bar"] = bar

    class Baz:
        pass

    Baz.__module__ = "foo.bar"
    Baz.__qualname__ = "Baz"
    bar.Baz = Baz
    foo.bar = bar
    obj = Baz()
    obj.weight_decay = 0.1
    return obj


def shared_expansion():
    """A "billion laughs" DAG: t0 = None, t(i) = (t(i-1), t(i-1)) through the
    memo, 64 levels. Python loads it in microseconds; a walk that expands the
    shared tuples would visit 2^65 values."""
    data = b"\x80\x02Nq\x000"
    for i in range(1, 65):
        data += b"h" + bytes([i - 1]) + b"h" + bytes([i - 1]) + b"\x86q" + bytes([i]) + b"0"
    data += b"h\x40."
    value = pickle.loads(data)
    assert value[0] is value[1]
    return data


def hostile_pickles():
    """name -> bytes. Each is described where the C test checks it."""
    torch_p2, _ = torch_pickle(2)
    # Cut the torch pickle inside the text of its first BINUNICODE.
    cut = next(pos for op, arg, pos in pickletools.genops(torch_p2)
               if op.name == "BINUNICODE" and len(arg) > 4) + 7
    recursive = []
    recursive.append(recursive)
    return {
        "stack_pop_empty.pkl": b"\x80\x02" + b"0" + b"N.",
        "stack_tuple_no_mark.pkl": b"\x80\x02K\x01K\x02t.",
        "stack_extra_at_stop.pkl": b"\x80\x02K\x01K\x02.",
        "stack_empty_at_stop.pkl": b"\x80\x02.",
        "stack_mark_open_at_stop.pkl": b"\x80\x02(K\x01.",
        "deep_lists.pkl": b"\x80\x02" + b"]" * 100000 + b"a" * 99999 + b".",
        "deep_tuples.pkl": b"\x80\x02" + b"(" * 100000 + b"t" * 100000 + b".",
        "memo_never_stored.pkl": b"\x80\x02]q\x00h\x05a.",
        "shared_expansion.pkl": shared_expansion(),
        "truncated_string.pkl": torch_p2[:cut],
        "truncated_no_stop.pkl": b"\x80\x02}q\x00X\x01\x00\x00\x00aK\x01s",
        "huge_length.pkl": b"\x80\x04\x8d" + struct.pack("<Q", 1 << 62) + b"abc.",
        "unknown_opcode.pkl": b"\x80\x02\xff.",
        "ext1.pkl": b"\x80\x02\x82\x01.",
        "next_buffer.pkl": b"\x80\x05\x97.",
        "bad_utf8.pkl": b"\x80\x04\x8c\x02\xc3\x28\x94.",
        "recursive_list.pkl": pickle.dumps(recursive, protocol=2),
        "eval_p2.pkl": pickle.dumps({"x": CallsEval()}, protocol=2),
        "unknown_global_p2.pkl": pickle.dumps({"opt": unknown_class()}, protocol=2),
        "unknown_global_p4.pkl": pickle.dumps({"opt": unknown_class()}, protocol=4),
    }


# ---------------------------------------------------------------- main


def main():
    os.makedirs(PICKLE_DIR, exist_ok=True)
    os.makedirs(HOSTILE_DIR, exist_ok=True)
    expected = {}

    value = sample_value()
    for protocol in range(6):
        data = pickle.dumps(value, protocol=protocol)
        name = "sample_p%d.pkl" % protocol
        write(os.path.join(PICKLE_DIR, name), data)
        expected[name] = {"canonical": canonical(pickle.loads(data)), "size": len(data)}

    data = python2_text_pickle()
    write(os.path.join(PICKLE_DIR, "python2_text.pkl"), data)
    with warnings.catch_warnings():
        # The STRING escape \q is kept as written, with a DeprecationWarning.
        warnings.simplefilter("ignore", DeprecationWarning)
        loaded = pickle.loads(data, encoding="bytes")
    expected["python2_text.pkl"] = {"canonical": canonical(loaded), "size": len(data)}

    data = rare_opcodes_pickle()
    write(os.path.join(PICKLE_DIR, "rare_opcodes.pkl"), data)
    loaded = pickle.loads(data, encoding="bytes")
    assert loaded[-3] is loaded[-2]  # PUT then GET share one object
    expected["rare_opcodes.pkl"] = {"canonical": canonical(loaded), "size": len(data)}

    data = calls_pickle()
    write(os.path.join(PICKLE_DIR, "calls.pkl"), data)
    expected["calls.pkl"] = {"size": len(data), "globals": global_offsets(data)}

    for protocol in (2, 4):
        data, info = torch_pickle(protocol)
        name = "torch_state_p%d.pkl" % protocol
        write(os.path.join(PICKLE_DIR, name), data)
        info["size"] = len(data)
        info["globals"] = global_offsets(data)
        expected[name] = info

    with open(os.path.join(PICKLE_DIR, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")

    hostile = {}
    for name, data in hostile_pickles().items():
        write(os.path.join(HOSTILE_DIR, name), data)
        hostile[name] = {"size": len(data), "globals": global_offsets(data)}
    # The opcode whose argument the truncation cut, found in the whole pickle.
    cut = len(hostile_pickles()["truncated_string.pkl"])
    hostile["truncated_string.pkl"]["cut_opcode_offset"] = cut - 7
    path = os.path.join(HOSTILE_DIR, "expected.json")
    if os.path.exists(path):
        # gen_hostile_torch.py adds its own entries to the same file.
        with open(path) as f:
            old = json.load(f)
        old.update(hostile)
        hostile = old
    with open(path, "w") as f:
        json.dump(hostile, f, indent=1, sort_keys=True)
        f.write("\n")


def fix_hash_seed():
    """Re-run under PYTHONHASHSEED=0: the order of a set of strings in a
    pickle follows str hashes, which change with every run otherwise."""
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable] + sys.argv)


if __name__ == "__main__":
    fix_hash_seed()
    main()
