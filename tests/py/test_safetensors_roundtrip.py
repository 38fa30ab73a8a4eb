"""Round trips between libsd's safetensors reader/writer and the Python
`safetensors` package, both directions, for F32, F16, BF16, I64, I32, U8, BOOL
(and the other integer/float dtypes). Values must be bit-identical; the float
conversions of F16/BF16 must equal numpy's."""
import hashlib
import os
import tempfile

import numpy as np
import safetensors
from safetensors.numpy import save_file

from tap import UTIL, check, done, run

ST_TOOL = os.path.join(UTIL, "st_tool")
tmp = tempfile.mkdtemp(prefix="sdtest-st-")

# safetensors' raw serialize() dtype names
PYNAME = {"F32": "float32", "F16": "float16", "BF16": "bfloat16", "I64": "int64", "I32": "int32",
          "U8": "uint8", "BOOL": "bool", "F64": "float64", "I8": "int8", "I16": "int16",
          "U16": "uint16", "U32": "uint32", "U64": "uint64"}
NP = {"F32": "<f4", "F16": "<f2", "I64": "<i8", "I32": "<i4", "U8": "u1", "BOOL": "u1", "F64": "<f8",
      "I8": "i1", "I16": "<i2", "U16": "<u2", "U32": "<u4", "U64": "<u8"}


def serialize_file(tensors, path, metadata):
    """safetensors' raw writer: dict specs (<0.8) or TensorSpec (>=0.8)."""
    if hasattr(safetensors, "TensorSpec"):
        keep = []
        specs = {}
        for name, t in tensors.items():
            buf = np.frombuffer(t["data"], np.uint8).copy()
            keep.append(buf)
            specs[name] = safetensors.TensorSpec(dtype=t["dtype"], shape=t["shape"], data_ptr=buf.ctypes.data, data_len=buf.nbytes)
        safetensors.serialize_file(specs, path, metadata=metadata)
    else:
        safetensors.serialize_file(tensors, path, metadata=metadata)


def dtype_code(name):
    """Map a deserialize() dtype ('float16' or 'F16', version-dependent) to 'F16'."""
    for k, v in PYNAME.items():
        if name in (k, v):
            return k
    raise AssertionError(f"unknown dtype {name}")


def sha(b):
    return hashlib.sha256(b).hexdigest()


def as_f32(dtype, raw):
    if dtype == "BF16":
        u = np.frombuffer(raw, "<u2").astype(np.uint32) << 16
        return u.view(np.float32).tobytes()
    return np.frombuffer(raw, NP[dtype]).astype(np.float32).tobytes()


def dump(path):
    out = {}
    meta = {}
    for line in run([ST_TOOL, "dump", path]).stdout.splitlines():
        parts = line.split(" ")
        if parts[0] == "meta":
            meta[parts[1]] = " ".join(parts[2:])
            continue
        name, dtype, shape, raw, conv = parts
        out[name] = (dtype, shape.replace("_", " "), raw, conv)
    return out, meta


def python_written():
    """Python writes (serialize_file), C reads: same names, dtypes, shapes, bytes."""
    rng = np.random.default_rng(1)
    tensors = {}
    for k, dt in enumerate(PYNAME):
        shape = [2, 3 + k]
        n = int(np.prod(shape))
        if dt == "BF16":
            raw = (rng.standard_normal(n).astype(np.float32).view(np.uint32) >> 16).astype("<u2").tobytes()
        elif dt == "BOOL":
            raw = (rng.integers(0, 2, n)).astype("u1").tobytes()
        elif dt.startswith("F"):
            raw = (rng.standard_normal(n) * 100).astype(NP[dt]).tobytes()
        else:
            raw = rng.integers(0, 255, n * np.dtype(NP[dt]).itemsize, dtype=np.uint8).tobytes()
        tensors["x." + dt.lower()] = {"dtype": PYNAME[dt], "shape": shape, "data": raw}
    path = os.path.join(tmp, "py.safetensors")
    serialize_file(tensors, path, metadata={"format": "pt", "note": "héllo \"q\""})
    got, meta = dump(path)
    assert set(got) == set(tensors), (set(got), set(tensors))
    for name, t in tensors.items():
        dtype = [k for k, v in PYNAME.items() if v == t["dtype"]][0]
        gdt, gshape, graw, gconv = got[name]
        assert gdt == dtype, (name, gdt)
        assert gshape == "[" + ", ".join(map(str, t["shape"])) + "]", (name, gshape)
        assert graw == sha(t["data"]), f"{name}: raw bytes differ"
        assert gconv == sha(as_f32(dtype, t["data"])), f"{name}: float conversion differs"
    assert meta == {"format": "pt", "note": "héllo \"q\""}, meta
    # numpy-framework writer too (what most scripts use)
    p2 = os.path.join(tmp, "np.safetensors")
    a = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    save_file({"a": a, "b": a.astype(np.float16)}, p2)
    got, _ = dump(p2)
    assert got["a"][2] == sha(a.tobytes()) and got["b"][2] == sha(a.astype(np.float16).tobytes())


def c_written():
    """C writes, Python reads: bit-identical bytes, and metadata."""
    path = os.path.join(tmp, "c.safetensors")
    run([ST_TOOL, "write", path])
    got, meta = dump(path)
    with open(path, "rb") as f:
        data = f.read()
    items = dict(safetensors.deserialize(data))
    assert set(items) == set(got), (set(items), set(got))
    for name, t in items.items():
        gdt, gshape, graw, gconv = got[name]
        assert dtype_code(t["dtype"]) == gdt, (name, gdt, t["dtype"])
        assert list(t["shape"]) == [int(x) for x in gshape.strip("[]").split(",") if x.strip()], name
        assert sha(bytes(t["data"])) == graw, f"{name}: bytes differ"
        if gdt in NP or gdt == "BF16":
            assert sha(as_f32(gdt, bytes(t["data"]))) == gconv, f"{name}: conversion differs"
    with safetensors.safe_open(path, framework="numpy") as f:
        assert f.metadata() == {"format": "pt"}
        np.testing.assert_array_equal(f.get_tensor("scalar"), np.float32(3.5))
        assert f.get_tensor("empty").shape == (0,)


def byte_identical_rewrite():
    """A file Python wrote, re-written by C, is byte-identical (same header
    order and padding as the reference writer)."""
    src = os.path.join(tmp, "py2.safetensors")
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    save_file({"w": a, "b": a[0].astype(np.float16), "i": np.arange(3, dtype=np.int64),
               "m": np.array([True, False])}, src, metadata={"format": "pt"})
    dst = os.path.join(tmp, "c2.safetensors")
    run([ST_TOOL, "copy", src, dst])
    assert open(src, "rb").read() == open(dst, "rb").read()


check("python-written files read by libsd", python_written)
check("libsd-written files read by python", c_written)
check("rewrite is byte-identical to python's writer", byte_identical_rewrite)
done()
