#!/usr/bin/env python3
"""gen_schedulers.py — goldens for lib/sample/scheduler.c and guidance.c.

Runs diffusers 0.39's schedulers (DDPM, DDIM, PNDM, EulerDiscrete,
EulerAncestralDiscrete, DPMSolverMultistep) through whole sampling loops on a
small latent [2,4,4,4] with an analytic fake model that C reproduces bit for
bit, with all noise (initial latents and per-step noise) taken from a fixed
bank saved in the golden. Also: noise schedules (betas, alphas_cumprod),
training helpers (add_noise, get_velocity, compute_snr, min-SNR weights) and
classifier-free guidance + rescale_noise_cfg.

Writes tests/ref/golden/sched/{cases.json,sched.safetensors}.
Run with .venv-ref/bin/python (torch, diffusers).
"""
import json
import math
import os
import sys

import numpy as np
import torch
from safetensors.numpy import save_file

import diffusers
from diffusers import (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler,
                       EulerAncestralDiscreteScheduler, EulerDiscreteScheduler, PNDMScheduler)
from diffusers.pipelines.stable_diffusion.pipeline_stable_diffusion import rescale_noise_cfg
from diffusers.training_utils import compute_snr
import diffusers.schedulers.scheduling_ddpm as m_ddpm
import diffusers.schedulers.scheduling_ddim as m_ddim
import diffusers.schedulers.scheduling_euler_ancestral_discrete as m_eula
import diffusers.schedulers.scheduling_dpmsolver_multistep as m_dpm

assert diffusers.__version__ == "0.39.0", diffusers.__version__

