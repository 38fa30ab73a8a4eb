#!/usr/bin/env python3
"""gen_models.py — diffusers/transformers checks of the model layouts, and their goldens.

Run in .venv-ref (torch, diffusers 0.39, transformers 4.57) by tests/ref/make_goldens.sh.
Writes tests/ref/golden/models.json, read by tests/unit/test_model_load.c and
test_model_config.c (make check needs no torch). Asserts (and so fails loudly):

1. tiny models: for each config of tests/fixtures/make_tiny_model.py that is
   committed-size (sd1-tiny, sd2-tiny, sd1-3down), generated with seed 0, every
   component loads with from_pretrained with no missing / unexpected /
   mismatched keys, and StableDiffusionPipeline.from_pretrained(dir) loads
   offline and runs 2 steps. Golden: parameter/tensor counts and the first 16
   hex digits of sha256(f32 little-endian bytes) of every tensor as torch sees
   it (C recomputes them from its own loads of the regenerated model).
2. parameter tables: diffusers/transformers models built on the meta device
   from a set of configs (SD1.5, SD2, the SD VAE, CLIP-L, the SD2 text tower,
   and unusual but supported configs: per-level layers_per_block and
   cross_attention_dim, transformer_layers_per_block 2, only_cross_attention,
   time_embedding_dim, conv kernels 5/1, no mid block, VAE without quant convs
   or mid attention). Golden: config + every (name, shape); the C test builds
   its table from the same config and requires the same set.
3. single-file: tests/fixtures/make_ldm_checkpoint.py files (SD1 CLIP + EMA,
   SD2 OpenCLIP) load with StableDiffusionPipeline.from_single_file(ckpt,
   config=dir, local_files_only=True) to tensors identical to the diffusers
   dir: an independent check of the LDM mapping the C loader inverts.
4. saving (if build/tests/util/model_tool exists): pipelines written by the C
   code (F32, F16; from a dir and from a single file) load with diffusers'
   from_pretrained with no missing/unexpected keys and the expected values.
"""
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel  # noqa: E402
from diffusers.utils import logging as dlogging  # noqa: E402
from transformers import CLIPTextConfig, CLIPTextModel  # noqa: E402
from transformers.utils import logging as tlogging  # noqa: E402

dlogging.set_verbosity_error()
tlogging.set_verbosity_error()
dlogging.disable_progress_bar()

