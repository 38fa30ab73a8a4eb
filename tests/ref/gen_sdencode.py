#!/usr/bin/env python3
"""gen_sdencode.py — goldens for sdencode's end-to-end parity test.

Builds the same inputs the test builds (the synthetic dataset of
tests/fixtures/make_dataset.py, seed 3, 8 images; the sd1-tiny pipeline; sdprep
--resolution 32 --center_crop --random_flip), then computes with diffusers and
transformers, from the PNGs in the prep shards:
  mean, logvar          = AutoencoderKL.encode(px).latent_dist.{mean, logvar}  (logvar clamped)
  mean_flipped, ...     = the same on the horizontally flipped image
  hidden_states         = CLIPTextModel(input_ids)[0]            (last_hidden_state)
  hidden_states_skip1   = final_layer_norm(hidden_states[-2])     (diffusers clip_skip=1)
px = ToTensor + Normalize(0.5, 0.5) of the PNG, in float32 as torchvision does.
Writes tests/ref/golden/sdencode/golden.safetensors (keys "KEY.name").
Needs the built tools (make) and .venv-test for the fixture scripts.
"""
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile

import numpy as np
import torch
from PIL import Image
from safetensors.numpy import load, save_file

os.environ.setdefault("HF_HUB_OFFLINE", "1")
from diffusers import AutoencoderKL  # noqa: E402
from transformers import CLIPTextModel  # noqa: E402

ROOT = os.environ.get("SD_ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BIN = os.path.join(ROOT, os.environ.get("SD_BUILD", "build"), "bin")
PY = os.path.join(ROOT, ".venv-test", "bin", "python")
OUT = os.path.join(ROOT, "tests", "ref", "golden", "sdencode")


def main():
    torch.set_num_threads(2)
    tmp = tempfile.mkdtemp(prefix="gen-sdencode-")
    run = lambda *a: subprocess.run(list(a), check=True, capture_output=True)
    run(PY, f"{ROOT}/tests/fixtures/make_dataset.py", f"{tmp}/data", "--n", "8", "--seed", "3")
    run(PY, f"{ROOT}/tests/fixtures/make_tiny_model.py", "--config", "sd1-tiny", f"{tmp}/model")
    run(f"{BIN}/sdprep", "--train_data_dir", f"{tmp}/data", "--pretrained_model_name_or_path", f"{tmp}/model",
        "-o", f"{tmp}/prep", "--resolution", "32", "--center_crop", "--random_flip", "-q")
    vae = AutoencoderKL.from_pretrained(f"{tmp}/model/vae").eval()
    te = CLIPTextModel.from_pretrained(f"{tmp}/model/text_encoder").eval()
    gold = {}
    man = json.load(open(f"{tmp}/prep/manifest.json"))
    for sh in man["shards"]:
        with tarfile.open(f"{tmp}/prep/{sh['name']}") as t:
            mem = {}
            for m in t.getmembers():
                key, ext = m.name.split(".", 1)
                mem.setdefault(key, {})[ext] = t.extractfile(m).read()
        for key, d in sorted(mem.items()):
            img = np.asarray(Image.open(io.BytesIO(d["png"])).convert("RGB"))
            x = torch.from_numpy(img.copy()).permute(2, 0, 1).float().div(255)  # ToTensor
            x = ((x - 0.5) / 0.5)[None]
            ids = torch.from_numpy(load(d["tokens.safetensors"])["input_ids"].astype(np.int64))
            with torch.no_grad():
                for suffix, px in (("", x), ("_flipped", torch.flip(x, dims=[3]))):
                    dist = vae.encode(px).latent_dist
                    gold[f"{key}.mean{suffix}"] = dist.mean[0].numpy()
                    gold[f"{key}.logvar{suffix}"] = dist.logvar[0].numpy()
                out = te(ids, output_hidden_states=True)
                gold[f"{key}.hidden_states"] = out[0].numpy()
                gold[f"{key}.hidden_states_skip1"] = te.text_model.final_layer_norm(out.hidden_states[-2]).numpy()
    os.makedirs(OUT, exist_ok=True)
    save_file({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in gold.items()}, f"{OUT}/golden.safetensors",
              metadata={"generator": "tests/ref/gen_sdencode.py"})
    print(f"gen_sdencode: {len(gold)} tensors for {len(gold) // 6} samples", file=sys.stderr)


if __name__ == "__main__":
    main()
