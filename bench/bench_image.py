"""bench_image.py — libsd's image path vs PIL + torchvision, same images, same run.

The work measured is what diffusers' train_text_to_image.py does to every
training image (and sdprep to every image of a dataset):
    reference: transforms.CenterCrop(R)(transforms.Resize(R, interp)(Image.open(f).convert("RGB")))
    ours:      image_tool bench (sd_image_decode_memory + sd_transform_apply: resize of only
               the kept pixels + center crop), bit-identical output (tests/py/test_image_parity.py)
Both read the encoded files from memory, one thread, CPU time of the
process (the machine may be shared: CPU time is less disturbed than wall
time); best of --repeat runs, interleaved. Prints per-core images/s and the
ratio. A second section measures PNG encoding (sdprep's lossless shards):
the default (Paeth + Z_RLE) and every zlib level with adaptive filters.

    .venv-ref/bin/python bench/bench_image.py [--n 20] [--repeat 3] [--quick]
"""
import argparse
import io
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
TOOL = os.path.join(ROOT, os.environ.get("SD_BUILD", "build"), "tests", "util", "image_tool")


def photo_like(w, h, seed):
    """Smooth shapes + texture + mild noise + hard edges: decodes like a photo."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    for _ in range(12):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(40, 300)
        col = rng.uniform(0, 255, 3)
        m = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * r * r))[..., None]
        img = img * (1 - m) + col * m
    img += 18 * np.sin(x / rng.uniform(3, 9))[..., None] * np.cos(y / rng.uniform(3, 9))[..., None]
    for _ in range(6):  # hard-edged rectangles
        x0, y0 = rng.integers(0, w - 50), rng.integers(0, h - 50)
        img[y0:y0 + rng.integers(20, 200), x0:x0 + rng.integers(20, 200)] = rng.uniform(0, 255, 3)
    img += rng.normal(0, 5, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def reference_run(blobs, res, interp, n):
    from torchvision import transforms
    t = transforms.Compose([transforms.Resize(res, interpolation=interp), transforms.CenterCrop(res)])
    c0 = time.process_time()
    for _ in range(n):
        for b in blobs:
            out = t(Image.open(io.BytesIO(b)).convert("RGB"))
            out.im  # noqa: B018 - force the result to exist
    return (time.process_time() - c0) / (n * len(blobs))


def ours_run(paths, res, interp, n):
    p = subprocess.run([TOOL, "bench", str(n), str(res), interp] + paths, capture_output=True, text=True, check=True)
    count, cpu, _wall, _ = p.stdout.split()
    return float(cpu) / int(count)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=10, help="passes over the images per run")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one case, few passes (smoke test)")
    args = ap.parse_args()
    if not os.path.exists(TOOL):
        sys.exit(f"bench_image: {TOOL} missing: run make first")
    import torch
    from torchvision.transforms import InterpolationMode
    torch.set_num_threads(1)

    tmp = tempfile.mkdtemp(prefix="sdbench-img-")
    cases = [  # (label, size, format, save kwargs, resolution, interpolation)
        ("1024x768 JPEG q90 -> 512 lanczos", (1024, 768), "JPEG", {"quality": 90}, 512, "lanczos"),
        ("1024x768 JPEG q90 -> 512 bilinear", (1024, 768), "JPEG", {"quality": 90}, 512, "bilinear"),
        ("768x1024 JPEG q75 -> 512 lanczos", (768, 1024), "JPEG", {"quality": 75}, 512, "lanczos"),
        ("1920x1080 JPEG q90 -> 512 lanczos", (1920, 1080), "JPEG", {"quality": 90}, 512, "lanczos"),
        ("512x512 PNG -> 256 bicubic", (512, 512), "PNG", {}, 256, "bicubic"),
        ("400x300 JPEG q90 -> 512 lanczos (upscale)", (400, 300), "JPEG", {"quality": 90}, 512, "lanczos"),
    ]
    if args.quick:
        cases, args.n, args.repeat = cases[:1], 2, 1
    print(f"# one core, CPU time, best of {args.repeat}; {args.n} passes over 4 images per run")
    print(f"{'case':44s} {'PIL+tv img/s':>13s} {'libsd img/s':>12s} {'ratio':>6s}")
    for label, (w, h), fmt, kw, res, interp in cases:
        paths, blobs = [], []
        for i in range(4):
            path = os.path.join(tmp, f"{label.split()[0]}_{fmt}_{i}.{fmt.lower()}")
            Image.fromarray(photo_like(w, h, i)).save(path, fmt, **kw)
            paths.append(path)
            blobs.append(open(path, "rb").read())
        mode = getattr(InterpolationMode, interp.upper())
        ref, ours = [], []
        for _ in range(args.repeat):
            ref.append(reference_run(blobs, res, mode, args.n))
            ours.append(ours_run(paths, res, interp, args.n))
        r, o = min(ref), min(ours)
        print(f"{label:44s} {1 / r:13.1f} {1 / o:12.1f} {r / o:6.2f}x")
        sys.stdout.flush()

    # PNG encoding: a 512x512 photo-like RGB image (what sdprep stores)
    print("\n# PNG encode, 512x512 photo-like RGB (JPEG q90 round trip, then resized), one core")
    src = os.path.join(tmp, "png_src.ppm")
    b = io.BytesIO()
    Image.fromarray(photo_like(1024, 768, 0)).save(b, "JPEG", quality=90)
    Image.open(b).convert("RGB").resize((512, 512), Image.LANCZOS).save(src)
    raw = 512 * 512 * 3
    print(f"{'level':>9s} {'bytes':>9s} {'ratio':>6s} {'ms/img':>8s} {'MB/s in':>8s}")
    for level in [-1] + list(range(10)):
        best = None
        for _ in range(args.repeat):
            p = subprocess.run([TOOL, "bench-png", src, str(level), str(max(2, args.n))], capture_output=True,
                               text=True, check=True)
            size, cpu = p.stdout.split()
            t = float(cpu) / max(2, args.n)
            best = t if best is None else min(best, t)
        name = "fast(-1)" if level < 0 else str(level)
        print(f"{name:>9s} {int(size):9d} {int(size) / raw:6.3f} {best * 1000:8.2f} {raw / best / 1e6:8.1f}")
    with Image.open(src) as im:
        t0 = time.process_time()
        for _ in range(max(2, args.n)):
            b = io.BytesIO()
            im.save(b, "PNG")
        t = (time.process_time() - t0) / max(2, args.n)
        print(f"  PIL default save: {len(b.getvalue())} bytes, {t * 1000:.2f} ms/img")


if __name__ == "__main__":
    main()
