"""Pixel parity of libsd's image path with PIL (+ torchvision's arithmetic).

A corpus is generated here, deterministically (gradients + noise + sharp
edges; sizes from 1x1 and 1xN to a few hundred pixels, extreme aspect
ratios), in every format the decoder supports:
  PNG   written by a small writer below (so every color type, bit depth,
        palette/tRNS combination and Adam7 interlacing is covered, with all
        five row filters): gray 1/2/4/8/16, gray+alpha 8/16, RGB 8/16,
        RGBA 8/16, palette 1/2/4/8 with and without tRNS (and with indices
        past a short PLTE), interlaced variants; plus PNGs written by PIL.
  JPEG  by PIL: baseline 4:2:0/4:2:2/4:4:4, progressive, optimized, gray,
        CMYK (Adobe), EXIF orientation 6 (must NOT be applied); by libjpeg
        through image_tool: YCCK, CMYK without Adobe marker, RGB color
        space, 4:4:0 (h1v2), arithmetic coding.
  WebP  by PIL: lossy, lossless, lossy+alpha, lossless+alpha.
Checks, each against PIL's Image.open().convert("RGB") [-> resize -> crop]:
  1. decode: max |diff| per file (required <= 1; measured and printed);
  2. Resize(shorter side) + CenterCrop for the six filters, down- and
     up-scaling, computed with torchvision's documented formulas (in Python
     here, torchvision itself is not in .venv-test);
  3. ppdiffusers' straight resize to (H, W) and the full transform record;
  4. RandomCrop offsets in range and the pixels at them, with flip;
  5. PNG encoding: PIL reads back identical pixels and the tEXt/iTXt chunks;
  6. the golden made by the real torchvision (tests/ref/gen_image_transforms.py).
The tolerance the task allows is 1 per channel; the implementation aims at
bit-exactness, so every check also reports the measured maximum (all 0 when
this was written) and the decode/resize checks require exactly that (<= 1).
"""
import hashlib
import io
import json
import os
import struct
import subprocess
import tempfile
import zlib

import warnings

import numpy as np
from PIL import Image

from tap import ROOT, UTIL, check, done, run

warnings.filterwarnings("ignore", message="Palette images with Transparency")

