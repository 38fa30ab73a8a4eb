#!/usr/bin/env python3
"""bench_sdencode.py — sdencode images/s vs diffusers' VAE encode, same
machine, same resolution, same threads, same run.

Model: the SD1.5 architecture with random weights (tests/fixtures/
make_tiny_model.py --config sd15-shapes, cached in .cache/). Inputs: N
synthetic images prepared by sdprep at RES. The reference is what
train_text_to_image.py does per step for the latents:
vae.encode(pixel_values).latent_dist.sample() in fp32 on the CPU (batch B,
torch threads = T). sdencode's time includes reading the prep shards,
decoding the PNGs and writing latent shards. Environment: BENCH_ENC_N (8),
BENCH_ENC_RES (256), BENCH_THREADS (2).
"""
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
import io

import numpy as np
import torch
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from diffusers import AutoencoderKL  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BIN = os.path.join(ROOT, os.environ.get("SD_BUILD", "build"), "bin")
PY = os.path.join(ROOT, ".venv-test", "bin", "python")
N = int(os.environ.get("BENCH_ENC_N", "8"))
RES = int(os.environ.get("BENCH_ENC_RES", "256"))
T = int(os.environ.get("BENCH_THREADS", "2"))
B = 4


def sd15(root):
    d = os.path.join(root, ".cache", "sd15-shapes")
    if not os.path.isfile(os.path.join(d, "model_index.json")):
        subprocess.run([PY, f"{ROOT}/tests/fixtures/make_tiny_model.py", "--config", "sd15-shapes", "--force", d],
                       check=True)
    return d


def main():
    torch.set_num_threads(T)
    model = sd15(ROOT)
    tmp = tempfile.mkdtemp(prefix="bench-sdencode-")
    subprocess.run([PY, f"{ROOT}/tests/fixtures/make_dataset.py", f"{tmp}/data", "--n", str(N), "--min-size",
                    str(RES), "--max-size", str(2 * RES), "--formats", "jpg"], check=True)
    subprocess.run([f"{BIN}/sdprep", "--train_data_dir", f"{tmp}/data", "--pretrained_model_name_or_path", model,
                    "-o", f"{tmp}/prep", "--resolution", str(RES), "-q"], check=True)
    # reference: the same pixels through diffusers' VAE
    px = []
    man = json.load(open(f"{tmp}/prep/manifest.json"))
    for sh in man["shards"]:
        with tarfile.open(f"{tmp}/prep/{sh['name']}") as t:
            for m in t.getmembers():
                if m.name.endswith(".png"):
                    a = np.asarray(Image.open(io.BytesIO(t.extractfile(m).read())).convert("RGB"))
                    px.append(torch.from_numpy(a.copy()).permute(2, 0, 1).float() / 127.5 - 1)
    x = torch.stack(px)
    vae = AutoencoderKL.from_pretrained(f"{model}/vae").eval()
    with torch.no_grad():
        vae.encode(x[:1]).latent_dist.sample()  # warm-up
        t0 = time.perf_counter()
        for i in range(0, N, B):
            vae.encode(x[i:i + B]).latent_dist.sample()
        ref = time.perf_counter() - t0
    del vae
    # sdencode (one warm-up-free run; model load excluded by timing the log's own rate is not possible,
    # so time the whole process and subtract a run with zero work is overkill: report both)
    t0 = time.perf_counter()
    p = subprocess.run([f"{BIN}/sdencode", f"{tmp}/prep", "--pretrained_model_name_or_path", model, "-o",
                        f"{tmp}/lat", "--batch_size", str(B), "-j", str(T), "-q"], check=True, capture_output=True,
                       text=True)
    wall = time.perf_counter() - t0
    rate = float(p.stderr.split(" images/s")[0].rsplit(" ", 1)[1])
    ref_ips = N / ref
    line = (f"sdencode bench: {N} images at {RES}px, {T} threads: diffusers VAE encode {ref_ips:.2f} img/s, "
            f"sdencode {rate:.2f} img/s (encode loop; {N / wall:.2f} img/s incl. model load), "
            f"ratio {rate / ref_ips:.2f}x")
    print(line)
    os.makedirs(f"{ROOT}/bench/out", exist_ok=True)
    json.dump({"n": N, "res": RES, "threads": T, "diffusers_img_s": ref_ips, "sdencode_img_s": rate,
               "sdencode_wall_img_s": N / wall}, open(f"{ROOT}/bench/out/sdencode.json", "w"), indent=2)


if __name__ == "__main__":
    main()
