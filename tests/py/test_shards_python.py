"""Shards written by libsd are read by Python's tarfile + safetensors (+ PIL)
with no project code, grouped the way webdataset groups them (its key/extension
regex is emulated: webdataset itself is not installed). And the other way:
tars written the way webdataset's TarWriter writes them (and gzip'ed, GNU
long names, pax, __meta__ entries, directories) are read by libsd's reader
exactly as webdataset would group them."""
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import tarfile
import tempfile

import numpy as np
from PIL import Image
from safetensors.numpy import load as st_load

from tap import UTIL, check, done, run

TOOL = os.path.join(UTIL, "shard_tool")
tmp = tempfile.mkdtemp(prefix="sdtest-shards-")
N, PER = 7, 3


def wds_split(name):
    """webdataset.tariterators.base_plus_ext"""
    m = re.match(r"^((?:.*/|)[^.]+)[.]([^/]*)$", name)
    return (m.group(1), m.group(2)) if m else (None, None)


def wds_samples(fileobj):
    """webdataset's tar_file_iterator + group_by_keys (defaults), on one tar stream."""
    out, cur = [], None
    with tarfile.open(fileobj=fileobj, mode="r|*") as tf:
        for ti in tf:
            fname = ti.name
            if not ti.isreg():
                continue
            if "/" not in fname and fname.startswith("__") and fname.endswith("__"):
                continue
            if re.match(r"__[^/]*__($|/)", fname):
                continue
            data = tf.extractfile(ti).read()
            key, ext = wds_split(fname)
            if key is None:
                continue
            ext = ext.lower()
            if cur is None or key != cur["__key__"]:
                if cur:
                    out.append(cur)
                cur = {"__key__": key}
            if ext in cur:
                raise ValueError(f"{fname}: duplicate file name in tar file {ext}")
            cur[ext] = data
    if cur:
        out.append(cur)
    return out


def st_metadata(buf):
    n = struct.unpack("<Q", buf[:8])[0]
    return json.loads(buf[8:8 + n]).get("__metadata__", {})


def sha(b):
    return hashlib.sha256(b).hexdigest()


run([TOOL, "write-prep", f"{tmp}/prep", str(N), str(PER)])
run([TOOL, "write-prep", f"{tmp}/prep2", str(N), str(PER)])
run([TOOL, "write-prep", f"{tmp}/prepz", str(N), str(PER), "zstd"])
run([TOOL, "write-latent", f"{tmp}/lat", str(N), str(PER), "flip", "text", "f16"])
run([TOOL, "write-latent", f"{tmp}/lat32", str(N), str(PER)])
manifest = json.load(open(f"{tmp}/prep/manifest.json"))


def prep_samples(d, names=None):
    out = []
    for s in manifest["shards"]:
        name = s["name"] if names is None else names(s["name"])
        with open(os.path.join(d, name), "rb") as f:
            out += wds_samples(f)
    return out


def test_tar_headers():
    """ustar, deterministic header fields, members sorted by extension, adjacent"""
    with tarfile.open(f"{tmp}/prep/prep-000000.tar") as tf:
        names = []
        for ti in tf.getmembers():
            assert ti.isreg(), ti.name
            assert ti.mode == 0o444 and ti.mtime == 0 and ti.uid == 0 and ti.gid == 0, ti
            assert ti.uname == "" and ti.gname == "", ti
            assert not ti.pax_headers, ti.pax_headers
            names.append(ti.name)
    assert names == [f"{k:09d}.{e}" for k in range(3) for e in ("json", "png", "tokens.safetensors", "txt")], names
    raw = open(f"{tmp}/prep/prep-000000.tar", "rb").read()
    assert raw[257:263] == b"ustar\x00" and raw[263:265] == b"00"
    assert len(raw) % 10240 == 0


