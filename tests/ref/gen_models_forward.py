#!/usr/bin/env python3
"""gen_models_forward.py — goldens of the CLIP text encoder and the VAE forward passes.

Run in .venv-ref (torch 2.x CPU fp32, diffusers 0.39, transformers 4.57) by
tests/ref/make_goldens.sh. Writes tests/ref/golden/models/{clip,vae}_CONFIG.safetensors,
read by tests/unit/test_models_clip_vae.c (which regenerates the same tiny
models with tests/fixtures/make_tiny_model.py, seed 0, and needs no torch).

Models: the tiny pipelines sd1-tiny (CLIP quick_gelu, VAE (32,64) lpb 1),
sd2-tiny (CLIP gelu; its VAE has the same config and, since weights are seeded
by (seed, component, name), the same weights as sd1-tiny's: not repeated) and
sd1-3down (3-level VAE (32,64,64), f = 4; its text encoder equals sd1-tiny's).

VAE config variants (vae_variants): AutoencoderKL built in code from the
configs in VARIANTS (no quant convs / no mid attention / GroupNorm 8,
layers_per_block 2, latent_channels 3) with weights from variant_weights():
tensor NAME gets det_uniform(crc32(NAME)) scaled like make_tiny_model.py's
init; the C test fills its parameter table by the same rule.

Inputs are not from torch's RNG: images and latents come from
det_uniform(seed, n) below, which the C test reproduces bit for bit
(splitmix64 of seed·2^32 + i, top 24 bits -> exact float in [-1, 1)); token
ids are stored in the golden.

CLIP (clip_CONFIG): ids [3, 77] int32 and ids_short [2, 16];
  out_skip0 = last_hidden_state, out_skip{1,2} = final_layer_norm(hidden_states[-(k+1)])
  exactly as diffusers' StableDiffusionPipeline.encode_prompt(clip_skip=k);
  out_short = last_hidden_state of ids_short.
VAE (vae_CONFIG): enc{0,1}: image det_uniform(seed, ·) of shape [2,3,64,64] / [1,3,48,80],
  golden mean and logvar = vae.encode(x).latent_dist.{mean, logvar} (logvar clamped to [-30, 20]);
  dec{0,1}: z = 3·det_uniform of shape [2,4,h,w] / [1,4,h',w'] (h = 16 / f·… see SHAPES),
  golden image = vae.decode(z).sample.
"""
import json
import os
import sys
import subprocess
import tempfile
import warnings
import zlib

import numpy as np
import torch
from safetensors.numpy import save_file

warnings.filterwarnings("ignore")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from diffusers import AutoencoderKL  # noqa: E402
from transformers import CLIPTextModel  # noqa: E402

