#!/usr/bin/env python3
"""gen_sdfit.py — goldens for sdfit's training step (tests/unit/test_trainer.c,
tests/cli/test_sdfit.sh): the reference is train_text_to_image.py's step code
with diffusers' DDPMScheduler, get_scheduler, EMAModel, torch AdamW and
clip_grad_norm_, in the order the script runs them (trainers.md §1.2).

Run in .venv-ref by tests/ref/make_goldens.sh. The model is the deterministic
sd1-micro pipeline of tests/fixtures/make_tiny_model.py (regenerated here and
by the tests; never committed). Written to tests/ref/golden/sdfit/:

  latents/      a latent shard set (formats/shards.md §4.2) of 5 samples: VAE
                moments [4, 8, 8] with flipped moments, 1-3 captions each,
                token ids from the model's tokenizer and cached text-encoder
                hidden states (the model's CLIPTextModel on those ids)
  latents_te/   the same samples without hidden states (sdfit runs the frozen
                text encoder)
  CASE.replay.safetensors   the random draws of CASE (formats/replay.md §2),
                drawn with numpy; sample_index is the order sdfit's Philox
                epoch permutation gives (computed here independently)
  CASE.safetensors          expected results; metadata "case" = the sdfit
                options of the case (JSON)

Gradient cases (one micro-batch, GA 1): the objective's inputs are computed
in float32 exactly as the script does (latent sample from the moments,
noise offset, input perturbation, add_noise, target), then the UNet forward,
loss and backward in float64 (diffusers' UNet .double(), its timestep
embedding evaluated in float64: see tests/ref/gen_unet.py), so the golden is
the exact gradient of the float32 inputs and the test measures sdfit's own
error. The float32 torch gradients are compared with the same reference and
their error recorded ("torch32_*" in the metadata) as the yardstick.
  grad_eps:   cached embeddings, epsilon, plain MSE, noise_offset 0.1,
              input_perturbation 0.1 (flips and several captions in the batch)
  grad_vsnr:  the text encoder on the token ids, --prediction_type
              v_prediction, --snr_gamma 5

Trajectory cases (float32 torch, the script's loop): N optimizer steps
with replayed draws; stored: the final UNet weights ("param.NAME"), the EMA
weights ("ema.NAME"), and per step train_loss, grad_norm (before clipping)
and lr.
  traj_a: cached embeddings, B 2, GA 2 (the last group of an epoch is one
          micro-batch: 5 samples = batches 2+2+1), 5 steps over 3 epochs,
          cosine with 2 warmup steps, lr 1e-3, clipping at 0.05 (always
          active), EMA, min-SNR 5, noise_offset 0.05, epsilon
  traj_b: text encoder, v_prediction, B 3, GA 1, linear schedule with 1
          warmup step, lr 2e-3, max_grad_norm 1, input_perturbation 0.1,
          weight decay 0.1, 4 steps, no EMA
"""
import io
import json
import math
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import warnings
import hashlib

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import save as st_save_np
from safetensors.torch import save_file

warnings.filterwarnings("ignore")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from diffusers import DDPMScheduler, UNet2DConditionModel  # noqa: E402
from diffusers.optimization import get_scheduler  # noqa: E402
from diffusers.training_utils import EMAModel, compute_snr  # noqa: E402
from diffusers.utils import logging as dlogging  # noqa: E402
from transformers import CLIPTextModel, CLIPTokenizer  # noqa: E402
from transformers.utils import logging as tlogging  # noqa: E402

dlogging.set_verbosity_error()
tlogging.set_verbosity_error()
torch.set_num_threads(2)