def test_prep_members():
    samples = prep_samples(f"{tmp}/prep")
    assert [s["__key__"] for s in samples] == [f"{i:09d}" for i in range(N)]
    for i, s in enumerate(samples):
        assert set(s) == {"__key__", "json", "png", "tokens.safetensors", "txt"}, set(s)
        meta = json.loads(s["json"])
        ncap = 1 + i % 3
        caps = [f"caption {i}.{j} \u00e9" for j in range(ncap)]
        assert meta["captions"] == caps and s["txt"].decode("utf-8") == caps[0]
        assert meta["index"] == i and meta["source"] == f"images/img_{i:04d}.png"
        assert meta["random_flip"] is False
        w, h = 8 + i % 3, 6 + i % 2
        assert meta["crop_ltrb"] == [1, 0, w + 1, h]
        assert (meta["original_width"], meta["original_height"], meta["resized_width"], meta["resized_height"]) == (2 * w, 2 * h, w + 1, h)
        img = Image.open(io.BytesIO(s["png"]))
        assert img.mode == "RGB" and img.size == (w, h)
        y, x, c = np.mgrid[0:h, 0:w, 0:3]
        want = ((37 * x + 11 * y + 50 * c + 7 * i) % 256).astype(np.uint8)
        assert np.array_equal(np.asarray(img), want)
        tok = st_load(s["tokens.safetensors"])
        ids = tok["input_ids"]
        assert ids.dtype == np.int32 and ids.shape == (ncap, 77)
        j, t = np.mgrid[0:ncap, 0:77]
        assert np.array_equal(ids, (1000 * i + 10 * j + t) % 49408)
        assert st_metadata(s["tokens.safetensors"]) == {"tokenizer_fingerprint": "test-tokenizer-fingerprint"}


def test_manifest_matches_files():
    m = manifest
    assert m["format"] == "sdtools-shards" and m["version"] == 1 and m["kind"] == "prep" and m["complete"] is True
    assert m["samples"] == N and [s["name"] for s in m["shards"]] == [f"prep-{i:06d}.tar" for i in range(3)]
    assert m["provenance"]["tool"] == "shard_tool"
    for s in m["shards"]:
        raw = open(f"{tmp}/prep/{s['name']}", "rb").read()
        assert s["bytes"] == len(raw) and s["sha256"] == sha(raw)
        with open(f"{tmp}/prep/{s['name']}", "rb") as f:
            got = wds_samples(f)
        assert s["samples"] == len(got) and s["first_key"] == got[0]["__key__"] and s["last_key"] == got[-1]["__key__"]
        assert s["members"] == sum(len(x) - 1 for x in got)
        assert s["member_bytes"] == sum(len(v) for x in got for k, v in x.items() if k != "__key__")


def test_deterministic_bytes():
    for s in manifest["shards"]:
        a = open(f"{tmp}/prep/{s['name']}", "rb").read()
        b = open(f"{tmp}/prep2/{s['name']}", "rb").read()
        assert a == b, s["name"]


def test_zstd_shards():
    """.tar.zst: zstd frame magic; decompressed with the zstd program (webdataset's
    pipe:zstd -dc) it is a tar with the same samples as the plain set"""
    if not shutil.which("zstd"):
        print("# SKIP zstd program not installed")
        return
    mz = json.load(open(f"{tmp}/prepz/manifest.json"))
    assert [s["compression"] for s in mz["shards"]] == ["zstd"] * 3
    plain = prep_samples(f"{tmp}/prep")
    got = []
    for s in mz["shards"]:
        raw = open(f"{tmp}/prepz/{s['name']}", "rb").read()
        assert raw[:4] == b"\x28\xb5\x2f\xfd" and sha(raw) == s["sha256"]
        tar = subprocess.run(["zstd", "-dc", f"{tmp}/prepz/{s['name']}"], capture_output=True, check=True).stdout
        got += wds_samples(io.BytesIO(tar))
    assert got == plain


