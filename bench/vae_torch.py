#!/usr/bin/env python3
"""vae_torch.py — the PyTorch side of bench/bench_vae.sh (run in .venv-ref).

    vae_torch.py make DIR                 write an SD1.5-shaped VAE component (random
                                          weights of make_tiny_model.py's sd15-shapes
                                          config, seed 0, f32) into DIR
    vae_torch.py run DIR enc|dec SIZE [--batch B] [--warmup N] [--threads T] [--out FILE]
                                          time diffusers' AutoencoderKL, same inputs and
                                          output line as tests/util/vae_bench.c
    vae_torch.py flops DIR enc|dec SIZE   model FLOPs (2·MACs of convs, linears and the
                                          attention matmuls; norms/activations left out,
                                          as in perf.md §1)
    vae_torch.py compare A B              max |A-B| and max |A-B| / RMS(B) of two raw f32 files
"""
import argparse
import json
import os
import resource
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def det_uniform(seed, n):
    """splitmix64(seed·2^32 + i) >> 40 · 2^-23 − 1 (tests/ref/gen_models_forward.py)."""
    with np.errstate(over="ignore"):
        x = (np.uint64(seed) << np.uint64(32)) + np.arange(n, dtype=np.uint64)
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return ((z >> np.uint64(40)).astype(np.float64) * 2.0 ** -23 - 1.0).astype(np.float32)


def machine_busy():
    """CPU seconds of all processes so far (/proc/stat: user nice system irq softirq steal)."""
    try:
        v = [int(x) for x in open("/proc/stat").readline().split()[1:9]]
        return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def self_cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def cmd_make(a):
    sys.path.insert(0, os.path.join(ROOT, "tests", "fixtures"))
    import make_tiny_model as mtm
    from safetensors.numpy import save_file

    cfg = mtm.CONFIGS["sd15-shapes"]["vae"]
    tmp = a.dir + ".tmp"
    os.makedirs(tmp, exist_ok=True)
    mtm.write_json(os.path.join(tmp, "config.json"), cfg)
    sd = mtm.make_state_dict(0, "vae", mtm.vae_params(cfg), "fp32")
    save_file(sd, os.path.join(tmp, "diffusion_pytorch_model.safetensors"), metadata={"format": "pt"})
    os.rename(tmp, a.dir)


def flops(cfg, enc, size):
    """2·MACs of one encode of a size² image / decode to a size² image (batch 1)."""
    boc, lpb = cfg["block_out_channels"], cfg.get("layers_per_block", 2)
    lat, n = cfg.get("latent_channels", 4), len(boc)
    macs = 0

    def conv(ci, co, k, hw):
        return ci * co * k * k * hw

    def resnet(ci, co, hw):
        return conv(ci, co, 3, hw) + conv(co, co, 3, hw) + (conv(ci, co, 1, hw) if ci != co else 0)

    def mid(c, hw):
        return 2 * resnet(c, c, hw) + 4 * c * c * hw + 2 * hw * hw * c

    if enc:
        s = size
        macs += conv(cfg.get("in_channels", 3), boc[0], 3, s * s)
        for i in range(n):
            for j in range(lpb):
                macs += resnet(boc[i - 1] if (j == 0 and i > 0) else boc[i], boc[i], s * s)
            if i < n - 1:
                s //= 2
                macs += conv(boc[i], boc[i], 3, s * s)
        macs += mid(boc[-1], s * s) + conv(boc[-1], 2 * lat, 3, s * s) + conv(2 * lat, 2 * lat, 1, s * s)
    else:
        s = size >> (n - 1)
        macs += conv(lat, lat, 1, s * s) + conv(lat, boc[-1], 3, s * s) + mid(boc[-1], s * s)
        prev = boc[-1]
        for i, c in enumerate(reversed(boc)):
            for j in range(lpb + 1):
                macs += resnet(prev if j == 0 else c, c, s * s)
            if i < n - 1:
                s *= 2
                macs += conv(c, c, 3, s * s)
            prev = c
        macs += conv(boc[0], cfg.get("out_channels", 3), 3, s * s)
    return 2 * macs


def cmd_flops(a):
    cfg = json.load(open(os.path.join(a.dir, "config.json")))
    print(flops(cfg, a.op == "enc", a.size))


def cmd_run(a):
    import torch

    torch.set_num_threads(a.threads)
    from diffusers import AutoencoderKL
    from diffusers.utils import logging as dlogging

    dlogging.set_verbosity_error()
    t0 = time.perf_counter()
    vae = AutoencoderKL.from_pretrained(a.dir).eval().float()
    load_s = time.perf_counter() - t0
    f = 2 ** (len(vae.config.block_out_channels) - 1)
    lat, h = vae.config.latent_channels, a.size // f
    enc = a.op == "enc"
    shape = (a.batch, vae.config.in_channels, a.size, a.size) if enc else (a.batch, lat, h, h)
    x = det_uniform(1 if enc else 2, int(np.prod(shape))).reshape(shape)
    if not enc:
        x = x * np.float32(3)
    x = torch.from_numpy(x)
    with torch.no_grad():
        for _ in range(a.warmup + 1):
            b0, s0 = machine_busy(), self_cpu()
            t0 = time.perf_counter()
            if enc:  # the moments, as sd_vae_encode returns them
                h_ = vae.encoder(x)
                y = vae.quant_conv(h_) if vae.quant_conv is not None else h_
            else:
                y = vae.decode(x).sample
            secs = time.perf_counter() - t0
            others = ((machine_busy() - b0) - (self_cpu() - s0)) / (secs * os.cpu_count())
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(json.dumps({"side": "torch", "op": a.op, "size": a.size, "batch": a.batch, "threads": torch.get_num_threads(),
                      "seconds": round(secs, 3), "others_pct": round(max(others, 0) * 100),
                      "load_seconds": round(load_s, 3), "maxrss_mb": round(rss, 1),
                      "torch": torch.__version__}))
    if a.out:
        y.numpy().astype("<f4").tofile(a.out)


def cmd_compare(a):
    x, r = np.fromfile(a.a, dtype="<f4").astype(np.float64), np.fromfile(a.b, dtype="<f4").astype(np.float64)
    assert x.shape == r.shape, (x.shape, r.shape)
    d = np.abs(x - r).max()
    rms = np.sqrt((r * r).mean())
    print(json.dumps({"max_abs": float(d), "max_rel_rms": float(d / rms), "rms": float(rms)}))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sp = ap.add_subparsers(dest="cmd", required=True)
    p = sp.add_parser("make")
    p.add_argument("dir")
    p = sp.add_parser("run")
    p.add_argument("dir")
    p.add_argument("op", choices=("enc", "dec"))
    p.add_argument("size", type=int)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--warmup", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out")
    p = sp.add_parser("flops")
    p.add_argument("dir")
    p.add_argument("op", choices=("enc", "dec"))
    p.add_argument("size", type=int)
    p = sp.add_parser("compare")
    p.add_argument("a")
    p.add_argument("b")
    a = ap.parse_args()
    {"make": cmd_make, "run": cmd_run, "flops": cmd_flops, "compare": cmd_compare}[a.cmd](a)


if __name__ == "__main__":
    main()
