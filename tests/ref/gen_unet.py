#!/usr/bin/env python3
"""gen_unet.py — UNet2DConditionModel goldens for tests/unit/test_unet.c.

Run in .venv-ref (torch, diffusers 0.39) by tests/ref/make_goldens.sh. The
models are the deterministic tiny pipelines of tests/fixtures/make_tiny_model.py
(regenerated here and by the C test; never committed).

References are computed by diffusers' own UNet2DConditionModel converted to
float64 (`.double()`), with the sinusoidal timestep embedding also evaluated
in float64 (diffusers evaluates it in float32 even in a double model; the C
op computes it in double and rounds once, see lib/nn/embedding.h). So the
goldens are the exact function of the float32 inputs and weights, and the C
test measures the C code's own error. Beside each reference the plain float32
diffusers result is measured against it ("torch32" in the metadata): the
error PyTorch itself makes, the yardstick for the C tolerances.

Forward goldens (fwd_<config>_<h>x<w>.safetensors): x [B,4,h,w], t [B] (float:
integer and fractional timesteps), ctx [B,L,X], out (float64 reference),
out_torch32. Shapes include non-square latents, latents not divisible by
2^(levels-1) (diffusers' forward_upsample_size path) and odd L.

Gradient goldens (grad_<config>.safetensors): the training objective of
train_text_to_image.py (sd_spec §6) on a fixed batch: noisy =
DDPMScheduler.add_noise(x0, noise, t) (float32, as the script), target = noise
(epsilon) or get_velocity (v_prediction), loss = mse(unet(noisy, t, ctx),
target) (mean over all elements); and the min-SNR-gamma variant
loss_snr = mean_b(w_b mean_chw (pred - target)^2), w = compute_snr weights
(gamma 5). Stored: x0, noise, t (int), ctx, noisy, target, snr_w, loss,
loss_snr, dctx (dL/dctx of the plain loss) and, for the micro models, EVERY
parameter gradient ("grad.<name>"); for sd1-tiny per-tensor gradient norms
("gnorm.<name>") and 8 elements per tensor at indices k*(numel-1)//7
("gsub.<name>"), for both losses ("snr." prefix for the min-SNR variant).
"""
import copy
import json
import math
import os
import subprocess
import sys
import tempfile
import warnings

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

warnings.filterwarnings("ignore")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from diffusers import DDPMScheduler, UNet2DConditionModel  # noqa: E402
from diffusers.training_utils import compute_snr  # noqa: E402
from diffusers.utils import logging as dlogging  # noqa: E402

dlogging.set_verbosity_error()
torch.set_num_threads(2)