def test_latent_members():
    samples = []
    for i in range(3):
        with open(f"{tmp}/lat/latent-{i:06d}.tar", "rb") as f:
            samples += wds_samples(f)
    prep = prep_samples(f"{tmp}/prep")
    assert len(samples) == N
    for i, s in enumerate(samples):
        assert set(s) == {"__key__", "json", "latent.safetensors", "text.safetensors", "tokens.safetensors", "txt"}
        # passed-through members are byte-identical except the flip flag in json
        assert s["txt"] == prep[i]["txt"] and s["tokens.safetensors"] == prep[i]["tokens.safetensors"]
        assert json.loads(s["json"])["random_flip"] is True
        lat = st_load(s["latent.safetensors"])
        assert set(lat) == {"mean", "logvar", "mean_flipped", "logvar_flipped"}
        c, y, x = np.mgrid[0:4, 0:3, 0:5]
        want = (((131 * i + 17 * c + 5 * y + x) % 97).astype(np.float32) / np.float32(97) - np.float32(0.5)).astype(np.float16)
        for k in lat:
            assert lat[k].dtype == np.float16 and lat[k].shape == (4, 3, 5)
        assert np.array_equal(lat["mean"], want) and np.array_equal(lat["logvar"], -want)
        assert np.array_equal(lat["mean_flipped"], want[:, :, ::-1]) and np.array_equal(lat["logvar_flipped"], -want[:, :, ::-1])
        assert st_metadata(s["latent.safetensors"]) == {"vae_fingerprint": "test-vae-fingerprint"}
        hs = st_load(s["text.safetensors"])["hidden_states"]
        ncap = 1 + i % 3
        assert hs.shape == (ncap, 77, 8) and hs.dtype == np.float16
        j, t, d = np.mgrid[0:ncap, 0:77, 0:8]
        assert np.array_equal(hs, ((i + j + t + d) / 64.0).astype(np.float16))
    with open(f"{tmp}/lat32/latent-000000.tar", "rb") as f:
        s = wds_samples(f)[1]
    assert "text.safetensors" not in s
    lat = st_load(s["latent.safetensors"])
    assert set(lat) == {"mean", "logvar"} and lat["mean"].dtype == np.float32


def cat(spec):
    out = run([TOOL, "cat", spec]).stdout.split("\n")
    return [tuple(line.split(" ")) for line in out if line]


def expect_from_python(samples):
    return [(s["__key__"], ext, str(len(v)), sha(v)) for s in samples for ext, v in s.items() if ext != "__key__"]