ROOT = os.environ.get("SD_ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
FIX = os.path.join(ROOT, "tests", "fixtures")
OUT = os.path.join(ROOT, "tests", "ref", "golden", "models")

M64 = (1 << 64) - 1


def det_uniform(seed, n):
    """n float32 in [-1, 1): splitmix64(seed·2^32 + i) >> 40 (24 bits) · 2^-23 − 1, exact in f32."""
    with np.errstate(over="ignore"):
        x = (np.uint64(seed) << np.uint64(32)) + np.arange(n, dtype=np.uint64)
        z = x + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    v = (z >> np.uint64(40)).astype(np.float64) * 2.0 ** -23 - 1.0
    return v.astype(np.float32)


# (seed, shape) of the encoder images and decoder latents; latents are 3·det_uniform
ENC = [(11, (2, 3, 64, 64)), (12, (1, 3, 48, 80))]
DEC = [(21, (2, 4, 16, 16)), (22, (1, 4, 6, 10))]


def token_rows():
    """[3, 77]: a BOS..EOS row padded with EOS (SD1 style), a row of ids over the whole
    vocabulary, a short prompt padded with id 0 (SD2 "!" padding); plus [2, 16]."""
    r = (det_uniform(31, 3 * 77) * 0.5 + 0.5) * 1000
    ids = np.floor(r).astype(np.int32).reshape(3, 77).clip(0, 999)
    ids[0, 0], ids[0, 9:] = 998, 999
    ids[2, 0], ids[2, 5], ids[2, 6:] = 998, 999, 0
    s = np.floor((det_uniform(32, 2 * 16) * 0.5 + 0.5) * 1000).astype(np.int32).reshape(2, 16).clip(0, 999)
    return ids, s


VARIANTS = [
    {"block_out_channels": [16, 32], "layers_per_block": 2, "norm_num_groups": 8, "latent_channels": 4,
     "use_quant_conv": False, "use_post_quant_conv": False, "mid_block_add_attention": False,
     "down_block_types": ["DownEncoderBlock2D"] * 2, "up_block_types": ["UpDecoderBlock2D"] * 2},
    {"block_out_channels": [8, 16, 16], "layers_per_block": 2, "norm_num_groups": 4, "latent_channels": 3,
     "down_block_types": ["DownEncoderBlock2D"] * 3, "up_block_types": ["UpDecoderBlock2D"] * 3},
]
VAR_ENC = (41, (1, 3, 32, 48))   # image; latent side = 32/f x 48/f
VAR_DEC = (42, (5, 7))           # latent h, w (channels from the config)


def variant_weights(shape, name):
    """det_uniform(crc32(name)) scaled: >=2-D: ·sqrt(3/fan_in); 1-D .weight: 1 + 0.1·u; bias: 0.05·u."""
    n = int(np.prod(shape))
    u = det_uniform(zlib.crc32(name.encode()), n).astype(np.float64)
    if len(shape) >= 2:
        v = u * np.sqrt(3.0 / int(np.prod(shape[1:])))
    elif name.endswith(".weight"):
        v = 1.0 + 0.1 * u
    else:
        v = 0.05 * u
    return v.astype(np.float32).reshape(shape)


@torch.no_grad()
def vae_variants():
    t = {}
    for k, cfg in enumerate(VARIANTS):
        vae = AutoencoderKL(**cfg).eval()
        sd = {n: torch.from_numpy(variant_weights(tuple(p.shape), n)) for n, p in vae.state_dict().items()}
        vae.load_state_dict(sd, strict=True)
        f = 2 ** (len(cfg["block_out_channels"]) - 1)
        seed, shape = VAR_ENC
        x = torch.from_numpy(det_uniform(seed, int(np.prod(shape))).reshape(shape))
        dist = vae.encode(x).latent_dist
        t[f"v{k}_mean"], t[f"v{k}_logvar"] = dist.mean.numpy(), dist.logvar.numpy()
        seed, (h, w) = VAR_DEC
        zs = (1, cfg["latent_channels"], h, w)
        z = torch.from_numpy(det_uniform(seed, int(np.prod(zs))).reshape(zs) * np.float32(3))
        t[f"v{k}_dec"] = vae.decode(z).sample.numpy()
        assert t[f"v{k}_mean"].shape[2:] == (32 // f, 48 // f)
    meta = {f"config{k}": json.dumps(c) for k, c in enumerate(VARIANTS)}
    save_file({k: np.ascontiguousarray(v) for k, v in t.items()}, os.path.join(OUT, "vae_variants.safetensors"),
              metadata=meta)
    print(f"vae variants: {', '.join(f'{k} {list(v.shape)}' for k, v in t.items())}")


def make_tiny(name, out):
    subprocess.run([sys.executable, os.path.join(FIX, "make_tiny_model.py"), "--config", name, out, "--force"],
                   check=True)


def load(cls, d, sub):
    m, info = cls.from_pretrained(d, subfolder=sub, output_loading_info=True)
    bad = {k: v for k, v in info.items() if v}
    assert not bad, f"{d}/{sub}: {bad}"
    return m.eval().float()


@torch.no_grad()
def clip_golden(d, name):
    te = load(CLIPTextModel, d, "text_encoder")
    ids, short = token_rows()
    t = {"ids": ids, "ids_short": short}
    o = te(torch.from_numpy(ids).long(), output_hidden_states=True)
    t["out_skip0"] = o.last_hidden_state.numpy()
    for k in (1, 2):  # diffusers encode_prompt
        t[f"out_skip{k}"] = te.text_model.final_layer_norm(o.hidden_states[-(k + 1)]).numpy()
    t["out_short"] = te(torch.from_numpy(short).long()).last_hidden_state.numpy()
    path = os.path.join(OUT, f"clip_{name}.safetensors")
    save_file({k: np.ascontiguousarray(v) for k, v in t.items()}, path, metadata={"config": name})
    print(f"clip {name}: {', '.join(f'{k} {list(v.shape)}' for k, v in t.items())}")


@torch.no_grad()
def vae_golden(d, name):
    vae = load(AutoencoderKL, d, "vae")
    t = {}
    for i, (seed, shape) in enumerate(ENC):
        x = torch.from_numpy(det_uniform(seed, int(np.prod(shape))).reshape(shape))
        dist = vae.encode(x).latent_dist
        t[f"enc{i}_mean"] = dist.mean.numpy()
        t[f"enc{i}_logvar"] = dist.logvar.numpy()
    for i, (seed, shape) in enumerate(DEC):
        z = torch.from_numpy(det_uniform(seed, int(np.prod(shape))).reshape(shape) * np.float32(3))
        t[f"dec{i}"] = vae.decode(z).sample.numpy()
    path = os.path.join(OUT, f"vae_{name}.safetensors")
    save_file({k: np.ascontiguousarray(v) for k, v in t.items()}, path, metadata={"config": name})
    print(f"vae {name}: {', '.join(f'{k} {list(v.shape)}' for k, v in t.items())}")


def main():
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    # the C test reproduces det_uniform: pin a few values
    v = det_uniform(11, 4)
    print("det_uniform(11, 0..3) =", " ".join(f"{x:.9g}" for x in v))
    with tempfile.TemporaryDirectory() as tmp:
        for name, clip, vae in (("sd1-tiny", True, True), ("sd2-tiny", True, False), ("sd2-hd64", True, False),
                                ("sd1-3down", False, True)):
            d = os.path.join(tmp, name)
            make_tiny(name, d)
            if clip:
                clip_golden(d, name)
            if vae:
                vae_golden(d, name)
    vae_variants()
    return 0


if __name__ == "__main__":
    sys.exit(main())
