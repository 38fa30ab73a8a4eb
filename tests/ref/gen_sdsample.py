#!/usr/bin/env python3
"""gen_sdsample.py — goldens for sdsample / lib/sample/txt2img.c: diffusers'
StableDiffusionPipeline on the tiny pipelines, fed sdtools' own noise.

Models: sd1-tiny (epsilon, PNDM config) and sd2-tiny (v_prediction, DDIM
config) from tests/fixtures/make_tiny_model.py, loaded with
StableDiffusionPipeline.from_pretrained (fp32, CPU).

Noise. sdtools draws its noise from Philox4x32-10 (lib/core/rng.h): image j of
a run with seed S starts from normal_at(S + j, LATENT_STREAM, 0, C*h*w) and a
stochastic scheduler's step i adds normal_at(S + j, STEP_STREAM + i, 0, ...).
philox_normal() below re-implements that stream in numpy from its
specification (not by calling the C code), and the pipeline gets
  * latents=  the starting noise of every image (as sdsample --seed S draws it);
  * per-step noise: every scheduler draws through randn_tensor; the scheduler
    modules' randn_tensor is replaced by one returning the Philox step noise of
    the current step (the step counter advances in callback_on_step_end).
So a C run with the same seed reproduces the run exactly in its randomness,
stochastic schedulers (DDPM, DDIM eta > 0, Euler a, DPM++ 2M SDE) included, and
the test needs no hook.

Per case (cases.json: the options as sdsample spells them) the golden keeps
  CASE.latents [n, C, h, w] f32  final latents (what output_type="latent" returns)
  CASE.image   [n, H, W, 3] u8   the pipeline's PIL output (VaeImageProcessor
                                 postprocess: (x*.5+.5).clamp(0,1), *255, round)
  CASE.init    [n, C, h, w] f32  the starting noise (first cases only: checks the
                                 C noise against this independent implementation)
Writes tests/ref/golden/sdsample/{cases.json,golden.safetensors}.
Run with .venv-ref/bin/python; needs .venv-test for the fixture script.
"""
import json
import math
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from safetensors.numpy import save_file

os.environ.setdefault("HF_HUB_OFFLINE", "1")
import diffusers  # noqa: E402
from diffusers import (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler,  # noqa: E402
                       EulerAncestralDiscreteScheduler, EulerDiscreteScheduler, PNDMScheduler,
                       StableDiffusionPipeline)
import diffusers.schedulers.scheduling_ddim as m_ddim  # noqa: E402
import diffusers.schedulers.scheduling_ddpm as m_ddpm  # noqa: E402
import diffusers.schedulers.scheduling_dpmsolver_multistep as m_dpm  # noqa: E402
import diffusers.schedulers.scheduling_euler_ancestral_discrete as m_eula  # noqa: E402

assert diffusers.__version__ == "0.39.0", diffusers.__version__