ROOT = os.environ.get("SD_ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
OUT = os.path.join(ROOT, "tests", "ref", "golden", "unet")
MAKE = os.path.join(ROOT, "tests", "fixtures", "make_tiny_model.py")
GAMMA = 5.0

# Config variants on the weights of a base model (tensors the variant lacks are
# dropped): what SD checkpoints never use but configs allow. The C test merges
# the same overrides into the base config.json and parses the result.
VARIANTS = {
    "sd1-micro-scaled": ("sd1-micro", {"center_input_sample": True, "mid_block_scale_factor": 1.5,
                                       "resnet_out_scale_factor": 2.0, "flip_sin_to_cos": False, "freq_shift": 1}),
    "sd1-micro-nomid": ("sd1-micro", {"mid_block_type": None}),  # up block 0 concatenates h with itself
}

FWD_CASES = [
    # config, B, h, w, L, timesteps
    ("sd1-tiny", 2, 12, 20, 77, [981.0, 17.25]),
    ("sd1-tiny", 1, 9, 7, 5, [500.5]),
    ("sd2-tiny", 2, 16, 16, 77, [1.0, 999.0]),
    ("sd2-tiny", 2, 10, 14, 13, [250.0, 0.5]),
    ("sd2-hd64", 2, 12, 10, 77, [999.0, 42.5]),
    ("sd1-3down", 2, 10, 14, 77, [999.0, 3.0]),
    ("sd1-3down", 2, 12, 20, 9, [640.0, 128.75]),
    ("sd1-micro", 2, 5, 7, 7, [20.0, 700.0]),
    ("sd2-micro", 2, 7, 9, 5, [10.0, 950.5]),
    ("sd1-micro-scaled", 2, 6, 5, 3, [3.0, 999.0]),
    ("sd1-micro-nomid", 1, 6, 6, 4, [77.0]),
]

GRAD_CASES = [
    # config, B, h, w, L, timesteps, full gradients
    ("sd1-micro", 2, 5, 7, 7, [37, 815], True),
    ("sd2-micro", 2, 7, 9, 5, [120, 604], True),
    ("sd1-tiny", 2, 12, 20, 77, [5, 990], False),
    ("sd1-micro-scaled", 2, 5, 6, 3, [50, 500], False),
    ("sd1-micro-nomid", 2, 6, 7, 4, [3, 333], False),
]


def temb64(t, dim, flip, shift, max_period=10000.0):
    half = dim // 2
    expo = -math.log(max_period) * torch.arange(half, dtype=torch.float64) / (half - shift)
    a = t.double()[:, None] * torch.exp(expo)[None, :]
    e = torch.cat([torch.sin(a), torch.cos(a)], dim=-1)
    if flip:
        e = torch.cat([e[:, half:], e[:, :half]], dim=-1)
    if dim % 2:
        e = F.pad(e, (0, 1))
    return e


def load(name, tmp):
    base, over = VARIANTS.get(name, (name, None))
    d = os.path.join(tmp, base)
    if not os.path.isdir(d):
        subprocess.run([sys.executable, MAKE, "--config", base, d, "--force"], check=True)
    if over is None:
        u32, info = UNet2DConditionModel.from_pretrained(os.path.join(d, "unet"), output_loading_info=True)
        bad = {k: v for k, v in info.items() if v}
        assert not bad, f"{name}: loading info {bad}"
    else:
        cfg = dict(UNet2DConditionModel.load_config(os.path.join(d, "unet")))
        cfg.update(over)
        u32 = UNet2DConditionModel.from_config(cfg)
        sd = load_file(os.path.join(d, "unet", "diffusion_pytorch_model.safetensors"))
        want = u32.state_dict()
        assert set(want) <= set(sd), f"{name}: variant needs tensors the base lacks"
        u32.load_state_dict({k: sd[k] for k in want}, strict=True)
    u32.eval()
    u64 = copy.deepcopy(u32).double().eval()
    tp = u64.time_proj
    u64.time_proj.forward = lambda ts: temb64(ts, tp.num_channels, tp.flip_sin_to_cos, tp.downscale_freq_shift)
    return d, u32, u64


def rel_err(a, ref):
    ref = ref.double()
    rms = ref.pow(2).mean().sqrt().item()
    return (a.double() - ref).abs().max().item() / (rms if rms > 0 else 1.0)


def gen_forward(tmp):
    for name, B, h, w, L, ts in FWD_CASES:
        d, u32, u64 = load(name, tmp)
        g = torch.Generator().manual_seed(1000 + h * 37 + w + B)
        cin, X = u32.config.in_channels, u32.config.cross_attention_dim
        x = torch.randn(B, cin, h, w, generator=g)
        ctx = torch.randn(B, L, X, generator=g)
        t = torch.tensor(ts, dtype=torch.float32)
        with torch.no_grad():
            out64 = u64(x.double(), t, ctx.double()).sample
            out32 = u32(x, t, ctx).sample
        meta = {"config": name, "B": B, "h": h, "w": w, "L": L, "torch32_rel": rel_err(out32, out64)}
        if name in VARIANTS:
            meta["base"], meta["overrides"] = VARIANTS[name]
        save_file({"x": x.contiguous(), "t": t, "ctx": ctx.contiguous(), "out": out64.float().contiguous(),
                   "out_torch32": out32.contiguous()},
                  os.path.join(OUT, f"fwd_{name}_{h}x{w}.safetensors"), metadata={"params": json.dumps(meta)})
        print(f"fwd {name} {B}x{h}x{w} L={L}: torch32 rel err {meta['torch32_rel']:.2e}")


def losses(unet, noisy, t, ctx, target, w):
    pred = unet(noisy, t, ctx).sample
    per = ((pred - target) ** 2).mean(dim=(1, 2, 3))
    return F.mse_loss(pred, target, reduction="mean"), (per * w).mean()


def grads_of(unet, loss, ctx):
    unet.zero_grad(set_to_none=True)
    if ctx.grad is not None:
        ctx.grad = None
    loss.backward(retain_graph=True)
    return {n: p.grad.detach().clone() for n, p in unet.named_parameters()}, ctx.grad.detach().clone()


def sub_idx(numel):
    return sorted(set(k * (numel - 1) // 7 for k in range(8)))


def gen_grad(tmp):
    for name, B, h, w, L, ts, full in GRAD_CASES:
        d, u32, u64 = load(name, tmp)
        sched = DDPMScheduler.from_pretrained(os.path.join(d, "scheduler"))
        vpred = sched.config.prediction_type == "v_prediction"
        g = torch.Generator().manual_seed(7000 + h * 31 + w)
        cin, X = u32.config.in_channels, u32.config.cross_attention_dim
        x0 = torch.randn(B, cin, h, w, generator=g)
        noise = torch.randn(B, cin, h, w, generator=g)
        ctx = torch.randn(B, L, X, generator=g)
        t = torch.tensor(ts, dtype=torch.int64)
        noisy = sched.add_noise(x0, noise, t)
        target = sched.get_velocity(x0, noise, t) if vpred else noise.clone()
        snr = compute_snr(sched, t)
        wts = torch.stack([snr, GAMMA * torch.ones_like(t, dtype=torch.float32)], dim=1).min(dim=1)[0]
        wts = wts / (snr + 1) if vpred else wts / snr

        res = {}
        for tag, unet, dt in (("64", u64, torch.float64), ("32", u32, torch.float32)):
            c = ctx.to(dt).clone().requires_grad_(True)
            l, ls = losses(unet, noisy.to(dt), t, c, target.to(dt), wts.to(dt))
            gr, gc = grads_of(unet, l, c)
            grs, _ = grads_of(unet, ls, c)
            res[tag] = (l.item(), ls.item(), gr, gc, grs)
        l64, ls64, g64, gc64, gs64 = res["64"]
        l32, ls32, g32, gc32, gs32 = res["32"]
        # tensors whose exact gradient vanishes (a per-channel constant before a GroupNorm
        # with one channel per group) hold only rounding noise: measured apart
        grms = math.sqrt(sum(float(v.double().pow(2).sum()) for v in g64.values()) /
                         sum(v.numel() for v in g64.values()))
        vanish = [n for n in g64 if g64[n].double().pow(2).mean().sqrt().item() < 1e-6 * grms]
        errs = sorted(rel_err(g32[n], g64[n]) for n in g64 if n not in vanish)
        noise32 = max([g32[n].abs().max().item() / grms for n in vanish] or [0.0])
        meta = {"config": name, "B": B, "h": h, "w": w, "L": L, "gamma": GAMMA, "v_prediction": vpred,
                **({"base": VARIANTS[name][0], "overrides": VARIANTS[name][1]} if name in VARIANTS else {}),
                "full": full, "torch32_loss_rel": abs(l32 - l64) / abs(l64),
                "torch32_grad_rel_max": errs[-1], "torch32_grad_rel_median": errs[len(errs) // 2],
                "torch32_dctx_rel": rel_err(gc32, gc64), "vanishing": len(vanish),
                "torch32_vanishing_max": noise32}
        tens = {"x0": x0, "noise": noise, "t": t.to(torch.int32), "ctx": ctx, "noisy": noisy, "target": target,
                "snr_w": wts.float(), "loss": torch.tensor([l64], dtype=torch.float64).float(),
                "loss_snr": torch.tensor([ls64], dtype=torch.float64).float(), "dctx": gc64.float()}
        for n, gv in g64.items():
            if full:
                tens["grad." + n] = gv.float()
            else:
                flat = gv.flatten()
                tens["gnorm." + n] = flat.norm().reshape(1).float()
                tens["gsub." + n] = flat[sub_idx(flat.numel())].float()
        for n, gv in gs64.items():  # min-SNR variant: norms and subsets only
            flat = gv.flatten()
            tens["snr.gnorm." + n] = flat.norm().reshape(1).float()
            tens["snr.gsub." + n] = flat[sub_idx(flat.numel())].float()
        tens = {k: v.detach().contiguous() for k, v in tens.items()}
        save_file(tens, os.path.join(OUT, f"grad_{name}.safetensors"), metadata={"params": json.dumps(meta)})
        print(f"grad {name}: loss {l64:.6f} snr-loss {ls64:.6f}; torch32 loss rel {meta['torch32_loss_rel']:.1e}, "
              f"grad rel (to tensor RMS) median {meta['torch32_grad_rel_median']:.1e} "
              f"max {meta['torch32_grad_rel_max']:.1e}, dctx {meta['torch32_dctx_rel']:.1e}; "
              f"{len(vanish)} vanishing, torch32 noise there {noise32:.1e} x RMS")


def main():
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gen_unet.") as tmp:
        gen_forward(tmp)
        gen_grad(tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
