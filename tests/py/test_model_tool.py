"""model_tool (tests/util) end to end: describe (text and JSON, what sdinfo
prints), table, hash and save on a regenerated tiny model; the saved pipeline
reads back with numpy/safetensors to the same values (F32) and exactly
rounded values (F16)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
from safetensors.numpy import load_file

from tap import ROOT, UTIL, check, done, run

TOOL = os.path.join(UTIL, "model_tool")
tmp = tempfile.mkdtemp(prefix="sdtest-model-")
model = os.path.join(tmp, "sd1")
subprocess.run([sys.executable, os.path.join(ROOT, "tests", "fixtures", "make_tiny_model.py"), "--config", "sd1-tiny",
                model], check=True)


def t_describe_text():
    out = run([TOOL, "describe", model]).stdout
    for s in ("diffusers pipeline (StableDiffusionPipeline)", "unet: UNet2DConditionModel, 1,427,012 parameters in 304",
              "vae: AutoencoderKL, 658,375 parameters in 124", "text_encoder: CLIPTextModel, 68,473 parameters in 84",
              "blocks: Down(32) CrossAttnDown(64) | mid CrossAttn | CrossAttnUp(64) Up(32)",
              "cross_attention_dim 32", "scaling_factor 0.18215", "act quick_gelu", "PNDMScheduler, prediction_type epsilon"):
        assert s in out, (s, out)


def t_describe_json():
    j = json.loads(run([TOOL, "describe", model, "--json"]).stdout)
    assert j["format"] == "diffusers" and j["pipeline_class"] == "StableDiffusionPipeline"
    c = j["components"]
    assert (c["unet"]["params"], c["vae"]["params"], c["text_encoder"]["params"]) == (1427012, 658375, 68473)
    assert c["unet"]["config"]["attention_heads"] == [8, 8] and c["unet"]["dtypes"] == ["F32"]
    assert c["vae"]["config"]["scaling_factor"] == 0.18215 and j["scheduler"]["class"] == "PNDMScheduler"


def t_describe_errors():
    p = run([TOOL, "describe", os.path.join(tmp, "nope")], check_rc=False)
    assert p.returncode == 1 and "model_tool: error:" in p.stderr and "no such file" in p.stderr, p.stderr


def t_table():
    lines = run([TOOL, "table", "unet", os.path.join(model, "unet", "config.json")]).stdout.splitlines()
    assert lines[-1] == "total 1427012 304", lines[-1]
    name, ldm, shape, off = lines[0].split("\t")
    assert (name, ldm, shape, off) == ("conv_in.weight", "input_blocks.0.0.weight", "[32, 4, 3, 3]", "0")


def t_save_f32_f16():
    ref = {c: load_file(os.path.join(model, c, f)) for c, f in (("unet", "diffusion_pytorch_model.safetensors"),
                                                                 ("vae", "diffusion_pytorch_model.safetensors"),
                                                                 ("text_encoder", "model.safetensors"))}
    for dt in ("f32", "f16"):
        out = os.path.join(tmp, "saved-" + dt)
        run([TOOL, "save", model, out, "--dtype", dt])
        assert sorted(os.listdir(out)) == ["model_index.json", "scheduler", "text_encoder", "tokenizer", "unet", "vae"]
        for c, r in ref.items():
            f = "model.safetensors" if c == "text_encoder" else "diffusion_pytorch_model.safetensors"
            got = load_file(os.path.join(out, c, f))
            assert set(got) == set(r), c
            for k, v in r.items():
                want = v if dt == "f32" else v.astype(np.float16)
                assert got[k].dtype == want.dtype and np.array_equal(got[k], want), (c, k)
        assert run([TOOL, "hash", out]).stdout.count("fingerprint") == 3
    h1 = run([TOOL, "hash", model]).stdout
    h2 = run([TOOL, "hash", os.path.join(tmp, "saved-f32")]).stdout
    assert h1 == h2


for name, fn in list(globals().items()):
    if name.startswith("t_"):
        check(name[2:], fn)
shutil.rmtree(tmp, ignore_errors=True)
done()
