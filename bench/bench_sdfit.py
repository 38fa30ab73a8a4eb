#!/usr/bin/env python3
"""bench_sdfit.py — seconds per optimizer step and peak RSS of sdfit vs the
reference training step (diffusers train_text_to_image.py's step code in
PyTorch, CPU, fp32), same model, batch, latent size and threads, same run.

Per step, both sides do: latents from VAE moments (reference: or vae.encode,
below), noise, timesteps, add_noise, the frozen text encoder on the token
ids, UNet forward + MSE + backward, clip_grad_norm_(1.0), AdamW, LR
schedule. The reference is measured twice: "no VAE" (latents given, as sdfit
trains on sdencode's cached moments) and "with VAE" (what the reference
script really does every step: vae.encode(pixel_values).latent_dist.sample()).

Configs (BENCH_SDFIT_CONFIGS, comma-separated; default both):
  sd15-32: the SD1.5 architecture with random weights (make_tiny_model.py
           --config sd15-shapes, cached in .cache/), 256 px images = 32x32
           latents, batch BENCH_SDFIT_B15 (1); ~14 GB per side (fp32 weights,
           grads, Adam moments)
  tiny:    sd1-tiny at 32 px (16x16 latents), batch 8
Time per step = median over the steps after the first (warm-up); peak RSS =
the process's maximum resident set (getrusage) over the whole run. Threads
BENCH_THREADS (2); steps BENCH_SDFIT_STEPS (3 for sd15, 10 for tiny).
Results: printed and written to bench/out/sdfit.json.
"""
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BIN = os.path.join(ROOT, os.environ.get("SD_BUILD", "build"), "bin")
PY = os.path.join(ROOT, ".venv-test", "bin", "python")
T = int(os.environ.get("BENCH_THREADS", "2"))
CACHE = os.path.join(ROOT, ".cache")


def make_model(cfg):
    d = os.path.join(CACHE, cfg)
    if not os.path.isfile(os.path.join(d, "model_index.json")):
        subprocess.run([PY, f"{ROOT}/tests/fixtures/make_tiny_model.py", "--config", cfg, "--force", d], check=True)
    return d


def make_latents(model, name, res, n):
    d = os.path.join(CACHE, f"bench-sdfit-{name}")
    lat = os.path.join(d, "lat")
    if not os.path.isfile(os.path.join(lat, "manifest.json")) or '"complete": true' not in open(
            os.path.join(lat, "manifest.json")).read():
        shutil.rmtree(d, ignore_errors=True)
        subprocess.run([PY, f"{ROOT}/tests/fixtures/make_dataset.py", f"{d}/data", "--n", str(n), "--min-size",
                        str(res), "--max-size", str(2 * res)], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([f"{BIN}/sdprep", "--train_data_dir", f"{d}/data", "--pretrained_model_name_or_path", model,
                        "-o", f"{d}/prep", "--resolution", str(res), "-q", "--force"], check=True)
        subprocess.run([f"{BIN}/sdencode", f"{d}/prep", "--pretrained_model_name_or_path", model, "-o", lat,
                        "-j", str(T), "-q", "--force"], check=True)
    return lat


def wait_for_memory(gb, minutes=20):
    """The machine is shared: wait until gb GiB are available (or give up and try)."""
    for _ in range(minutes * 6):
        with open("/proc/meminfo") as f:
            avail = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:")) / 2**20
        if avail >= gb:
            return
        print(f"bench_sdfit.py: waiting for {gb} GiB of free memory ({avail:.1f} available)", file=sys.stderr)
        time.sleep(10)


def peak_of(cmd):
    """Run cmd in a fresh child process; return (stderr, its peak RSS in MB)."""
    wrapper = ("import resource, subprocess, sys\n"
               "r = subprocess.run(sys.argv[1:], stderr=subprocess.PIPE, text=True)\n"
               "sys.stderr.write(r.stderr)\n"
               "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
               "sys.exit(r.returncode)\n")
    p = subprocess.run([sys.executable, "-c", wrapper] + cmd, capture_output=True, text=True)
    if p.returncode:
        raise RuntimeError(f"{cmd[0]} failed: {p.stderr[-2000:]}")
    return p.stderr, int(p.stdout.split()[-1]) / 1024


def run_sdfit(model, lat, B, steps):
    with tempfile.TemporaryDirectory(prefix="bench-sdfit-", dir=CACHE) as out:
        cmd = [f"{BIN}/sdfit", lat, "--pretrained_model_name_or_path", model, "--output_dir", out,
               "--train_batch_size", str(B), "--max_train_steps", str(steps), "--checkpointing_steps", "1000000",
               "--lr_warmup_steps", "0", "--seed", "0", "--report_to", "none", "-j", str(T), "-q"]
        _, rss = peak_of(cmd)
        log = [json.loads(x) for x in open(os.path.join(out, "logs", "train_log.jsonl"))]
    times = [j["time"] for j in log]
    return {"sec_per_step": statistics.median(times[1:]) if len(times) > 1 else times[0], "first_step": times[0],
            "peak_rss_mb": round(rss), "loss": log[-1]["loss"]}


def run_torch(model, lat, B, steps, with_vae, res):
    cmd = [sys.executable, os.path.abspath(__file__), "--torch-side", model, lat, str(B), str(steps),
           "1" if with_vae else "0", str(res)]
    err, rss = peak_of(cmd)
    r = json.loads(err.strip().splitlines()[-1])
    r["peak_rss_mb"] = round(rss)
    return r


def torch_side(model, lat, B, steps, with_vae, res):
    """The reference step, as train_text_to_image.py orders it (one process)."""
    import io
    import tarfile
    import warnings

    import numpy as np
    import torch
    import torch.nn.functional as F
    from safetensors.numpy import load as st_load

    warnings.filterwarnings("ignore")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from diffusers.optimization import get_scheduler
    from diffusers.utils import logging as dlogging
    from transformers import CLIPTextModel

    dlogging.set_verbosity_error()
    torch.set_num_threads(T)
    torch.manual_seed(0)
    man = json.load(open(os.path.join(lat, "manifest.json")))
    means, logvars, ids = [], [], []
    with tarfile.open(os.path.join(lat, man["shards"][0]["name"])) as tf:
        for m in tf.getmembers():
            data = tf.extractfile(m).read()
            if m.name.endswith(".latent.safetensors"):
                t = st_load(data)
                means.append(torch.from_numpy(t["mean"]).float())
                logvars.append(torch.from_numpy(t["logvar"]).float())
            elif m.name.endswith(".tokens.safetensors"):
                ids.append(torch.from_numpy(st_load(data)["input_ids"][0]).long())
    n = len(means)
    sched = DDPMScheduler.from_pretrained(os.path.join(model, "scheduler"))
    te = CLIPTextModel.from_pretrained(os.path.join(model, "text_encoder"))
    te.requires_grad_(False)
    unet = UNet2DConditionModel.from_pretrained(os.path.join(model, "unet"))
    unet.train()
    vae = None
    if with_vae:
        vae = AutoencoderKL.from_pretrained(os.path.join(model, "vae"))
        vae.requires_grad_(False)
    sf = 0.18215
    optimizer = torch.optim.AdamW(unet.parameters(), lr=1e-4, betas=(0.9, 0.999), weight_decay=1e-2, eps=1e-8)
    lr_scheduler = get_scheduler("constant", optimizer=optimizer, num_warmup_steps=0, num_training_steps=steps)
    times, loss = [], None
    for s in range(steps):
        idx = [(s * B + b) % n for b in range(B)]
        t0 = time.perf_counter()
        if vae is not None:
            px = torch.rand(B, 3, res, res) * 2 - 1
            latents = vae.encode(px).latent_dist.sample() * sf
        else:
            mean = torch.stack([means[i] for i in idx])
            logvar = torch.stack([logvars[i] for i in idx])
            latents = (mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)) * sf
        noise = torch.randn_like(latents)
        timesteps = torch.randint(0, sched.config.num_train_timesteps, (B,)).long()
        noisy = sched.add_noise(latents, noise, timesteps)
        ehs = te(torch.stack([ids[i] for i in idx]), return_dict=False)[0]
        pred = unet(noisy, timesteps, ehs, return_dict=False)[0]
        loss = F.mse_loss(pred.float(), noise.float(), reduction="mean")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad()
        times.append(time.perf_counter() - t0)
        print(f"torch step {s}: {times[-1]:.3f} s", file=sys.stderr)
    print(json.dumps({"sec_per_step": statistics.median(times[1:]) if len(times) > 1 else times[0],
                      "first_step": times[0], "loss": loss.item(), "torch": torch.__version__}), file=sys.stderr)
    return 0