ROOT = os.environ.get("SD_ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
PY = os.path.join(ROOT, ".venv-test", "bin", "python")
OUT = os.path.join(ROOT, "tests", "ref", "golden", "sdsample")

LATENT_STREAM = 0x6C6174656E740000  # SD_TXT2IMG_LATENT_STREAM ("latent")
STEP_STREAM = 0x7374657000000000    # SD_TXT2IMG_STEP_STREAM ("step")

# ---------------------------------------------------------------- Philox4x32-10 (formats: lib/core/rng.h)
M32 = np.uint64(0xFFFFFFFF)


def philox_normal(seed, stream, n, offset=0):
    """normal_at(seed, stream, offset, n): block c = philox(counter {lo(c), hi(c),
    lo(stream), hi(stream)}, key {lo(seed), hi(seed)}); words (a, b) -> Box-Muller
    pair in double: u1 = ((a>>8)+1)·2^-24, u2 = (b>>8)·2^-24, r = sqrt(-2 ln u1),
    z0 = r cos(2π u2), z1 = r sin(2π u2), each rounded to f32."""
    nb = (n + 3) // 4
    c = np.arange(offset, offset + nb, dtype=np.uint64)
    c0, c1 = c & M32, c >> np.uint64(32)
    c2 = np.full(nb, stream & 0xFFFFFFFF, dtype=np.uint64)
    c3 = np.full(nb, stream >> 32, dtype=np.uint64)
    k0, k1 = np.uint64(seed & 0xFFFFFFFF), np.uint64(seed >> 32)
    for _ in range(10):
        p0 = np.uint64(0xD2511F53) * c0
        p1 = np.uint64(0xCD9E8D57) * c2
        c0, c1, c2, c3 = (p1 >> np.uint64(32)) ^ c1 ^ k0, p1 & M32, (p0 >> np.uint64(32)) ^ c3 ^ k1, p0 & M32
        k0 = (k0 + np.uint64(0x9E3779B9)) & M32
        k1 = (k1 + np.uint64(0xBB67AE85)) & M32
    out = np.empty((nb, 4), dtype=np.float32)
    for (a, b, i) in ((c0, c1, 0), (c2, c3, 2)):
        u1 = ((a >> np.uint64(8)).astype(np.float64) + 1.0) * 2.0 ** -24
        u2 = (b >> np.uint64(8)).astype(np.float64) * 2.0 ** -24
        r = np.sqrt(-2.0 * np.log(u1))
        th = 2.0 * math.pi * u2
        out[:, i] = (r * np.cos(th)).astype(np.float32)
        out[:, i + 1] = (r * np.sin(th)).astype(np.float32)
    return out.reshape(-1)[:n]


# ---------------------------------------------------------------- per-step noise hook
STATE = {"step": 0, "seeds": [], "shape": None}


def philox_randn(shape, generator=None, device=None, dtype=None, layout=None):
    n, C, h, w = shape
    seeds = STATE["seeds"]
    assert n == len(seeds), (shape, seeds)
    rows = [philox_normal(s, STEP_STREAM + STATE["step"], C * h * w) for s in seeds]
    return torch.from_numpy(np.stack(rows).reshape(shape)).to(dtype or torch.float32)


for mod in (m_ddpm, m_ddim, m_eula, m_dpm):
    mod.randn_tensor = philox_randn


def on_step_end(pipe, i, t, kw):
    STATE["step"] = i + 1
    return {}


def make_scheduler(name, base):
    """sdsample's --scheduler NAME as a diffusers scheduler built from the model's config."""
    if name is None:
        return None
    karras = name.endswith("-karras")
    core = name[: -len("-karras")] if karras else name
    if core == "ddim":
        return DDIMScheduler.from_config(base)
    if core == "ddpm":
        return DDPMScheduler.from_config(base)
    if core == "pndm":
        return PNDMScheduler.from_config(base)
    if core == "euler":
        return EulerDiscreteScheduler.from_config(base, use_karras_sigmas=karras)
    if core == "euler_a":
        return EulerAncestralDiscreteScheduler.from_config(base)
    if core in ("dpm++2m", "dpm++2m-sde"):
        algo = "sde-dpmsolver++" if core.endswith("sde") else "dpmsolver++"
        return DPMSolverMultistepScheduler.from_config(base, algorithm_type=algo, solver_order=2,
                                                       use_karras_sigmas=karras)
    raise ValueError(name)


# ---------------------------------------------------------------- cases
# Options as sdsample spells them. steps small (the schedulers' long-run
# behaviour is covered by test_scheduler); sizes small except the defaults.
P1, P2 = "a photo of a red cat", "an oil painting of a lighthouse at night"
CASES = [
    # sd1-tiny: epsilon prediction, PNDM (PLMS) config
    dict(id="sd1_default", model="sd1-tiny", scheduler=None, prompts=[P1], steps=4, seed=11, init=True),
    dict(id="sd1_pndm_nocfg", model="sd1-tiny", scheduler="pndm", prompts=[P1], steps=4, seed=12, guidance_scale=1.0,
         height=32, width=32, init=True),
    dict(id="sd1_ddim", model="sd1-tiny", scheduler="ddim", prompts=[P1], steps=4, seed=13, height=32, width=32),
    dict(id="sd1_ddim_eta", model="sd1-tiny", scheduler="ddim", prompts=[P1], steps=4, seed=14, eta=0.7,
         height=32, width=32),
    dict(id="sd1_ddpm", model="sd1-tiny", scheduler="ddpm", prompts=[P2], steps=4, seed=15, height=32, width=32),
    dict(id="sd1_euler", model="sd1-tiny", scheduler="euler", prompts=[P1], steps=4, seed=16, height=32, width=32),
    dict(id="sd1_euler_karras", model="sd1-tiny", scheduler="euler-karras", prompts=[P1], steps=4, seed=17,
         height=32, width=32),
    dict(id="sd1_euler_a", model="sd1-tiny", scheduler="euler_a", prompts=[P2], steps=4, seed=18, height=32,
         width=32),
    dict(id="sd1_dpm2m", model="sd1-tiny", scheduler="dpm++2m", prompts=[P1], steps=5, seed=19, height=32, width=32),
    dict(id="sd1_dpm2m_karras", model="sd1-tiny", scheduler="dpm++2m-karras", prompts=[P1], steps=5, seed=20,
         height=32, width=32),
    dict(id="sd1_dpm2m_sde", model="sd1-tiny", scheduler="dpm++2m-sde", prompts=[P2], steps=5, seed=21, height=32,
         width=32),
    dict(id="sd1_euler_a_nocfg", model="sd1-tiny", scheduler="euler_a", prompts=[P2], steps=3, seed=22,
         guidance_scale=1.0, height=32, width=32),
    # non-square, two prompts x two images, negative prompt, rescale, clip_skip
    dict(id="sd1_multi_nonsquare", model="sd1-tiny", scheduler="dpm++2m", prompts=[P1, P2], images_per_prompt=2,
         steps=4, seed=100, guidance_scale=5.0, guidance_rescale=0.7, clip_skip=1, negative_prompt="blurry, low quality",
         height=48, width=80, init=True),
    # sd2-tiny: v_prediction, DDIM config
    dict(id="sd2_default", model="sd2-tiny", scheduler=None, prompts=[P1], steps=4, seed=31, init=True),
    dict(id="sd2_ddim_nocfg", model="sd2-tiny", scheduler=None, prompts=[P2], steps=4, seed=32, guidance_scale=1.0,
         height=32, width=32),
    dict(id="sd2_pndm", model="sd2-tiny", scheduler="pndm", prompts=[P1], steps=4, seed=33, height=32, width=32),
    dict(id="sd2_ddpm", model="sd2-tiny", scheduler="ddpm", prompts=[P1], steps=4, seed=34, height=32, width=32),
    dict(id="sd2_euler", model="sd2-tiny", scheduler="euler", prompts=[P1], steps=4, seed=35, height=32, width=32),
    dict(id="sd2_euler_a", model="sd2-tiny", scheduler="euler_a", prompts=[P2], steps=4, seed=36, height=32, width=32),
    dict(id="sd2_dpm2m_karras", model="sd2-tiny", scheduler="dpm++2m-karras", prompts=[P1], steps=5, seed=37,
         height=32, width=32),
    dict(id="sd2_dpm2m_sde", model="sd2-tiny", scheduler="dpm++2m-sde", prompts=[P2], steps=4, seed=38,
         height=32, width=32),
    dict(id="sd2_nonsquare", model="sd2-tiny", scheduler="ddim", prompts=[P2], images_per_prompt=2, steps=4, seed=40,
         eta=0.3, guidance_rescale=0.5, clip_skip=2, negative_prompt="ugly", height=24, width=40),
]
DEFAULTS = dict(scheduler=None, images_per_prompt=1, guidance_scale=7.5, guidance_rescale=0.0, eta=0.0, clip_skip=0,
                negative_prompt="", height=0, width=0, init=False)


def main():
    torch.set_num_threads(2)
    tmp = tempfile.mkdtemp(prefix="gen-sdsample-")
    pipes = {}
    for name in sorted({c["model"] for c in CASES}):
        d = f"{tmp}/{name}"
        subprocess.run([PY, f"{ROOT}/tests/fixtures/make_tiny_model.py", "--config", name, d], check=True,
                       capture_output=True)
        pipe = StableDiffusionPipeline.from_pretrained(d, safety_checker=None, requires_safety_checker=False,
                                                       torch_dtype=torch.float32)
        pipe.set_progress_bar_config(disable=True)
        pipes[name] = (pipe, dict(pipe.scheduler.config))
    gold, out_cases = {}, []
    for c in CASES:
        c = {**DEFAULTS, **c}
        pipe, base = pipes[c["model"]]
        sched = make_scheduler(c["scheduler"], base)
        pipe.scheduler = sched if sched is not None else type(pipe.scheduler).from_config(base)
        f = pipe.vae_scale_factor
        H = c["height"] or pipe.unet.config.sample_size * f
        W = c["width"] or pipe.unet.config.sample_size * f
        C, h, w = pipe.unet.config.in_channels, H // f, W // f
        n = len(c["prompts"]) * c["images_per_prompt"]
        seeds = [c["seed"] + j for j in range(n)]
        init = np.stack([philox_normal(s, LATENT_STREAM, C * h * w).reshape(C, h, w) for s in seeds])
        STATE.update(step=0, seeds=seeds)
        kw = {}
        if c["clip_skip"]:
            kw["clip_skip"] = c["clip_skip"]
        with torch.no_grad():
            lat = pipe(prompt=list(c["prompts"]), negative_prompt=[c["negative_prompt"]] * len(c["prompts"]),
                       num_inference_steps=c["steps"], guidance_scale=c["guidance_scale"],
                       guidance_rescale=c["guidance_rescale"], eta=c["eta"], height=H, width=W,
                       num_images_per_prompt=c["images_per_prompt"], latents=torch.from_numpy(init.copy()),
                       output_type="latent", callback_on_step_end=on_step_end, **kw).images
            # the rest of StableDiffusionPipeline.__call__ for output_type="pil"
            img = pipe.vae.decode(lat / pipe.vae.config.scaling_factor, return_dict=False)[0]
            pil = pipe.image_processor.postprocess(img, output_type="pil", do_denormalize=[True] * n)
        gold[c["id"] + ".latents"] = lat.numpy().astype(np.float32)
        gold[c["id"] + ".image"] = np.stack([np.asarray(p.convert("RGB")) for p in pil]).astype(np.uint8)
        if c["init"]:
            gold[c["id"] + ".init"] = init
        rec = {k: v for k, v in c.items() if k != "init"}
        # height_arg/width_arg: what the test passes (0 = leave the default)
        rec.update(height_arg=c["height"], width_arg=c["width"], height=H, width=W, n=n, scheduler_class=type(pipe.scheduler).__name__,
                   model_steps=len(pipe.scheduler.timesteps))
        out_cases.append(rec)
        print(f"gen_sdsample: {c['id']}: {type(pipe.scheduler).__name__} {len(pipe.scheduler.timesteps)} calls, "
              f"{n} x {W}x{H}, |lat| max {float(lat.abs().max()):.3f}", file=sys.stderr)
    os.makedirs(OUT, exist_ok=True)
    save_file(gold, f"{OUT}/golden.safetensors", metadata={"generator": "tests/ref/gen_sdsample.py",
                                                           "diffusers": diffusers.__version__,
                                                           "torch": torch.__version__})
    with open(f"{OUT}/cases.json", "w") as fp:
        json.dump({"prompts_note": "options as sdsample spells them", "cases": out_cases}, fp, indent=1)
        fp.write("\n")
    print(f"gen_sdsample: {len(out_cases)} cases, {os.path.getsize(f'{OUT}/golden.safetensors')} bytes",
          file=sys.stderr)


if __name__ == "__main__":
    main()
