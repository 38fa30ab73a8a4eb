#!/usr/bin/env python3
"""check_sdfit_output.py — sdfit's output in the reference stack (run with
.venv-ref after `make`; not part of make check):

  1. builds a tiny pipeline (make_tiny_model.py sd1-tiny), a synthetic dataset,
     prep shards (sdprep), latent shards (sdencode) and trains it with sdfit
     (--use_ema, checkpoints, --prediction_type v_prediction);
  2. diffusers' StableDiffusionPipeline.from_pretrained(OUTPUT_DIR) loads the
     output with no missing/unexpected keys and renders an image (2 steps);
     its UNet weights equal the checkpoint's EMA weights;
  3. UNet2DConditionModel.from_pretrained(checkpoint-N/unet) and
     EMAModel.from_pretrained(checkpoint-N/unet_ema) load (diffusers'
     acceptance tests; the EMA state matches the steps taken);
  4. TensorBoard's EventAccumulator reads the scalars (train_loss, lr,
     grad_norm, images_per_s) at steps 1..N.

    .venv-ref/bin/python tests/ref/check_sdfit_output.py [--keep DIR]
Prints one line per check; exits non-zero on the first failure.
"""
import json
import os
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import torch

warnings.filterwarnings("ignore")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
from diffusers import StableDiffusionPipeline, UNet2DConditionModel  # noqa: E402
from diffusers.training_utils import EMAModel  # noqa: E402
from diffusers.utils import logging as dlogging  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

dlogging.set_verbosity_error()
ROOT = os.environ.get("SD_ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BIN = os.path.join(ROOT, os.environ.get("SD_BUILD", "build"), "bin")
STEPS = 6


def run(*cmd):
    subprocess.run([str(c) for c in cmd], check=True, stdout=subprocess.DEVNULL)


def ok(msg):
    print("ok:", msg)


def main():
    keep = sys.argv[sys.argv.index("--keep") + 1] if "--keep" in sys.argv else None
    if keep:
        return check(keep)
    with tempfile.TemporaryDirectory(prefix="check_sdfit.") as tmp:
        return check(tmp)


def check(tmp):
    py = sys.executable
    model, data, prep, lat, out = (os.path.join(tmp, x) for x in ("model", "data", "prep", "lat", "out"))
    run(py, os.path.join(ROOT, "tests/fixtures/make_tiny_model.py"), "--config", "sd1-tiny", model, "--force")
    run(py, os.path.join(ROOT, "tests/fixtures/make_dataset.py"), data, "--n", "6", "--seed", "2")
    run(os.path.join(BIN, "sdprep"), "--train_data_dir", data, "--pretrained_model_name_or_path", model, "-o", prep,
        "--resolution", "32", "--random_flip", "-q")
    run(os.path.join(BIN, "sdencode"), prep, "--pretrained_model_name_or_path", model, "-o", lat, "-q")
    run(os.path.join(BIN, "sdfit"), lat, "--pretrained_model_name_or_path", model, "--output_dir", out,
        "--train_batch_size", "2", "--max_train_steps", STEPS, "--checkpointing_steps", "3", "--use_ema",
        "--learning_rate", "1e-3", "--lr_warmup_steps", "0", "--seed", "1", "--prediction_type", "v_prediction", "-q")
    ok(f"sdfit trained {STEPS} steps into {out}")

    _, info = UNet2DConditionModel.from_pretrained(os.path.join(out, "unet"), output_loading_info=True)
    bad = {k: v for k, v in info.items() if v}
    assert not bad, f"unet loading info: {bad}"
    pipe = StableDiffusionPipeline.from_pretrained(out, safety_checker=None)
    pipe.set_progress_bar_config(disable=True)
    assert pipe.scheduler.config.prediction_type == "v_prediction", pipe.scheduler.config
    img = pipe("a red square", num_inference_steps=2, height=64, width=64,
               generator=torch.Generator().manual_seed(0), output_type="np").images[0]
    assert img.shape == (64, 64, 3) and np.isfinite(img).all(), img.shape
    ok(f"StableDiffusionPipeline.from_pretrained loads the output (no missing/unexpected keys) and renders "
       f"{img.shape} (mean {img.mean():.3f}); scheduler prediction_type v_prediction")

    ema_ck = load_file(os.path.join(out, f"checkpoint-{STEPS}", "unet_ema", "diffusion_pytorch_model.safetensors"))
    sd = pipe.unet.state_dict()
    assert sorted(sd) == sorted(ema_ck), "unet keys differ"
    assert all(torch.equal(sd[k], ema_ck[k]) for k in sd), "output unet != checkpoint EMA weights"
    ok("the output UNet holds the EMA weights (== checkpoint unet_ema, bit for bit)")

    for n in (3, STEPS):
        u = UNet2DConditionModel.from_pretrained(os.path.join(out, f"checkpoint-{n}", "unet"))
        e = EMAModel.from_pretrained(os.path.join(out, f"checkpoint-{n}", "unet_ema"), UNet2DConditionModel)
        assert e.optimization_step == n, (n, e.optimization_step)
        assert len(e.shadow_params) == len(list(u.parameters()))
    ok(f"checkpoint-N/unet loads with UNet2DConditionModel, unet_ema with EMAModel (optimization_step = N)")

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    ea = EventAccumulator(os.path.join(out, "logs", "text2image-fine-tune"))
    ea.Reload()
    tags = ea.Tags()["scalars"]
    for tag in ("train_loss", "lr", "grad_norm", "images_per_s"):
        assert tag in tags, tags
        steps = [s.step for s in ea.Scalars(tag)]
        assert steps == list(range(1, STEPS + 1)), (tag, steps)
    losses = [round(s.value, 4) for s in ea.Scalars("train_loss")]
    log = [json.loads(line) for line in open(os.path.join(out, "logs", "train_log.jsonl"))]
    assert [round(j["loss"], 4) for j in log] == losses
    ok(f"TensorBoard reads train_loss/lr/grad_norm/images_per_s at steps 1..{STEPS} (losses {losses}), "
       f"= train_log.jsonl")
    return 0


if __name__ == "__main__":
    sys.exit(main())