ROOT = os.environ.get("SD_ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
OUT = os.path.join(ROOT, "tests", "ref", "golden", "sdfit")
MAKE = os.path.join(ROOT, "tests", "fixtures", "make_tiny_model.py")
CONFIG = "sd1-micro"
NSAMP, C, H, W = 5, 4, 8, 8
NCAP = [1, 3, 2, 1, 2]
CAPTIONS = ["a red square", "a blue circle on white", "two green lines", "a small yellow star", "noise",
            "dark stripes", "a cat", "pixels", "a painting of a squirrel eating a burger"]

# ---------------------------------------------------------------- Philox (lib/core/rng.c)
M32 = 0xFFFFFFFF
EPOCH_STREAM = 0x65706F6368000000


def philox(ctr, key):
    c0, c1, c2, c3 = ctr
    k0, k1 = key
    for _ in range(10):
        p0, p1 = 0xD2511F53 * c0, 0xCD9E8D57 * c2
        c0, c1, c2, c3 = ((p1 >> 32) ^ c1 ^ k0) & M32, p1 & M32, ((p0 >> 32) ^ c3 ^ k1) & M32, p0 & M32
        k0, k1 = (k0 + 0x9E3779B9) & M32, (k1 + 0xBB67AE85) & M32
    return c0, c1, c2, c3


def below(seed, stream, offset, n):
    w = philox((offset & M32, offset >> 32, stream & M32, stream >> 32), (seed & M32, seed >> 32))
    return (((w[0] << 32) | w[1]) * n) >> 64


def epoch_order(seed, epoch, n):
    perm, off = list(range(n)), 0
    for i in range(n, 1, -1):
        j = below(seed, EPOCH_STREAM + epoch, off, i)
        off += 1
        perm[i - 1], perm[j] = perm[j], perm[i - 1]
    return perm


# ---------------------------------------------------------------- the latent set


def make_model(tmp):
    d = os.path.join(tmp, CONFIG)
    subprocess.run([sys.executable, MAKE, "--config", CONFIG, d, "--force"], check=True)
    return d


def make_samples(model_dir):
    rng = np.random.default_rng(20261130)
    tok = CLIPTokenizer.from_pretrained(os.path.join(model_dir, "tokenizer"))
    te = CLIPTextModel.from_pretrained(os.path.join(model_dir, "text_encoder")).eval()
    samples, ci = [], 0
    for i in range(NSAMP):
        caps = [CAPTIONS[(ci + k) % len(CAPTIONS)] for k in range(NCAP[i])]
        ci += NCAP[i]
        ids = tok(caps, max_length=77, padding="max_length", truncation=True, return_tensors="pt").input_ids
        with torch.no_grad():
            hid = te(ids)[0].float().numpy()
        s = {"captions": caps, "ids": ids.numpy().astype(np.int32), "hidden": hid}
        for suf in ("", "_flipped"):
            s["mean" + suf] = (rng.standard_normal((C, H, W)) * 2.5).astype(np.float32)
            s["logvar" + suf] = rng.uniform(-9.0, -1.0, (C, H, W)).astype(np.float32)
        samples.append(s)
    return samples


def tar_add(tf, name, data):
    ti = tarfile.TarInfo(name)
    ti.size, ti.mode, ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = len(data), 0o444, 0, 0, 0, "", ""
    tf.addfile(ti, io.BytesIO(data))


def write_set(d, samples, with_text):
    os.makedirs(d, exist_ok=True)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for i, s in enumerate(samples):
            key = f"{i:09d}"
            meta = {"index": i, "source": f"synthetic/{i}.png", "random_flip": True, "captions": s["captions"]}
            lat = st_save_np({k: s[k] for k in ("mean", "logvar", "mean_flipped", "logvar_flipped")})
            members = {"json": json.dumps(meta).encode(), "latent.safetensors": lat,
                       "tokens.safetensors": st_save_np({"input_ids": s["ids"]}),
                       "txt": s["captions"][0].encode()}
            if with_text:
                members["text.safetensors"] = st_save_np({"hidden_states": s["hidden"]})
            for ext in sorted(members):
                tar_add(tf, f"{key}.{ext}", members[ext])
    name = "latent-000000.tar"
    data = buf.getvalue()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
    man = {"format": "sdtools-shards", "version": 1, "kind": "latent", "complete": True, "samples": NSAMP,
           "shards": [{"name": name, "samples": NSAMP, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(),
                       "first_key": "000000000", "last_key": f"{NSAMP - 1:09d}", "compression": "none"}],
           "provenance": {"tool": "gen_sdfit.py", "scaling_factor": 0.18215, "resolution": 16, "random_flip": True,
                          "latent_channels": C, "text_embeddings": with_text}}
    with open(os.path.join(d, "manifest.json"), "w") as f:
        json.dump(man, f, indent=2)


# ---------------------------------------------------------------- replay draws


def micro_batches(n, B, GA, steps, seed):
    """The schedule sdfit follows: per optimizer step, its micro-batches as
    (micro-batch index m, [sample indices]); groups are cut at epoch ends."""
    bpe = (n + B - 1) // B
    out, epoch, batch = [], 0, 0
    for _ in range(steps):
        group = []
        if batch >= bpe:
            epoch, batch = epoch + 1, 0
        while True:
            perm = epoch_order(seed, epoch, n)
            idx = perm[batch * B:min(n, (batch + 1) * B)]
            group.append((epoch * bpe + batch, idx))
            batch += 1
            if batch % GA == 0 or batch >= bpe:
                break
        out.append(group)
    return out


def make_replay(case, samples, sched_list):
    rng = np.random.default_rng(case["replay_seed"])
    B = case["train_batch_size"]
    S = 1 + max(m for group in sched_list for m, _ in group)
    r = {"latent_noise": rng.standard_normal((S, B, C, H, W)).astype(np.float32),
         "noise": rng.standard_normal((S, B, C, H, W)).astype(np.float32),
         "timesteps": rng.integers(0, 1000, (S, B)).astype(np.int64),
         "flip": rng.integers(0, 2, (S, B)).astype(np.uint8),
         "caption": np.zeros((S, B), np.int32),
         "sample_index": np.full((S, B), -1, np.int64)}
    if case.get("noise_offset"):
        r["offset_noise"] = rng.standard_normal((S, B, C)).astype(np.float32)
    if case.get("input_perturbation"):
        r["perturbation_noise"] = rng.standard_normal((S, B, C, H, W)).astype(np.float32)
    for group in sched_list:
        for m, idx in group:
            for b, i in enumerate(idx):
                r["sample_index"][m, b] = i
                r["caption"][m, b] = rng.integers(0, NCAP[i])
    return r


# ---------------------------------------------------------------- the reference step


def objective(case, samples, sched, rp, m, idx, scaling):
    """float32 inputs of one micro-batch, op by op as train_text_to_image.py."""
    Bm = len(idx)
    mean = torch.stack([torch.from_numpy(samples[i]["mean_flipped" if rp["flip"][m, b] else "mean"]) for b, i in enumerate(idx)])
    logvar = torch.stack([torch.from_numpy(samples[i]["logvar_flipped" if rp["flip"][m, b] else "logvar"]) for b, i in enumerate(idx)])
    eps = torch.from_numpy(rp["latent_noise"][m, :Bm])
    std = torch.exp(0.5 * logvar)                      # DiagonalGaussianDistribution (logvar already clamped)
    latents = (mean + std * eps) * scaling             # latent_dist.sample() * vae.config.scaling_factor
    noise = torch.from_numpy(rp["noise"][m, :Bm]).clone()
    if case.get("noise_offset"):
        noise += case["noise_offset"] * torch.from_numpy(rp["offset_noise"][m, :Bm])[:, :, None, None]
    if case.get("input_perturbation"):
        new_noise = noise + case["input_perturbation"] * torch.from_numpy(rp["perturbation_noise"][m, :Bm])
    t = torch.from_numpy(rp["timesteps"][m, :Bm]).long()
    noisy = sched.add_noise(latents, new_noise if case.get("input_perturbation") else noise, t)
    if sched.config.prediction_type == "epsilon":
        target = noise
    else:
        target = sched.get_velocity(latents, noise, t)
    caps = [int(rp["caption"][m, b]) for b in range(Bm)]
    ids = torch.from_numpy(np.stack([samples[i]["ids"][caps[b]] for b, i in enumerate(idx)])).long()
    hid = torch.from_numpy(np.stack([samples[i]["hidden"][caps[b]] for b, i in enumerate(idx)]))
    return latents, noisy, target, t, ids, hid


def loss_of(case, sched, pred, target, t):
    if not case.get("snr_gamma"):
        return F.mse_loss(pred.float() if pred.dtype == torch.float32 else pred, target, reduction="mean")
    snr = compute_snr(sched, t)
    w = torch.stack([snr, case["snr_gamma"] * torch.ones_like(t)], dim=1).min(dim=1)[0]
    w = w / snr if sched.config.prediction_type == "epsilon" else w / (snr + 1)
    loss = F.mse_loss(pred, target, reduction="none")
    loss = loss.mean(dim=list(range(1, len(loss.shape)))) * w.to(pred.dtype)
    return loss.mean()


def temb64(t, dim, flip, shift, max_period=10000.0):
    half = dim // 2
    expo = -math.log(max_period) * torch.arange(half, dtype=torch.float64) / (half - shift)
    a = t.double()[:, None] * torch.exp(expo)[None, :]
    e = torch.cat([torch.sin(a), torch.cos(a)], dim=-1)
    if flip:
        e = torch.cat([e[:, half:], e[:, :half]], dim=-1)
    return e


def load_sched(model_dir, case):
    sched = DDPMScheduler.from_pretrained(os.path.join(model_dir, "scheduler"))
    if case.get("prediction_type"):
        sched.register_to_config(prediction_type=case["prediction_type"])
    return sched


def rel_err(a, ref):
    ref = ref.double()
    rms = ref.pow(2).mean().sqrt().item()
    return (a.double() - ref).abs().max().item() / (rms if rms > 0 else 1.0)


def gen_grad(name, case, model_dir, samples):
    sl = micro_batches(NSAMP, case["train_batch_size"], 1, 1, case["seed"])
    rp = make_replay(case, samples, sl)
    sched = load_sched(model_dir, case)
    te = CLIPTextModel.from_pretrained(os.path.join(model_dir, "text_encoder")).eval()
    m, idx = sl[0][0]
    latents, noisy, target, t, ids, hid = objective(case, samples, sched, rp, m, idx, 0.18215)
    if case["text"] == "encoder":
        with torch.no_grad():
            ctx = te(ids, return_dict=False)[0]
    else:
        ctx = hid
    res = {}
    for tag, dt in (("64", torch.float64), ("32", torch.float32)):
        unet = UNet2DConditionModel.from_pretrained(os.path.join(model_dir, "unet")).to(dt).train()
        if dt == torch.float64:
            tp = unet.time_proj
            unet.time_proj.forward = lambda ts, tp=tp: temb64(ts, tp.num_channels, tp.flip_sin_to_cos,
                                                              tp.downscale_freq_shift)
        pred = unet(noisy.to(dt), t, ctx.to(dt), return_dict=False)[0]
        loss = loss_of(case, sched, pred, target.to(dt), t)
        loss.backward()
        res[tag] = (loss.item(), {n: p.grad.detach().clone() for n, p in unet.named_parameters()})
    l64, g64 = res["64"]
    l32, g32 = res["32"]
    errs = sorted(rel_err(g32[n], g64[n]) for n in g64)
    meta = dict(case, torch32_loss_rel=abs(l32 - l64) / abs(l64), torch32_grad_rel_max=errs[-1],
                torch32_grad_rel_median=errs[len(errs) // 2])
    tens = {"loss": torch.tensor([l64], dtype=torch.float64).float(), "noisy": noisy, "target": target,
            "ctx": ctx.float(), "timesteps": t.to(torch.int32)}
    for n, g in g64.items():
        tens["grad." + n] = g.float()
    save_file({k: v.detach().contiguous() for k, v in tens.items()}, os.path.join(OUT, f"{name}.safetensors"),
              metadata={"case": json.dumps(meta)})
    save_rp(name, rp)
    print(f"{name}: loss {l64:.6f}; torch32 loss rel {meta['torch32_loss_rel']:.1e}, grad rel (to tensor RMS) "
          f"median {meta['torch32_grad_rel_median']:.1e} max {meta['torch32_grad_rel_max']:.1e}")


def save_rp(name, rp):
    with open(os.path.join(OUT, f"{name}.replay.safetensors"), "wb") as f:
        f.write(st_save_np({k: np.ascontiguousarray(v) for k, v in rp.items()},
                           metadata={"format": "sdfit-replay", "version": "1"}))


def gen_traj(name, case, model_dir, samples):
    B, GA, steps = case["train_batch_size"], case["gradient_accumulation_steps"], case["max_train_steps"]
    sl = micro_batches(NSAMP, B, GA, steps, case["seed"])
    rp = make_replay(case, samples, sl)
    sched = load_sched(model_dir, case)
    te = CLIPTextModel.from_pretrained(os.path.join(model_dir, "text_encoder")).eval()
    unet = UNet2DConditionModel.from_pretrained(os.path.join(model_dir, "unet")).train()
    ema = None
    if case.get("use_ema"):
        ema_unet = UNet2DConditionModel.from_pretrained(os.path.join(model_dir, "unet"))
        ema = EMAModel(ema_unet.parameters(), model_cls=UNet2DConditionModel, model_config=ema_unet.config)
    lr = case["learning_rate"]
    optimizer = torch.optim.AdamW(unet.parameters(), lr=lr, betas=(0.9, 0.999),
                                  weight_decay=case.get("adam_weight_decay", 1e-2), eps=1e-8)
    lr_scheduler = get_scheduler(case["lr_scheduler"], optimizer=optimizer, num_warmup_steps=case["lr_warmup_steps"],
                                 num_training_steps=steps)
    losses, norms, lrs = [], [], []
    for group in sl:
        train_loss = 0.0
        for m, idx in group:
            latents, noisy, target, t, ids, hid = objective(case, samples, sched, rp, m, idx, 0.18215)
            if case["text"] == "encoder":
                with torch.no_grad():
                    ctx = te(ids, return_dict=False)[0]
            else:
                ctx = hid
            pred = unet(noisy, t, ctx, return_dict=False)[0]
            loss = loss_of(case, sched, pred, target, t)
            train_loss += loss.item() / GA
            (loss / GA).backward()                                   # accelerator.backward(loss)
        lrs.append(lr_scheduler.get_last_lr()[0])
        norms.append(float(torch.nn.utils.clip_grad_norm_(unet.parameters(), case["max_grad_norm"])))
        optimizer.step()
        lr_scheduler.step()
        optimizer.zero_grad()
        if ema is not None:
            ema.step(unet.parameters())
        losses.append(train_loss)
    tens = {"train_loss": torch.tensor(losses, dtype=torch.float64), "grad_norm": torch.tensor(norms, dtype=torch.float64),
            "lr": torch.tensor(lrs, dtype=torch.float64)}
    for n, p in unet.named_parameters():
        tens["param." + n] = p.detach().clone()
    if ema is not None:
        for (n, _), s in zip(unet.named_parameters(), ema.shadow_params):
            tens["ema." + n] = s.detach().clone()
    save_file({k: v.contiguous() for k, v in tens.items()}, os.path.join(OUT, f"{name}.safetensors"),
              metadata={"case": json.dumps(case)})
    save_rp(name, rp)
    clipped = sum(1 for x in norms if x > case["max_grad_norm"])
    print(f"{name}: {steps} steps, train_loss {' '.join(f'{x:.4f}' for x in losses)}; grad norms "
          f"{' '.join(f'{x:.3g}' for x in norms)} ({clipped} clipped); lr {' '.join(f'{x:.3g}' for x in lrs)}")


CASES = {
    "grad_eps": dict(kind="grad", text="cached", train_batch_size=3, seed=42, replay_seed=1, noise_offset=0.1,
                     input_perturbation=0.1),
    "grad_vsnr": dict(kind="grad", text="encoder", train_batch_size=3, seed=7, replay_seed=2,
                      prediction_type="v_prediction", snr_gamma=5.0),
    "traj_a": dict(kind="traj", text="cached", train_batch_size=2, gradient_accumulation_steps=2, max_train_steps=5,
                   seed=42, replay_seed=3, learning_rate=1e-3, lr_scheduler="cosine", lr_warmup_steps=2,
                   max_grad_norm=0.05, use_ema=True, snr_gamma=5.0, noise_offset=0.05),
    "traj_b": dict(kind="traj", text="encoder", train_batch_size=3, gradient_accumulation_steps=1, max_train_steps=4,
                   seed=5, replay_seed=4, learning_rate=2e-3, lr_scheduler="linear", lr_warmup_steps=1,
                   max_grad_norm=1.0, prediction_type="v_prediction", input_perturbation=0.1, adam_weight_decay=0.1),
}


def main():
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gen_sdfit.") as tmp:
        model_dir = make_model(tmp)
        samples = make_samples(model_dir)
        for d, text in (("latents", True), ("latents_te", False)):
            shutil.rmtree(os.path.join(OUT, d), ignore_errors=True)
            write_set(os.path.join(OUT, d), samples, text)
        for name, case in CASES.items():
            (gen_grad if case["kind"] == "grad" else gen_traj)(name, case, model_dir, samples)
    return 0


if __name__ == "__main__":
    sys.exit(main())
