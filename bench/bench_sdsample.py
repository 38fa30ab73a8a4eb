#!/usr/bin/env python3
"""bench_sdsample.py — sdsample vs diffusers' StableDiffusionPipeline on the
CPU: seconds per denoising step and per image, same machine, same threads,
same run. Runs alternate per size (sdsample, then diffusers), one run per
configuration; the machine may be shared, so the load average is printed.

Model: the SD1.5 architecture with random weights (tests/fixtures/
make_tiny_model.py --config sd15-shapes, cached in .cache/; 1.07 G parameters,
fp32). Both sides render one image of one prompt with classifier-free
guidance (UNet batch 2), the model's PNDM scheduler (PLMS: STEPS + 1 UNet
calls), at 256 and 512 px, from the same starting noise (sdsample's Philox
noise, passed to diffusers as latents=).

  s/step   = the median time of the UNet steps after the first (one CFG
             step: UNet on batch 2, guidance, scheduler), from sdsample -v's
             per-step lines and diffusers' callback_on_step_end timestamps.
             The mean over all steps, including the first (which also runs the
             text encoder and plans/allocates activations), is printed too.
  s/image  = the whole call: text encoder, all steps, VAE decode and the image
             (diffusers: PIL image; sdsample: PNG written, atomically).

diffusers' side: torch.set_num_threads(THREADS), fp32, torch.no_grad (the
pipeline's own), no warm-up (sdsample gets none either). Environment:
BENCH_THREADS (2), BENCH_SAMPLE_STEPS (3), BENCH_SAMPLE_RES ("256,512"),
BENCH_SAMPLE_REPEATS (1: alternating sdsample/diffusers runs per size; with
more, each side's best run counts). The best single step (min) is printed
next to the median: on a shared machine it is the least disturbed figure.
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from diffusers import StableDiffusionPipeline  # noqa: E402
from safetensors.numpy import load_file  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BIN = os.path.join(ROOT, os.environ.get("SD_BUILD", "build"), "bin")
PY = os.path.join(ROOT, ".venv-test", "bin", "python")
T = int(os.environ.get("BENCH_THREADS", "2"))
STEPS = int(os.environ.get("BENCH_SAMPLE_STEPS", "3"))
RES = [int(r) for r in os.environ.get("BENCH_SAMPLE_RES", "256,512").split(",")]
REPEATS = int(os.environ.get("BENCH_SAMPLE_REPEATS", "1"))
PROMPT = "a photo of an astronaut riding a horse on mars"
SEED = 42


def sd15(root):
    d = os.path.join(root, ".cache", "sd15-shapes")
    if not os.path.isfile(os.path.join(d, "model_index.json")):
        subprocess.run([PY, f"{ROOT}/tests/fixtures/make_tiny_model.py", "--config", "sd15-shapes", "--force", d],
                       check=True)
    return d


def run_sdsample(model, res, out):
    t0 = time.perf_counter()
    p = subprocess.run([f"{BIN}/sdsample", "--pretrained_model_name_or_path", model, "--prompt", PROMPT,
                        "--num_inference_steps", str(STEPS), "--seed", str(SEED), "--height", str(res), "--width",
                        str(res), "-o", out, "--force", "--save_latents", "--no_model_hash", "-j", str(T), "-v"],
                       check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    m = re.search(r"in ([0-9.]+) s \(\+([0-9.]+) s loading\): ([0-9.]+) s/step .*?, ([0-9.]+) s/image", p.stderr)
    assert m, p.stderr
    steps = [float(x) for x in re.findall(r"step \d+/\d+ ([0-9.]+) s", p.stderr)]
    return {"steps": steps, "s_image": float(m.group(4)), "load_s": float(m.group(2)), "wall_s": wall}


def run_diffusers(pipe, res, init):
    marks = []

    def cb(p, i, t, kw):
        marks.append(time.perf_counter())
        return {}

    t0 = time.perf_counter()
    img = pipe(PROMPT, num_inference_steps=STEPS, height=res, width=res, latents=torch.from_numpy(init),
               callback_on_step_end=cb).images[0]
    t1 = time.perf_counter()
    steps = [b - a for a, b in zip([t0] + marks[:-1], marks)]
    return {"steps": steps, "s_image": t1 - t0}, np.asarray(img)


def main():
    torch.set_num_threads(T)
    model = sd15(ROOT)
    tmp = tempfile.mkdtemp(prefix="bench-sdsample-")
    pipe = StableDiffusionPipeline.from_pretrained(model, safety_checker=None, requires_safety_checker=False,
                                                   torch_dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    results = []
    for res in RES:  # sdsample first (its noise is diffusers' input), then diffusers, per size
        load0 = os.getloadavg()[0]
        runs_o, runs_r = [], []
        for _ in range(REPEATS):
            runs_o.append(run_sdsample(model, res, f"{tmp}/{res}"))
            init = load_file(f"{tmp}/{res}/00000-{SEED}.safetensors")["init_latents"]
            ref, img = run_diffusers(pipe, res, init)
            runs_r.append(ref)
        load1 = os.getloadavg()[0]
        from PIL import Image
        mine = np.asarray(Image.open(f"{tmp}/{res}/00000-{SEED}.png"))
        px = int(np.abs(mine.astype(int) - img.astype(int)).max())
        calls = len(runs_r[0]["steps"])
        # steady state: the median of the calls after the first (the first also encodes the prompt and
        # plans/allocates activations on both sides); best = the fastest such call; per side, the best run
        med = lambda runs: min(float(np.median(x["steps"][1:])) for x in runs)  # noqa: E731
        best = lambda runs: min(min(x["steps"][1:]) for x in runs)  # noqa: E731
        img_t = lambda runs: min(x["s_image"] for x in runs)  # noqa: E731
        r = {"res": res, "threads": T, "steps": STEPS, "unet_calls": calls, "repeats": REPEATS, "loadavg": [load0, load1],
             "diffusers_step_times": [x["steps"] for x in runs_r], "sdsample_step_times": [x["steps"] for x in runs_o],
             "diffusers_s_step": med(runs_r), "sdsample_s_step": med(runs_o),
             "diffusers_s_step_best": best(runs_r), "sdsample_s_step_best": best(runs_o),
             "diffusers_s_image": img_t(runs_r), "sdsample_s_image": img_t(runs_o),
             "sdsample_load_s": runs_o[0]["load_s"], "max_pixel_diff": px}
        r["speedup_step"] = r["diffusers_s_step"] / r["sdsample_s_step"]
        r["speedup_step_best"] = r["diffusers_s_step_best"] / r["sdsample_s_step_best"]
        r["speedup_image"] = r["diffusers_s_image"] / r["sdsample_s_image"]
        results.append(r)
        print(f"sdsample bench {res}px, CFG (UNet batch 2), PNDM {STEPS} steps = {calls} UNet calls, {T} threads, "
              f"{REPEATS} run(s) each (load avg {load0:.1f}->{load1:.1f}):\n"
              f"  diffusers {r['diffusers_s_step']:.2f} s/step (best {r['diffusers_s_step_best']:.2f}), "
              f"{r['diffusers_s_image']:.1f} s/image\n"
              f"  sdsample  {r['sdsample_s_step']:.2f} s/step (best {r['sdsample_s_step_best']:.2f}), "
              f"{r['sdsample_s_image']:.1f} s/image\n"
              f"  speedup {r['speedup_step']:.2f}x per step (best steps {r['speedup_step_best']:.2f}x), "
              f"{r['speedup_image']:.2f}x per image; same image within {px} levels")
        sys.stdout.flush()
    os.makedirs(f"{ROOT}/bench/out", exist_ok=True)
    json.dump(results, open(f"{ROOT}/bench/out/sdsample.json", "w"), indent=2)


if __name__ == "__main__":
    main()