ROOT = os.environ.get("SD_ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BUILD = os.environ.get("SD_BUILD", "build")
FIX = os.path.join(ROOT, "tests", "fixtures")
OUT = os.path.join(ROOT, "tests", "ref", "golden", "models.json")
MODEL_TOOL = os.path.join(ROOT, BUILD, "tests", "util", "model_tool")
TINY = ("sd1-tiny", "sd2-tiny", "sd1-3down")
CLASSES = (("unet", UNet2DConditionModel), ("vae", AutoencoderKL), ("text_encoder", CLIPTextModel))


def sha16(t):
    return hashlib.sha256(t.detach().to(torch.float32).contiguous().numpy().tobytes()).hexdigest()[:16]


def make_tiny(name, out, *extra):
    subprocess.run([sys.executable, os.path.join(FIX, "make_tiny_model.py"), "--config", name, out, "--force", *extra],
                   check=True)


def load_component(cls, d, sub):
    m, info = cls.from_pretrained(d, subfolder=sub, output_loading_info=True)
    bad = {k: v for k, v in info.items() if v}
    assert not bad, f"{d}/{sub}: {bad}"
    return m


def check_tiny(tmp):
    res = {}
    for name in TINY:
        d = os.path.join(tmp, name)
        make_tiny(name, d)
        comps = {}
        for sub, cls in CLASSES:
            m = load_component(cls, d, sub)
            sd = m.state_dict()
            comps[sub] = {"params": sum(p.numel() for p in m.parameters()), "tensors": len(sd),
                          "sha16": {k: sha16(v) for k, v in sorted(sd.items())}}
        pipe = StableDiffusionPipeline.from_pretrained(d, safety_checker=None, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        h = 64 if name != "sd1-3down" else 48  # 3down: 12x16 latents, not a multiple of 8
        img = pipe("a photo of a cat", num_inference_steps=2, height=h, width=64, output_type="np",
                   generator=torch.Generator().manual_seed(0)).images
        assert img.shape == (1, h, 64, 3) and np.isfinite(img).all(), img.shape
        res[name] = comps
        print(f"tiny {name}: " + ", ".join(f"{k} {v['params']}/{v['tensors']}" for k, v in comps.items()))
    return res


# ----------------------------------------------------------------- tables

SD15_UNET = {"_class_name": "UNet2DConditionModel", "act_fn": "silu", "attention_head_dim": 8,
             "block_out_channels": [320, 640, 1280, 1280], "center_input_sample": False, "cross_attention_dim": 768,
             "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
             "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4,
             "layers_per_block": 2, "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32,
             "out_channels": 4, "sample_size": 64,
             "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]}
SD2_UNET = dict(SD15_UNET, attention_head_dim=[5, 10, 20, 20], cross_attention_dim=1024, use_linear_projection=True,
                sample_size=96, upcast_attention=True)
SD_VAE = {"_class_name": "AutoencoderKL", "act_fn": "silu", "block_out_channels": [128, 256, 512, 512],
          "down_block_types": ["DownEncoderBlock2D"] * 4, "in_channels": 3, "latent_channels": 4,
          "layers_per_block": 2, "norm_num_groups": 32, "out_channels": 3, "sample_size": 512,
          "up_block_types": ["UpDecoderBlock2D"] * 4}
CLIP_L = {"architectures": ["CLIPTextModel"], "hidden_act": "quick_gelu", "hidden_size": 768,
          "intermediate_size": 3072, "layer_norm_eps": 1e-05, "max_position_embeddings": 77,
          "model_type": "clip_text_model", "num_attention_heads": 12, "num_hidden_layers": 12, "projection_dim": 768,
          "vocab_size": 49408}
SD2_TEXT = dict(CLIP_L, hidden_act="gelu", hidden_size=1024, intermediate_size=4096, num_attention_heads=16,
                num_hidden_layers=23, projection_dim=512)

TABLES = {
    "sd15_unet": ("unet", SD15_UNET),
    "sd2_unet": ("unet", SD2_UNET),
    "sd_vae": ("vae", SD_VAE),
    "clip_l": ("text", CLIP_L),
    "sd2_text": ("text", SD2_TEXT),
    "unet_lists": ("unet", {
        "_class_name": "UNet2DConditionModel", "block_out_channels": [32, 64, 64], "layers_per_block": [1, 2, 2],
        "cross_attention_dim": [16, 24, 40], "attention_head_dim": [2, 4, 8], "transformer_layers_per_block": [1, 2, 1],
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"], "norm_num_groups": 8,
        "only_cross_attention": [False, True, False], "time_embedding_dim": 96, "conv_in_kernel": 5,
        "conv_out_kernel": 1, "in_channels": 9, "out_channels": 8, "sample_size": [12, 20]}),
    "unet_no_mid": ("unet", {
        "_class_name": "UNet2DConditionModel", "block_out_channels": [16, 32], "layers_per_block": 1,
        "cross_attention_dim": 8, "attention_head_dim": 2, "mid_block_type": None, "norm_num_groups": 4,
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"], "use_linear_projection": True,
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"], "only_cross_attention": True}),
    "vae_plain": ("vae", {
        "_class_name": "AutoencoderKL", "block_out_channels": [16, 32, 32], "layers_per_block": 2,
        "down_block_types": ["DownEncoderBlock2D"] * 3, "up_block_types": ["UpDecoderBlock2D"] * 3,
        "latent_channels": 16, "norm_num_groups": 8, "use_quant_conv": False, "use_post_quant_conv": False,
        "mid_block_add_attention": False, "in_channels": 4, "out_channels": 2}),
    "clip_small": ("text", {"hidden_size": 48, "intermediate_size": 100, "num_attention_heads": 3,
                            "num_hidden_layers": 2, "vocab_size": 100, "max_position_embeddings": 16,
                            "hidden_act": "gelu_new", "model_type": "clip_text_model"}),
}


def build_meta(kind, cfg):
    cfg = {k: v for k, v in cfg.items() if not k.startswith("_")}
    with torch.device("meta"):
        if kind == "unet":
            return UNet2DConditionModel(**cfg)
        if kind == "vae":
            return AutoencoderKL(**cfg)
        return CLIPTextModel(CLIPTextConfig(**{k: v for k, v in cfg.items() if k != "architectures"}))


def check_tables():
    res = {}
    for name, (kind, cfg) in TABLES.items():
        m = build_meta(kind, cfg)
        sd = m.state_dict()
        res[name] = {"kind": kind, "config": cfg, "params": sum(p.numel() for p in m.parameters()),
                     "keys": [[k, list(v.shape)] for k, v in sorted(sd.items())]}
        print(f"table {name}: {res[name]['params']} params, {len(sd)} tensors")
    return res


# ------------------------------------------------------------ single file


def state_dicts(pipe):
    return {c: getattr(pipe, c).state_dict() for c, _ in CLASSES}


def same(a, b, cast=None):
    for c in a:
        assert set(a[c]) == set(b[c]), (c, set(a[c]) ^ set(b[c]))
        for k in a[c]:
            x, y = a[c][k], b[c][k]
            if cast is not None:
                y = y.to(cast).to(torch.float32)
            assert torch.equal(x.float(), y.float()), (c, k)


def check_single_file(tmp):
    res = {}
    cases = (("sd1-tiny", ["--ema"]), ("sd2-tiny", ["--openclip", "--vae-prefix", "vae."]))
    for name, args in cases:
        d = os.path.join(tmp, name)
        ck = os.path.join(tmp, name + ".safetensors")
        subprocess.run([sys.executable, os.path.join(FIX, "make_ldm_checkpoint.py"), d, ck, *args], check=True)
        a = StableDiffusionPipeline.from_single_file(ck, config=d, local_files_only=True, safety_checker=None)
        b = StableDiffusionPipeline.from_pretrained(d, safety_checker=None)
        same(state_dicts(b), state_dicts(a))
        res[name] = "from_single_file(config=dir) == from_pretrained(dir), bit-identical: " + " ".join(args)
        print(f"single-file {name}: ok")
    return res


# ------------------------------------------------------------------ saving


def check_save(tmp):
    if not os.path.exists(MODEL_TOOL):
        print(f"save: skipped ({MODEL_TOOL} not built)")
        return {"skipped": "model_tool not built"}
    res = {}
    d = os.path.join(tmp, "sd1-tiny")
    ref = state_dicts(StableDiffusionPipeline.from_pretrained(d, safety_checker=None))
    runs = (("f32_from_dir", [d], None), ("f16_from_dir", [d, "--dtype", "f16"], torch.float16),
            ("bf16_from_dir", [d, "--dtype", "bf16"], torch.bfloat16),
            ("f32_from_single_file", [os.path.join(tmp, "sd1-tiny.safetensors"), "--config-dir", d], None),
            ("f32_keep_vae", [d, "--keep-vae"], None))
    for tag, args, cast in runs:
        out = os.path.join(tmp, "saved-" + tag)
        subprocess.run([MODEL_TOOL, "save", args[0], out, *args[1:]], check=True)
        for sub, cls in CLASSES:
            load_component(cls, out, sub)
        got = state_dicts(StableDiffusionPipeline.from_pretrained(out, safety_checker=None))
        same(got, ref, cast)
        res[tag] = "loads with from_pretrained, no missing/unexpected keys, values as expected"
        print(f"save {tag}: ok")
    return res


def main():
    tmp = tempfile.mkdtemp(prefix="gen_models.")
    try:
        golden = {
            "about": "tests/ref/gen_models.py (diffusers %s, transformers %s, torch %s); tiny models from "
                     "tests/fixtures/make_tiny_model.py --seed 0" % (
                         __import__("diffusers").__version__, __import__("transformers").__version__,
                         torch.__version__),
            "tiny": check_tiny(tmp),
            "tables": check_tables(),
            "single_file": check_single_file(tmp),
            "save": check_save(tmp),
        }
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(golden, f, indent=1, sort_keys=True)
        f.write("\n")
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