CONFIGS = {
    "sd15-32": dict(model="sd15-shapes", res=256, n=4, B=int(os.environ.get("BENCH_SDFIT_B15", "1")),
                    steps=int(os.environ.get("BENCH_SDFIT_STEPS", "3")), mem_gb=17),
    "tiny": dict(model="sd1-tiny", res=32, n=16, B=8, steps=int(os.environ.get("BENCH_SDFIT_STEPS", "10"))),
}


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--torch-side":
        a = sys.argv[2:]
        return torch_side(a[0], a[1], int(a[2]), int(a[3]), a[4] == "1", int(a[5]))
    os.makedirs(CACHE, exist_ok=True)
    results = []
    names = os.environ.get("BENCH_SDFIT_CONFIGS", "tiny,sd15-32").split(",")
    for name in names:
        c = CONFIGS[name]
        model = make_model(c["model"])
        lat = make_latents(model, name, c["res"], c["n"])
        need = c.get("mem_gb", 0)
        wait_for_memory(need)
        ours = run_sdfit(model, lat, c["B"], c["steps"])
        wait_for_memory(need)
        ref = run_torch(model, lat, c["B"], c["steps"], False, c["res"])
        wait_for_memory(need)
        refv = run_torch(model, lat, c["B"], c["steps"], True, c["res"])
        r = {"config": name, "batch": c["B"], "latent": c["res"] // 8 if c["model"] != "sd1-tiny" else c["res"] // 2,
             "threads": T, "sdfit": ours, "torch_no_vae": ref, "torch_with_vae": refv,
             "speedup_no_vae": round(ref["sec_per_step"] / ours["sec_per_step"], 2),
             "speedup_with_vae": round(refv["sec_per_step"] / ours["sec_per_step"], 2)}
        results.append(r)
        print(f"{name}: batch {c['B']}, {T} threads: sdfit {ours['sec_per_step']:.3f} s/step "
              f"(peak RSS {ours['peak_rss_mb']} MB); torch {ref['sec_per_step']:.3f} s/step ({ref['peak_rss_mb']} MB), "
              f"with vae.encode {refv['sec_per_step']:.3f} s/step ({refv['peak_rss_mb']} MB); "
              f"speedup {r['speedup_no_vae']}x (no VAE), {r['speedup_with_vae']}x (with VAE)", flush=True)
    os.makedirs(os.path.join(ROOT, "bench", "out"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "out", "sdfit.json"), "w") as f:
        json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
