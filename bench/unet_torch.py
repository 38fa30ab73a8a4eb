#!/usr/bin/env python3
"""unet_torch.py — the PyTorch side of bench/bench_unet.sh (run in .venv-ref).

    unet_torch.py forward|train MODEL_DIR [--batch B] [--size H W] [--ctx-len L]
                  [--iters N] [--warmup N] [--threads T] [--checkpointing]

Loads MODEL_DIR/unet with diffusers in float32 and times what
tests/util/unet_tool times: forward = unet(x, t, ctx) under no_grad; train =
zero_grad(set_to_none), forward in train mode, F.mse_loss against a random
target, loss.backward() (no optimizer). Prints one JSON line with the same
keys as unet_tool (peak RSS overall and during the timed iterations: VmHWM is
reset after loading through /proc/self/clear_refs).
"""
import argparse
import json
import os
import sys
import time
import warnings

warnings.filterwarnings("ignore")


def vm_kb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return -1


def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("forward", "train"))
    ap.add_argument("model")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--size", type=int, nargs=2, default=(32, 32))
    ap.add_argument("--ctx-len", type=int, default=77)
    ap.add_argument("--iters", type=int, default=1)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--checkpointing", action="store_true")
    a = ap.parse_args()

    import torch
    import torch.nn.functional as F
    from diffusers import UNet2DConditionModel
    from diffusers.utils import logging as dlogging

    dlogging.set_verbosity_error()
    torch.set_num_threads(a.threads)
    t0 = time.time()
    unet = UNet2DConditionModel.from_pretrained(os.path.join(a.model, "unet"), torch_dtype=torch.float32)
    load = time.time() - t0
    B, (H, W), L = a.batch, a.size, a.ctx_len
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(B, unet.config.in_channels, H, W, generator=g)
    ctx = torch.randn(B, L, unet.config.cross_attention_dim, generator=g)
    target = torch.randn(B, unet.config.out_channels, H, W, generator=g)
    t = torch.tensor([(37 + 411 * b) % 1000 for b in range(B)], dtype=torch.int64)
    if a.mode == "train":
        unet.train()
        if a.checkpointing:
            unet.enable_gradient_checkpointing()
    else:
        unet.eval()
    rss_loaded, hwm_load = vm_kb("VmRSS"), vm_kb("VmHWM")
    times, loss_v, out = [], 0.0, None
    for it in range(a.warmup + a.iters):
        if it == a.warmup:
            reset_peak()
        s = time.time()
        if a.mode == "train":
            unet.zero_grad(set_to_none=True)
            out = unet(x, t, ctx).sample
            loss = F.mse_loss(out, target, reduction="mean")
            loss.backward()
            loss_v = loss.item()
        else:
            with torch.no_grad():
                out = unet(x, t, ctx).sample
        e = time.time() - s
        print(f"unet_torch.py: {a.mode} iteration {it}: {e:.3f} s", file=sys.stderr)
        if it >= a.warmup:
            times.append(e)
    hwm = vm_kb("VmHWM")
    print(json.dumps({
        "impl": "torch", "mode": a.mode, "batch": B, "h": H, "w": W, "L": L, "threads": torch.get_num_threads(),
        "checkpointing": int(a.checkpointing), "iters": a.iters, "sec_min": round(min(times), 4),
        "sec_mean": round(sum(times) / len(times), 4), "load_sec": round(load, 2),
        "rss_loaded_mb": round(rss_loaded / 1024, 1), "peak_rss_mb": round(max(hwm, hwm_load) / 1024, 1),
        "peak_rss_run_mb": round(hwm / 1024, 1), "out_rms": round(out.detach().pow(2).mean().sqrt().item(), 6),
        "loss": round(loss_v, 6), "torch": torch.__version__}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
