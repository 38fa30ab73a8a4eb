"""TensorBoard event files written by libsd (lib/train/tblog.c), read back by
an independent pure-Python reader: record framing, both masked CRC32Cs of
every record, and the Event / Summary protobuf wire encoding decoded by hand
(no tensorboard or protobuf package in .venv-test). tests/ref/check_tblog.py
does the same check with TensorBoard's own EventAccumulator."""
import io
import os
import re
import struct
import subprocess
import tempfile

import numpy as np
from PIL import Image

from tap import UTIL, check, done, run

TB_TOOL = os.path.join(UTIL, "tb_tool")
tmp = tempfile.mkdtemp(prefix="sdtest-tb-")


# ---- CRC32C (Castagnoli, reflected 0x82F63B78), TensorFlow's mask
def _table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


TABLE = _table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def read_records(path):
    """Yield each record's data after checking the length and data CRCs."""
    with open(path, "rb") as f:
        buf = f.read()
    pos, out = 0, []
    while pos < len(buf):
        assert pos + 12 <= len(buf), "truncated record header"
        head = buf[pos:pos + 8]
        (n,) = struct.unpack("<Q", head)
        (hcrc,) = struct.unpack("<I", buf[pos + 8:pos + 12])
        assert hcrc == masked(head), f"bad length crc at {pos}"
        data = buf[pos + 12:pos + 12 + n]
        assert len(data) == n, "truncated record"
        (dcrc,) = struct.unpack("<I", buf[pos + 12 + n:pos + 16 + n])
        assert dcrc == masked(data), f"bad data crc at {pos}"
        out.append(data)
        pos += 16 + n
    return out


# ---- protobuf wire format
def varint(b, i):
    v, shift = 0, 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return v, i


def fields(b):
    """Decode a message into {field: [values]} (bytes for length-delimited)."""
    out, i = {}, 0
    while i < len(b):
        key, i = varint(b, i)
        f, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(b, i)
        elif wt == 1:
            v = b[i:i + 8]
            i += 8
        elif wt == 5:
            v = b[i:i + 4]
            i += 4
        elif wt == 2:
            n, i = varint(b, i)
            v = b[i:i + n]
            i += n
        else:
            raise AssertionError(f"unexpected wire type {wt}")
        out.setdefault(f, []).append((wt, v))
    assert i == len(b), "message overruns"
    return out


def one(msg, f, wt):
    vals = msg.get(f, [])
    assert len(vals) == 1, f"field {f}: {len(vals)} values"
    assert vals[0][0] == wt, f"field {f}: wire type {vals[0][0]} != {wt}"
    return vals[0][1]


def decode_events(path):
    """List of (wall_time, step, kind, tag, payload)."""
    events = []
    for data in read_records(path):
        ev = fields(data)
        (wall,) = struct.unpack("<d", one(ev, 1, 1))
        step = one(ev, 2, 0) if 2 in ev else 0
        if step >= 1 << 63:
            step -= 1 << 64
        if 3 in ev:
            events.append((wall, step, "file_version", None, one(ev, 3, 2).decode()))
            continue
        summary = fields(one(ev, 5, 2))
        for _, vb in summary[1]:
            val = fields(vb)
            tag = one(val, 1, 2).decode()
            if 2 in val:
                (x,) = struct.unpack("<f", one(val, 2, 5))
                events.append((wall, step, "scalar", tag, x))
            elif 4 in val:
                img = fields(one(val, 4, 2))
                events.append((wall, step, "image", tag, (one(img, 1, 0), one(img, 2, 0), one(img, 3, 0),
                                                          one(img, 4, 2))))
            elif 8 in val:
                ten = fields(one(val, 8, 2))
                meta = fields(one(val, 9, 2))
                plugin = fields(one(meta, 1, 2))
                assert one(ten, 1, 0) == 7, "text tensor must be DT_STRING"
                assert fields(one(ten, 2, 2)) == {}, "text tensor must be a scalar"
                events.append((wall, step, "text:" + one(plugin, 1, 2).decode(), tag, one(ten, 8, 2).decode()))
            else:
                raise AssertionError(f"value without payload: {val}")
    return events


def make_png(path, h, w, mode):
    rng = np.random.default_rng(0)
    ch = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4}[mode]
    arr = rng.integers(0, 256, (h, w, ch) if ch > 1 else (h, w), dtype=np.uint8)
    Image.fromarray(arr, mode).save(path)
    return open(path, "rb").read(), ch


def scalars_and_image():
    png_path = os.path.join(tmp, "img.png")
    png, ch = make_png(png_path, 5, 7, "RGB")
    logdir = os.path.join(tmp, "run1")
    path = run([TB_TOOL, "write", logdir, png_path, "5", "7", str(ch)]).stdout.strip()
    name = os.path.basename(path)
    assert os.path.dirname(path) == logdir
    assert re.fullmatch(r"events\.out\.tfevents\.\d{10}\.[^/]+\.\d+\.\d+", name), name
    ev = decode_events(path)
    assert ev[0][2] == "file_version" and ev[0][4] == "brain.Event:2", ev[0]
    walls = [e[0] for e in ev]
    assert all(abs(w - walls[0]) < 60 for w in walls) and walls == sorted(walls)
    loss = [(s, x) for _, s, k, t, x in ev if k == "scalar" and t == "train/loss"]
    assert loss == [(s, float(np.float32(1.0 / (s + 1)))) for s in range(10)], loss
    lr = [(s, x) for _, s, k, t, x in ev if k == "scalar" and t == "train/lr"]
    assert lr == [(s, float(np.float32(1e-4 * s))) for s in range(10)], lr
    big = [(s, x) for _, s, k, t, x in ev if t == "train/big_step"]
    assert big == [(1 << 40, -2.5)], big
    imgs = [(s, t, x) for _, s, k, t, x in ev if k == "image"]
    assert len(imgs) == 1 and imgs[0][0] == 5 and imgs[0][1] == "samples/0"
    h, w, c, data = imgs[0][2]
    assert (h, w, c) == (5, 7, 3) and data == png
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(data))), np.asarray(Image.open(png_path)))
    texts = [(s, k, t, x) for _, s, k, t, x in ev if k.startswith("text")]
    assert texts == [(0, "text:text", "config", "lr: 1e-4\nbatch: **16**")], texts


def killed_writer_keeps_events():
    logdir = os.path.join(tmp, "run2")
    p = run([TB_TOOL, "crash", logdir], check_rc=False)
    assert p.returncode == 3, p
    ev = decode_events(p.stdout.strip())
    assert [(s, x) for _, s, k, t, x in ev if k == "scalar"] == [(0, 0.0), (1, 1.0), (2, 2.0)]


def corruption_is_detected():
    """The reader really checks CRCs: flip one payload byte."""
    png_path = os.path.join(tmp, "img2.png")
    make_png(png_path, 2, 2, "RGBA")
    path = run([TB_TOOL, "write", os.path.join(tmp, "run3"), png_path, "2", "2", "4"]).stdout.strip()
    b = bytearray(open(path, "rb").read())
    b[40] ^= 0x01
    open(path, "wb").write(bytes(b))
    try:
        read_records(path)
    except AssertionError as e:
        assert "crc" in str(e)
        return
    raise AssertionError("corruption not detected")


def crc_check_value():
    assert crc32c(b"123456789") == 0xE3069283


check("crc32c check value", crc_check_value)
check("scalars, image and text read back", scalars_and_image)
check("a killed writer keeps its events", killed_writer_keeps_events)
check("the reader detects corrupted records", corruption_is_detected)
done()