TOOL = os.path.join(UTIL, "image_tool")
GOLDEN = os.path.join(ROOT, "tests", "ref", "golden", "image_transforms")
TOL = 1  # allowed max |diff| per channel (measured: 0)
tmp = tempfile.mkdtemp(prefix="sdtest-img-")
FILTERS = {"nearest": Image.NEAREST, "box": Image.BOX, "bilinear": Image.BILINEAR,
           "hamming": Image.HAMMING, "bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS}
report = []  # (case, max diff)


# ---------------------------------------------------------------- corpus
def pattern(w, h, seed):
    """Gradients + noise + sharp edges, uint8 RGB (h, w, 3)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([x * 255.0 / max(w - 1, 1), y * 255.0 / max(h - 1, 1), (x * 3 + y * 5) % 256.0], -1)
    img += rng.normal(0, 24, (h, w, 3))
    img[h // 4:h // 2 + 1, w // 3:2 * w // 3 + 1] = (250, 8, 128)            # a hard-edged block
    img[((x // 2 + y // 2) % 2 == 0) & (y > 3 * h // 4)] = (0, 0, 0)          # a fine checkerboard
    img[:, w - 1 - w // 5:] = 255 - img[:, w - 1 - w // 5:]                   # an inverted band
    return np.clip(img, 0, 255).astype(np.uint8)


def png_chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    return np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))


def filter_rows(rows, bpp):
    """Apply PNG filter (row index mod 5) to each packed row (uint8 arrays)."""
    out = bytearray()
    prev = np.zeros_like(rows[0]) if rows else None
    for i, r in enumerate(rows):
        r = r.astype(np.int32)
        p = prev.astype(np.int32)
        a = np.concatenate([np.zeros(bpp, np.int32), r[:-bpp]]) if len(r) > bpp else np.zeros_like(r)
        c = np.concatenate([np.zeros(bpp, np.int32), p[:-bpp]]) if len(r) > bpp else np.zeros_like(r)
        ft = i % 5
        if ft == 0:
            f = r
        elif ft == 1:
            f = r - a
        elif ft == 2:
            f = r - p
        elif ft == 3:
            f = r - (a + p) // 2
        else:
            f = r - paeth(a, p, c)
        out.append(ft)
        out += (f & 0xFF).astype(np.uint8).tobytes()
        prev = r
    return bytes(out)


def pack_rows(samples, depth):
    """samples (h, w, spp) ints -> list of packed row byte arrays."""
    h, w, spp = samples.shape
    rows = []
    for y in range(h):
        s = samples[y].reshape(-1)
        if depth == 16:
            rows.append(s.astype(">u2").view(np.uint8))
        elif depth == 8:
            rows.append(s.astype(np.uint8))
        else:
            per = 8 // depth
            n = (len(s) + per - 1) // per
            b = np.zeros(n, np.int32)
            for i, v in enumerate(s):
                b[i // per] |= int(v) << (8 - depth * (i % per + 1))
            rows.append(b.astype(np.uint8))
    return rows


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def write_png(path, samples, ct, depth, palette=None, trns=None, interlace=False):
    h, w, spp = samples.shape
    bpp = max(1, spp * depth // 8)
    if interlace:
        idat = b""
        for x0, y0, dx, dy in ADAM7:
            sub = samples[y0::dy, x0::dx]
            if sub.shape[0] and sub.shape[1]:
                idat += filter_rows(pack_rows(sub, depth), bpp)
    else:
        idat = filter_rows(pack_rows(samples, depth), bpp)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ct, 0, 0, int(interlace)))
    if palette is not None:
        data += png_chunk(b"PLTE", bytes(np.asarray(palette, np.uint8).reshape(-1)))
    if trns is not None:
        data += png_chunk(b"tRNS", trns)
    data += png_chunk(b"IDAT", zlib.compress(idat, 6)) + png_chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(data)


def make_corpus():
    """Write the corpus files; returns [(name, path)]."""
    files = []

    def add(name, writer):
        path = os.path.join(tmp, name)
        writer(path)
        files.append((name, path))

    sizes = [(1, 1), (1, 9), (9, 1), (17, 13), (64, 48), (131, 97), (300, 7), (6, 257)]
    for i, (w, h) in enumerate(sizes):
        rgb = pattern(w, h, i)
        gray = rgb[..., 1:2].astype(np.int64)
        alpha = ((rgb[..., 0:1].astype(np.int64) * 3) % 256)
        il = i % 2 == 1  # interlace every other size
        tag = f"{w}x{h}"
        add(f"png_rgb8_{tag}.png", lambda p: write_png(p, rgb.astype(np.int64), 2, 8, interlace=il))
        add(f"png_rgb8_i_{tag}.png", lambda p: write_png(p, rgb.astype(np.int64), 2, 8, interlace=True))
        rgb16 = rgb.astype(np.int64) * 257 ^ (np.arange(w)[None, :, None] * 37 % 256)
        add(f"png_rgb16_{tag}.png", lambda p: write_png(p, rgb16, 2, 16, interlace=il))
        add(f"png_rgba8_{tag}.png",
            lambda p: write_png(p, np.concatenate([rgb, alpha], -1).astype(np.int64), 6, 8, interlace=il))
        add(f"png_rgba16_{tag}.png", lambda p: write_png(
            p, np.concatenate([rgb16, alpha * 257 + 5], -1), 6, 16, interlace=not il))
        add(f"png_l8_{tag}.png", lambda p: write_png(p, gray, 0, 8, interlace=il))
        add(f"png_l8_trns_{tag}.png", lambda p: write_png(p, gray, 0, 8, trns=b"\x00\x80", interlace=il))
        for d in (1, 2, 4):
            add(f"png_l{d}_{tag}.png", lambda p, d=d: write_png(p, gray >> (8 - d), 0, d, interlace=il))
        # 16-bit gray: PIL's I;16 -> RGB clips to 255: one file with mostly
        # large values, one with values straddling 255
        add(f"png_l16_{tag}.png", lambda p: write_png(p, gray * 257, 0, 16, interlace=il))
        add(f"png_l16_small_{tag}.png", lambda p: write_png(p, gray + 130, 0, 16, interlace=not il))
        add(f"png_la8_{tag}.png", lambda p: write_png(p, np.concatenate([gray, alpha], -1), 4, 8, interlace=il))
        add(f"png_la16_{tag}.png",
            lambda p: write_png(p, np.concatenate([gray * 257 + 3, alpha * 255], -1), 4, 16, interlace=il))
        pal = pattern(16, 16, 100 + i).reshape(256, 3)
        for d in (1, 2, 4, 8):
            idx = (rgb[..., :1].astype(np.int64) * 7 + rgb[..., 1:2]) % (1 << d)
            add(f"png_p{d}_{tag}.png", lambda p, d=d, idx=idx: write_png(p, idx, 3, d, palette=pal[:1 << d], interlace=il))
            add(f"png_p{d}_trns_{tag}.png", lambda p, d=d, idx=idx: write_png(
                p, idx, 3, d, palette=pal[:1 << d], trns=bytes(range(0, 256, 37))[:1 << d], interlace=not il))
        # a PLTE shorter than the indices used: PIL's palette is zero past it
        idx = rgb[..., :1].astype(np.int64)
        add(f"png_p8_short_{tag}.png", lambda p: write_png(p, idx, 3, 8, palette=pal[:100]))
        # PIL's own writer
        add(f"pil_rgb_{tag}.png", lambda p: Image.fromarray(rgb).save(p, optimize=True))
        add(f"pil_p_{tag}.png", lambda p: Image.fromarray(rgb).quantize(64).save(p))

    # JPEG and WebP (PIL's writer, libjpeg through image_tool)
    for i, (w, h) in enumerate([(1, 1), (7, 1), (1, 11), (33, 17), (131, 97), (257, 190), (400, 9)]):
        rgb = pattern(w, h, 50 + i)
        im = Image.fromarray(rgb)
        tag = f"{w}x{h}"
        add(f"jpg_420_{tag}.jpg", lambda p: im.save(p, "JPEG", quality=90))
        add(f"jpg_444_{tag}.jpg", lambda p: im.save(p, "JPEG", quality=95, subsampling=0))
        add(f"jpg_422_{tag}.jpg", lambda p: im.save(p, "JPEG", quality=75, subsampling=1))
        add(f"jpg_prog_{tag}.jpg", lambda p: im.save(p, "JPEG", quality=85, progressive=True))
        add(f"jpg_opt_{tag}.jpg", lambda p: im.save(p, "JPEG", quality=60, optimize=True))
        add(f"jpg_gray_{tag}.jpg", lambda p: im.convert("L").save(p, "JPEG", quality=90))
        add(f"jpg_cmyk_{tag}.jpg", lambda p: im.convert("CMYK").save(p, "JPEG", quality=90))
        exif = Image.Exif()
        exif[0x0112] = 6  # orientation: rotate 90 — must not be applied
        add(f"jpg_exif6_{tag}.jpg", lambda p: im.save(p, "JPEG", quality=90, exif=exif))
        ppm = os.path.join(tmp, f"src_{tag}.ppm")
        im.save(ppm)
        for kind in ("ycck", "cmyk-noadobe", "rgb", "h1v2", "arith"):
            add(f"jpg_lj_{kind}_{tag}.jpg", lambda p, kind=kind: run([TOOL, "jpeg", ppm, p, kind]))
        rgba = Image.fromarray(np.concatenate([rgb, rgb[..., :1] // 2 + 60], -1), "RGBA")
        add(f"webp_lossy_{tag}.webp", lambda p: im.save(p, "WEBP", quality=80))
        add(f"webp_lossless_{tag}.webp", lambda p: im.save(p, "WEBP", lossless=True))
        add(f"webp_lossy_alpha_{tag}.webp", lambda p: rgba.save(p, "WEBP", quality=70))
        add(f"webp_lossless_alpha_{tag}.webp", lambda p: rgba.save(p, "WEBP", lossless=True, exact=True))
    return files


# ---------------------------------------------------------------- tools
def read_pnm(path):
    return np.array(Image.open(path))


def batch(jobs, kernel=None):
    """jobs: [(in, out, W, H, filter, left, top, cw, ch)] -> ['OK' | 'ERR ...'].
    kernel: force the resize kernel variant (scalar, sse41; default: best)."""
    text = "".join(" ".join(str(v) for v in j) + "\n" for j in jobs)
    env = dict(os.environ)
    if kernel:
        env["SD_RESIZE_KERNEL"] = kernel
    p = subprocess.run([TOOL, "batch"], input=text, capture_output=True, text=True, check=True, env=env)
    res = p.stdout.splitlines()
    assert len(res) == len(jobs), p.stdout + p.stderr
    return res


def pil_rgb(path):
    with Image.open(path) as im:
        return im.convert("RGB")


# torchvision's arithmetic, from its documented formulas (functional.py)
def tv_resize_size(w, h, size):
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = size, int(size * long / short)
    return (new_short, new_long) if w <= h else (new_long, new_short)


def tv_center_crop_box(w, h, cw, ch):
    """(left, top) in image coordinates; negative where torchvision pads."""
    def one(size, crop):
        if crop > size:
            return -((crop - size) // 2)
        return int(round((size - crop) / 2.0))
    return one(w, cw), one(h, ch)


def maxdiff(a, b):
    if a.shape != b.shape:
        raise AssertionError(f"shape {a.shape} != {b.shape}")
    return int(np.abs(a.astype(np.int32) - b.astype(np.int32)).max()) if a.size else 0


corpus = make_corpus()
decoded = {}  # name -> (path of our decode, PIL image)


def t_decode():
    jobs, refs = [], []
    for name, path in corpus:
        with Image.open(path) as im:
            w, h = im.size
        out = os.path.join(tmp, name + ".dec.ppm")
        jobs.append((path, out, 0, 0, "nearest", 0, 0, w, h))
        refs.append((name, path, out))
    res = batch(jobs)
    worst = 0
    bad = []
    for (name, path, out), r in zip(refs, res):
        if r != "OK":
            bad.append(f"{name}: {r}")
            continue
        ref = np.array(pil_rgb(path))
        d = maxdiff(read_pnm(out), ref)
        report.append((f"decode {name}", d))
        worst = max(worst, d)
        if d > TOL:
            bad.append(f"{name}: max diff {d}")
        decoded[name] = path
    print(f"# decode: {len(refs)} files, max |diff| = {worst}")
    assert not bad, "\n".join(bad)


def t_resize_center_crop():
    """Resize(shorter side) + CenterCrop, every filter, down- and upscaling."""
    jobs, refs = [], []
    names = [n for n in decoded if any(k in n for k in ("png_rgb8_", "jpg_420_", "png_p8_", "webp_lossy_",
                                                       "png_l16_small", "jpg_cmyk_"))]
    for name in names:
        ref_im = pil_rgb(decoded[name])
        w, h = ref_im.size
        for res_ in sorted({max(1, min(w, h) // 3), max(1, min(w, h) - 1), min(w, h) + 5, 2 * min(w, h) + 3, 24}):
            rw, rh = tv_resize_size(w, h, res_)
            if rw * rh > 4_000_000:
                continue
            left, top = tv_center_crop_box(rw, rh, res_, res_)
            for fname in FILTERS:
                out = os.path.join(tmp, f"{name}.{res_}.{fname}.ppm")
                jobs.append((decoded[name], out, rw, rh, fname, left, top, res_, res_))
                refs.append((name, res_, fname, rw, rh, left, top, out))
    res = batch(jobs)
    worst = {}
    bad = []
    cache = {}
    for (name, res_, fname, rw, rh, left, top, out), r in zip(refs, res):
        if r != "OK":
            bad.append(f"{name} {res_} {fname}: {r}")
            continue
        if name not in cache:
            cache[name] = pil_rgb(decoded[name])
        im = cache[name]
        resized = im if (rw, rh) == im.size else im.resize((rw, rh), FILTERS[fname])
        ref = np.array(resized.crop((left, top, left + res_, top + res_)))
        d = maxdiff(read_pnm(out), ref)
        worst[fname] = max(worst.get(fname, 0), d)
        report.append((f"resize {name} -> {rw}x{rh} crop {res_} {fname}", d))
        if d > TOL:
            bad.append(f"{name} -> {rw}x{rh} {fname}: max diff {d}")
    print(f"# resize+center crop: {len(refs)} cases; max |diff| per filter: {worst}")
    assert not bad, "\n".join(bad[:20])


def t_resize_extreme(kernel=None):
    """Straight resizes with extreme ratios, both pass orders, 1-pixel outputs."""
    src = decoded["png_rgb8_131x97.png"]
    im = pil_rgb(src)
    sizes = [(1, 1), (131, 1), (1, 97), (500, 3), (3, 500), (130, 20), (140, 96), (60, 96), (262, 194), (65, 48),
             (129, 40), (200, 50), (33, 97), (131, 200)]
    jobs, refs = [], []
    for fname in FILTERS:
        for (w, h) in sizes:
            out = os.path.join(tmp, f"ext.{w}x{h}.{fname}.ppm")
            jobs.append((src, out, w, h, fname, 0, 0, w, h))
            refs.append((fname, w, h, out))
    res = batch(jobs, kernel)
    worst = 0
    bad = []
    for (fname, w, h, out), r in zip(refs, res):
        assert r == "OK", r
        d = maxdiff(read_pnm(out), np.array(im.resize((w, h), FILTERS[fname])))
        worst = max(worst, d)
        if d > TOL:
            bad.append(f"{w}x{h} {fname}: {d}")
    print(f"# extreme resizes ({kernel or 'best'} kernel): {len(refs)} cases, max |diff| = {worst}")
    assert not bad, bad


def transform(path, res_, fname, crop, seed, flip, hw=None):
    out = os.path.join(tmp, "tf.ppm")
    args = [TOOL, "transform", path, out, str(res_), fname, crop, str(seed), "flip" if flip else "noflip"]
    if hw:
        args += [str(hw[0]), str(hw[1])]
    rec = [int(v) for v in run(args).stdout.split()]
    return rec, read_pnm(out)


def t_transform_records():
    """The C transform's own size/offset arithmetic equals torchvision's formulas."""
    n = 0
    for name in ("jpg_420_257x190.jpg", "png_rgb8_6x257.png", "png_rgb8_300x7.png", "jpg_420_400x9.jpg",
                 "png_rgb8_1x9.png"):
        path = decoded[name]
        im = pil_rgb(path)
        w, h = im.size
        for res_ in (1, 5, 16, 64, 100):
            rw, rh = tv_resize_size(w, h, res_)
            left, top = tv_center_crop_box(rw, rh, res_, res_)
            rec, px = transform(path, res_, "bicubic", "center", 0, False)
            assert rec == [w, h, rw, rh, left, top, res_, res_, 0], (name, res_, rec)
            resized = im if (rw, rh) == im.size else im.resize((rw, rh), Image.BICUBIC)
            ref = np.array(resized.crop((left, top, left + res_, top + res_)))
            assert maxdiff(px, ref) <= TOL, (name, res_)
            n += 1
    # ppdiffusers: straight to (H, W), bilinear, the crop is a no-op
    path = decoded["jpg_420_257x190.jpg"]
    im = pil_rgb(path)
    for (H, W) in ((64, 48), (100, 300), (190, 257)):
        rec, px = transform(path, 512, "bilinear", "center", 0, False, (H, W))
        assert rec == [257, 190, W, H, 0, 0, W, H, 0], rec
        ref = im if (W, H) == im.size else im.resize((W, H), Image.BILINEAR)
        assert maxdiff(px, np.array(ref)) <= TOL
        n += 1
    print(f"# transform records: {n} cases equal to torchvision's formulas")


def t_random_crop_flip():
    path = decoded["jpg_420_257x190.jpg"]
    im = pil_rgb(path)
    rw, rh = tv_resize_size(257, 190, 64)
    resized = np.array(im.resize((rw, rh), Image.LANCZOS))
    seen, flips = set(), 0
    for seed in range(24):
        rec, px = transform(path, 64, "lanczos", "random", seed, True)
        _, _, w2, h2, left, top, cw, ch, flipped = rec
        assert (w2, h2, cw, ch) == (rw, rh, 64, 64)
        assert 0 <= left <= rw - 64 and 0 <= top <= rh - 64, rec
        ref = resized[top:top + 64, left:left + 64]
        if flipped:
            ref = ref[:, ::-1]
            flips += 1
        assert maxdiff(px, ref) <= TOL, rec
        seen.add((left, top))
        # deterministic per seed
        assert transform(path, 64, "lanczos", "random", seed, True)[0] == rec
    assert len(seen) > 12, seen          # offsets vary with the seed
    assert 4 <= flips <= 20, flips      # p = 0.5
    # the same seed without flip gives the same crop (crop draws come first)
    rec2, _ = transform(path, 64, "lanczos", "random", 3, False)
    rec3, _ = transform(path, 64, "lanczos", "random", 3, True)
    assert rec2[4:6] == rec3[4:6]


def t_png_encode():
    cases = []
    for name in ("jpg_420_257x190.jpg", "png_rgb8_1x1.png", "png_rgb8_300x7.png"):
        src = os.path.join(tmp, name + ".dec.ppm")
        for level in ("-1", "0", "1", "9"):
            out = os.path.join(tmp, f"{name}.{level}.png")
            texts = ["parameters=a photo of a cat, masterpiece\nSteps: 20, Sampler: Euler a, Seed: 1",
                     "Comment=caf\u00e9 latin-1", "Title=\u732b unicode"]
            run([TOOL, "encode", src, out, level] + texts)
            with Image.open(out) as im:
                im.load()
                assert im.mode == "RGB"
                d = maxdiff(np.array(im), read_pnm(src))
                assert d == 0, d
                assert im.text["parameters"] == texts[0].split("=", 1)[1], im.text
                assert im.text["Comment"] == "caf\u00e9 latin-1"
                assert im.text["Title"] == "\u732b unicode"
            raw = open(out, "rb").read()
            assert b"tEXtparameters\x00" in raw and b"iTXtTitle\x00" in raw
            out2 = out + ".again.png"
            run([TOOL, "encode", src, out2, level] + texts)
            assert open(out2, "rb").read() == raw, "PNG bytes are not deterministic"
            cases.append(len(raw))
    # gray PGM round trip
    pgm = os.path.join(tmp, "g.pgm")
    Image.fromarray(pattern(37, 21, 9)[..., 0]).save(pgm)
    run([TOOL, "encode", pgm, pgm + ".png"])
    with Image.open(pgm + ".png") as im:
        assert im.mode == "L" and np.array_equal(np.array(im), np.array(Image.open(pgm)))
    # bad keys are refused
    p = run([TOOL, "encode", pgm, pgm + ".bad.png", "-1", " bad=x"], check_rc=False)
    assert p.returncode != 0 and "bad text key" in p.stderr, p.stderr
    assert not os.path.exists(pgm + ".bad.png")


def t_golden_torchvision():
    """Outputs of the real torchvision transforms (tests/ref/gen_image_transforms.py)."""
    with open(os.path.join(GOLDEN, "transforms.json")) as f:
        g = json.load(f)
    n = 0
    for c in g["cases"]:
        src = os.path.join(GOLDEN, c["image"])
        if c["kind"] == "diffusers":
            rec, px = transform(src, c["resolution"], c["interpolation"], "center", 0, False)
        else:
            rec, px = transform(src, c["resolution"], c["interpolation"], "center", 0, False,
                                (c["height"], c["width"]))
        assert rec[2:4] == c["resized_wh"], (c, rec)
        assert list(px.shape) == c["shape_hwc"], (c, px.shape)
        assert hashlib.sha256(px.tobytes()).hexdigest() == c["sha256_hwc_u8"], c
        n += 1
        if "tensor_file" in c:  # ToTensor + Normalize as float32 CHW
            t = np.fromfile(os.path.join(GOLDEN, c["tensor_file"]), "<f4")
            out = os.path.join(tmp, "chw.f32")
            run([TOOL, "chw", os.path.join(tmp, "tf.ppm"), out])
            mine = np.fromfile(out, "<f4")
            assert mine.shape == t.shape and np.array_equal(mine, t), float(np.abs(mine - t).max())
    print(f"# torchvision golden: {n} cases bit-identical")


def t_bomb_and_errors():
    path = decoded["jpg_420_257x190.jpg"]
    p = run([TOOL, "decode", path, os.path.join(tmp, "x.ppm"), str(257 * 190 - 1)], check_rc=False)
    assert p.returncode == 1 and "decompression bomb" in p.stderr, p.stderr
    run([TOOL, "decode", path, os.path.join(tmp, "x.ppm"), str(257 * 190)])
    # format by magic bytes, not extension
    renamed = os.path.join(tmp, "actually_a_jpeg.png")
    with open(path, "rb") as f, open(renamed, "wb") as g:
        g.write(f.read())
    assert run([TOOL, "info", renamed]).stdout.split()[0] == "JPEG"
    # PIL's mode names in probe
    assert run([TOOL, "info", decoded["png_l16_64x48.png"]]).stdout.split()[3] == "I;16"
    assert run([TOOL, "info", decoded["png_p4_trns_64x48.png"]]).stdout.split()[3] == "P"


check("decode == PIL convert('RGB') for every format/mode", t_decode)
check("Resize(shorter side) + CenterCrop == PIL+torchvision arithmetic, 6 filters", t_resize_center_crop)
check("extreme resize ratios == PIL", t_resize_extreme)
check("extreme resize ratios == PIL, scalar kernel", lambda: t_resize_extreme("scalar"))
check("extreme resize ratios == PIL, SSE4.1 kernel", lambda: t_resize_extreme("sse41"))
check("transform records == torchvision formulas (diffusers and ppdiffusers modes)", t_transform_records)
check("RandomCrop offsets and flip", t_random_crop_flip)
check("PNG encode: PIL reads identical pixels, tEXt/iTXt, deterministic bytes", t_png_encode)
check("golden from real torchvision transforms", t_golden_torchvision)
check("bomb limit, magic-byte detection, probe modes", t_bomb_and_errors)
worst = max((d for _, d in report), default=0)
print(f"# overall max |diff| over {len(report)} decode/resize cases: {worst} (tolerance {TOL})")
done()