ROOT = os.environ.get("SD_ROOT", os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(ROOT, "tests", "ref", "golden", "sched")

SHAPE = (2, 4, 4, 4)
N = int(np.prod(SHAPE))
BANK = 60  # initial latents + up to 59 steps (PNDM-PRK 50 -> 59 steps)

# SD1.5 scheduler/scheduler_config.json (sd_spec.md §5)
SD15 = {"_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear",
        "beta_start": 0.00085, "num_train_timesteps": 1000, "set_alpha_to_one": False,
        "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None, "clip_sample": False}

CLASSES = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler, "pndm": PNDMScheduler, "euler": EulerDiscreteScheduler,
           "euler_a": EulerAncestralDiscreteScheduler, "dpm++2m": DPMSolverMultistepScheduler,
           "dpm++2m-karras": DPMSolverMultistepScheduler, "DPMSolverMultistepScheduler": DPMSolverMultistepScheduler,
           "DDIMScheduler": DDIMScheduler, "DDPMScheduler": DDPMScheduler, "EulerDiscreteScheduler":
           EulerDiscreteScheduler}

gen = torch.Generator().manual_seed(20240611)
bank = torch.randn((BANK, N), generator=gen, dtype=torch.float32).numpy()

# ---- per-step noise: every scheduler draws through randn_tensor ------------
cur_step = [0]


def fake_randn(shape, generator=None, device=None, dtype=None, layout=None):
    arr = bank[1 + cur_step[0]].copy()
    return torch.from_numpy(arr).reshape(shape).to(dtype or torch.float32)


for m in (m_ddpm, m_ddim, m_eula, m_dpm):
    m.randn_tensor = fake_randn


# ---- the fake model: C computes the same (libm double, then fp32 ops) -------
B_COEF_K = 0.37
B_COEF_T = 0.01


def fake_model(x, t):
    """e = a(t) * x + b(t)[k] in fp32; a, b from double libm, rounded to fp32."""
    tf = float(t)
    a = np.float32(0.9 * math.sin(tf / 999.0 * math.pi / 2))
    b = np.array([0.1 * math.sin(k * B_COEF_K + tf * B_COEF_T) for k in range(N)], dtype=np.float64).astype(np.float32)
    xn = x.numpy().reshape(-1).astype(np.float32)
    out = a * xn
    out = out + b
    assert out.dtype == np.float32
    return torch.from_numpy(out.reshape(SHAPE))


tensors = {"noise_bank": bank}
cases = []


def record_indices(num_steps):
    if num_steps <= 8:
        return list(range(num_steps))
    return sorted(set([0, 1, 2, num_steps // 2, num_steps - 3, num_steps - 2, num_steps - 1]))


def run_case(name, overrides, steps, eta=None):
    cid = "c%03d" % len(cases)
    cfg = dict(SD15)
    cfg.update(overrides)
    cls = CLASSES[name]
    if name == "dpm++2m-karras":
        s = cls.from_config({**cfg, "use_karras_sigmas": True})
    else:
        s = cls.from_config(cfg)
    s.set_timesteps(steps)
    ts = s.timesteps
    x = torch.from_numpy(bank[0].reshape(SHAPE).copy()) * s.init_noise_sigma
    rec = record_indices(len(ts))
    rows = [x.numpy().reshape(-1).copy()]
    for i, t in enumerate(ts):
        cur_step[0] = i
        xin = s.scale_model_input(x, t)
        e = fake_model(xin, t)
        kw = {}
        if eta is not None:
            kw["eta"] = eta
        x = s.step(e, t, x, return_dict=False, **kw)[0]
        assert x.dtype == torch.float32
        if i in rec:
            rows.append(x.numpy().reshape(-1).copy())
    tensors[cid + ".timesteps"] = ts.numpy().astype(np.float32)
    if hasattr(s, "sigmas") and name not in ("ddpm", "ddim", "pndm") and cls not in (DDIMScheduler, DDPMScheduler):
        tensors[cid + ".sigmas"] = np.asarray(s.sigmas, dtype=np.float32)
    tensors[cid + ".init_noise_sigma"] = np.array([float(s.init_noise_sigma)], dtype=np.float32)
    tensors[cid + ".latents"] = np.stack(rows).astype(np.float32)
    cases.append({"id": cid, "name": name, "overrides": overrides, "steps": steps, "eta": eta if eta is not None else 0.0,
                  "num_steps": len(ts), "record": rec,
                  "timesteps_int": bool(ts.dtype == torch.int64)})


PREDS = ["epsilon", "v_prediction"]
SPACINGS = ["leading", "linspace", "trailing"]

# the main matrix: scheduler x spacing x prediction x steps
for name in ["ddpm", "ddim", "pndm", "euler", "euler_a", "dpm++2m"]:
    for sp in SPACINGS:
        for pred in PREDS:
            for steps in (2, 5, 50):
                run_case(name, {"timestep_spacing": sp, "prediction_type": pred}, steps)
    run_case(name, {}, 1)  # one step, each class's default spacing
# Karras sigmas (Euler: range from the spaced schedule, so spacing matters)
for sp in SPACINGS:
    for pred in PREDS:
        for steps in (5, 50):
            run_case("euler", {"timestep_spacing": sp, "prediction_type": pred, "use_karras_sigmas": True}, steps)
for pred in PREDS:
    for steps in (2, 5, 50):
        run_case("dpm++2m-karras", {"prediction_type": pred}, steps)
run_case("dpm++2m-karras", {"timestep_spacing": "trailing"}, 20)
# DDIM with eta (variance noise from the bank)
for steps in (5, 50):
    run_case("ddim", {}, steps, eta=1.0)
run_case("ddim", {"prediction_type": "v_prediction", "timestep_spacing": "trailing"}, 5, eta=0.5)
# PNDM with PRK warm-up (skip_prk_steps false)
for pred in PREDS:
    for steps in (4, 5, 50):
        run_case("pndm", {"skip_prk_steps": False, "prediction_type": pred}, steps)
# DPM-Solver variants
D = "DPMSolverMultistepScheduler"
for steps in (5, 20, 50):
    run_case(D, {"solver_order": 3}, steps)
    run_case(D, {"algorithm_type": "sde-dpmsolver++"}, steps)
run_case(D, {"solver_order": 3, "algorithm_type": "sde-dpmsolver++"}, 20)
run_case(D, {"solver_order": 1}, 5)
run_case(D, {"solver_type": "heun"}, 20)
run_case(D, {"solver_type": "heun", "algorithm_type": "sde-dpmsolver++", "prediction_type": "v_prediction"}, 20)
run_case(D, {"final_sigmas_type": "sigma_min"}, 5)
run_case(D, {"final_sigmas_type": "sigma_min", "lower_order_final": False}, 20)
run_case(D, {"euler_at_final": True, "final_sigmas_type": "sigma_min"}, 20)
run_case(D, {"solver_order": 3, "use_karras_sigmas": True}, 10)
# sample prediction
for name in ["ddpm", "ddim", "euler", "dpm++2m"]:
    run_case(name, {"prediction_type": "sample"}, 5)
# other noise schedules and options
run_case("ddpm", {"clip_sample": True}, 5)
run_case("ddpm", {"variance_type": "fixed_large"}, 5)
run_case("ddpm", {"variance_type": "fixed_small_log", "beta_schedule": "linear", "beta_start": 0.0001,
                  "beta_end": 0.02}, 5)
run_case("ddim", {"clip_sample": True, "set_alpha_to_one": True, "beta_schedule": "linear", "beta_start": 0.0001,
                  "beta_end": 0.02, "steps_offset": 0}, 5)
run_case("ddim", {"beta_schedule": "squaredcos_cap_v2"}, 5)
run_case("euler", {"beta_schedule": "squaredcos_cap_v2", "use_karras_sigmas": True}, 5)
# trained betas with a short training schedule (T = 100)
run_case("euler", {"num_train_timesteps": 100, "trained_betas": [round(float(b), 6) for b in np.linspace(0.001, 0.12, 100)]}, 5)
run_case("ddim", {"num_train_timesteps": 100, "trained_betas": [round(float(b), 6) for b in np.linspace(0.001, 0.12, 100)]}, 7)
run_case("euler", {"final_sigmas_type": "sigma_min", "timestep_spacing": "leading"}, 5)
run_case("euler", {"use_karras_sigmas": True, "sigma_min": 0.1, "sigma_max": 10.0}, 5)
run_case("ddim", {"rescale_betas_zero_snr": True, "timestep_spacing": "trailing",
                  "prediction_type": "v_prediction"}, 5)
run_case("euler", {"rescale_betas_zero_snr": True, "timestep_spacing": "trailing",
                   "prediction_type": "v_prediction"}, 5)
run_case("euler_a", {"rescale_betas_zero_snr": True, "timestep_spacing": "trailing",
                     "prediction_type": "v_prediction"}, 5)

# ---- timestep/sigma tables for many step counts (no loop) ----------------
SWEEP_N = [1, 2, 3, 4, 7, 10, 13, 20, 25, 33, 50, 61, 75, 100, 103, 150, 333]
sweep = []
sweep_ts, sweep_sg = [], []
for name in ["ddpm", "ddim", "pndm", "euler", "euler_a", "dpm++2m"]:
    for sp in SPACINGS:
        for n in SWEEP_N:
            s = CLASSES[name].from_config({**SD15, "timestep_spacing": sp})
            s.set_timesteps(n)
            ts = s.timesteps.numpy().astype(np.float64)
            # diffusers produces t = -1 (trailing, numpy arange rounding) or
            # t = T (leading + steps_offset): refused by the C side
            valid = bool(ts.min() >= 0 and ts.max() < 1000)
            ent = {"name": name, "spacing": sp, "n": n, "valid": valid, "count": len(ts)}
            if valid:
                ent["ts_off"] = sum(len(a) for a in sweep_ts)
                sweep_ts.append(ts.astype(np.float32))
                if name in ("euler", "euler_a", "dpm++2m"):
                    ent["sg_off"] = sum(len(a) for a in sweep_sg)
                    sweep_sg.append(np.asarray(s.sigmas, dtype=np.float32))
                ent["init_noise_sigma"] = float(s.init_noise_sigma)
            sweep.append(ent)
tensors["sweep.timesteps"] = np.concatenate(sweep_ts)
tensors["sweep.sigmas"] = np.concatenate(sweep_sg)

# ---- noise schedules ------------------------------------------------------
SCHEDULES = {
    "sd15": {},
    "linear": {"beta_schedule": "linear", "beta_start": 0.0001, "beta_end": 0.02},
    "cosine": {"beta_schedule": "squaredcos_cap_v2"},
    "zsnr": {"rescale_betas_zero_snr": True},
}
for label, ov in SCHEDULES.items():
    s = DDIMScheduler.from_config({**SD15, **ov})
    tensors["schedule.%s.betas" % label] = s.betas.numpy()
    tensors["schedule.%s.alphas_cumprod" % label] = s.alphas_cumprod.numpy()

# ---- training helpers: DDPMScheduler as train_text_to_image.py builds it ---
train = DDPMScheduler.from_config(SD15)
tt = torch.tensor([0, 1, 2, 10, 100, 250, 500, 750, 998, 999], dtype=torch.int64)
B = tt.shape[0]
x0 = torch.randn((B, 4, 4, 4), generator=gen, dtype=torch.float32)
eps = torch.randn((B, 4, 4, 4), generator=gen, dtype=torch.float32)
tensors["train.t"] = tt.numpy().astype(np.float32)
tensors["train.x0"] = x0.numpy()
tensors["train.noise"] = eps.numpy()
tensors["train.add_noise"] = train.add_noise(x0, eps, tt).numpy()
tensors["train.velocity"] = train.get_velocity(x0, eps, tt).numpy()
all_t = torch.arange(0, 1000, dtype=torch.int64)
snr = compute_snr(train, all_t)
tensors["train.snr"] = snr.numpy()
gamma = 5.0
w = torch.stack([snr, gamma * torch.ones_like(all_t)], dim=1).min(dim=1)[0]
tensors["train.minsnr_eps"] = (w / snr).numpy()
tensors["train.minsnr_v"] = (w / (snr + 1)).numpy()
lin = DDPMScheduler()  # class defaults: linear 1e-4..0.02
tensors["train.snr_linear"] = compute_snr(lin, all_t).numpy()

# ---- classifier-free guidance ----------------------------------------------
e_u = torch.randn((2, 4, 8, 8), generator=gen, dtype=torch.float32) * 0.8
e_c = e_u * 0.7 + torch.randn((2, 4, 8, 8), generator=gen, dtype=torch.float32) * 0.6
tensors["cfg.uncond"] = e_u.numpy()
tensors["cfg.cond"] = e_c.numpy()
cfg_cases = [(7.5, 0.7), (3.0, 0.3), (1.5, 1.0)]
for j, (g, r) in enumerate(cfg_cases):
    e = e_u + g * (e_c - e_u)
    tensors["cfg.%d.combined" % j] = e.numpy()
    tensors["cfg.%d.rescaled" % j] = rescale_noise_cfg(e, e_c, guidance_rescale=r).numpy()

os.makedirs(OUT, exist_ok=True)
tensors = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in tensors.items()}
save_file(tensors, os.path.join(OUT, "sched.safetensors"),
          # one key: safetensors writes __metadata__ in hash order, and the
          # committed file should not change when regenerated
          metadata={"generator": "tests/ref/gen_schedulers.py (diffusers %s, torch %s)" %
                    (diffusers.__version__, torch.__version__)})
meta = {"shape": list(SHAPE), "model": {"a": "0.9*sin(t/999*pi/2)", "b": "0.1*sin(k*0.37 + t*0.01)"},
        "bank_rows": BANK, "base_config": SD15, "cfg_cases": [{"g": g, "r": r} for g, r in cfg_cases],
        "min_snr_gamma": gamma, "cases": cases, "sweep": sweep}
with open(os.path.join(OUT, "cases.json"), "w") as f:
    json.dump(meta, f, separators=(",", ":"))
    f.write("\n")
print("gen_schedulers: %d cases, %d tensors, %d bytes" %
      (len(cases), len(tensors), os.path.getsize(os.path.join(OUT, "sched.safetensors"))), file=sys.stderr)