def write_webdataset_tar(path, samples, fmt=tarfile.USTAR_FORMAT, extra=()):
    """As webdataset.TarWriter: sorted extensions, mode 0o444, uname bigdata."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wb") as raw, tarfile.open(fileobj=raw, mode="w|", format=fmt) as tf:
        for name, data, kind in extra:
            ti = tarfile.TarInfo(name)
            ti.type = kind
            ti.size = len(data) if kind == tarfile.REGTYPE else 0
            tf.addfile(ti, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
        for s in samples:
            for ext in sorted(k for k in s if not k.startswith("_")):
                ti = tarfile.TarInfo(s["__key__"] + "." + ext)
                ti.size, ti.mode, ti.uname, ti.gname, ti.mtime = len(s[ext]), 0o444, "bigdata", "bigdata", 1700000000
                tf.addfile(ti, io.BytesIO(s[ext]))


def test_libsd_reads_webdataset_tars():
    rng = np.random.default_rng(1)
    samples = []
    for i in range(5):
        s = {"__key__": f"sample{i:05d}", "jpg": rng.bytes(int(rng.integers(0, 3000))), "cls": str(i).encode(),
             "json": json.dumps({"i": i}).encode()}
        if i == 2:
            s["txt"] = b""  # empty member
        samples.append(s)
    path = f"{tmp}/wds-000000.tar"
    write_webdataset_tar(path, samples)
    with open(path, "rb") as f:
        ref = wds_samples(f)
    assert cat(path) == expect_from_python(ref)
    gz = f"{tmp}/wds-000001.tar.gz"
    write_webdataset_tar(gz, samples)
    assert cat(gz) == expect_from_python(ref)
    # the brace form a webdataset user would pass
    assert cat(f"{tmp}/wds-{{000000..000000}}.tar") == expect_from_python(ref)


def test_libsd_reads_odd_tars_like_webdataset():
    """GNU long names, pax (non-ASCII names), directories, __meta__, dotless
    names, upper-case extensions, keys with directories"""
    long_key = "d/" + "k" * 180
    samples = [{"__key__": long_key, "txt": b"long"}, {"__key__": "sub/dir/x", "TXT": b"upper", "json": b"{}"},
               {"__key__": "\u00fcml", "txt": "\u00e9".encode()}]
    extra = [("dir", b"", tarfile.DIRTYPE), ("__meta__", b"meta", tarfile.REGTYPE), ("README", b"no dot", tarfile.REGTYPE),
             ("__x__/y.txt", b"skipped", tarfile.REGTYPE)]
    for fmt, name in ((tarfile.GNU_FORMAT, "gnu"), (tarfile.PAX_FORMAT, "pax")):
        path = f"{tmp}/odd-{name}.tar"
        write_webdataset_tar(path, samples, fmt=fmt, extra=extra)
        with open(path, "rb") as f:
            ref = wds_samples(f)
        assert len(ref) == 3 and ref[1]["txt"] == b"upper"
        assert cat(path) == expect_from_python(ref), (cat(path), expect_from_python(ref))


def test_libsd_rejects_what_webdataset_rejects():
    path = f"{tmp}/dup.tar"
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tf:
        for name in ("a.png", "a.PNG"):
            ti = tarfile.TarInfo(name)
            ti.size = 1
            tf.addfile(ti, io.BytesIO(b"x"))
    try:
        with open(path, "rb") as f:
            wds_samples(f)
        raise AssertionError("python emulation should reject")
    except ValueError:
        pass
    p = run([TOOL, "cat", path], check_rc=False)
    assert p.returncode == 1 and "duplicate extension" in p.stderr and "a.PNG" in p.stderr, p.stderr


def test_describe_and_verify():
    d = json.loads(run([TOOL, "describe", "--json", f"{tmp}/lat"]).stdout)
    assert d["ok"] is True and d["manifest"]["kind"] == "latent" and d["total"]["samples"] == N
    assert d["total"]["extensions"] == {"json": N, "latent.safetensors": N, "text.safetensors": N, "tokens.safetensors": N, "txt": N}
    run([TOOL, "verify", f"{tmp}/prep"])
    bad = f"{tmp}/prepbad"
    shutil.copytree(f"{tmp}/prep", bad)
    with open(f"{bad}/prep-000001.tar", "r+b") as f:
        f.seek(700)
        f.write(b"Z")
    p = run([TOOL, "verify", bad], check_rc=False)
    assert p.returncode == 1 and "prep-000001.tar: sha256 differs from the manifest" in p.stderr, p.stderr
    p = run([TOOL, "describe", bad], check_rc=False)
    assert p.returncode == 1 and "MISMATCH" in p.stdout


check("tar headers: ustar, mode 0444, mtime 0, uid/gid 0, sorted members", test_tar_headers)
check("prep members read with tarfile + safetensors + PIL", test_prep_members)
check("manifest sizes, sha256, counts match the files", test_manifest_matches_files)
check("same input gives byte-identical shards", test_deterministic_bytes)
check("zstd shards decompress to the same samples", test_zstd_shards)
check("latent members (f16, flipped, text) read with safetensors", test_latent_members)
check("libsd reads webdataset-written tars (plain, gzip, braces)", test_libsd_reads_webdataset_tars)
check("libsd groups odd tars (gnu, pax) exactly like webdataset", test_libsd_reads_odd_tars_like_webdataset)
check("duplicate extensions rejected like webdataset", test_libsd_rejects_what_webdataset_rejects)
check("describe --json and manifest verify", test_describe_and_verify)
shutil.rmtree(tmp, ignore_errors=True)
done()
