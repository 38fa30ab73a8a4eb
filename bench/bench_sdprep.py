#!/usr/bin/env python3
"""bench_sdprep.py — sdprep vs the Python reference preprocessing, same images,
same run, one core each.

Reference path = what train_text_to_image.py does per sample (its dataset
transform): PIL open + convert("RGB") -> torchvision Resize(res, LANCZOS) ->
RandomCrop(res) -> ToTensor -> Normalize, and the slow CLIPTokenizer on the
caption (padding to 77). sdprep does the same plus PNG encoding and writing the
tar shards. Reports images/s per core and the ratio (issue target: >= 2x).
Run in .venv-ref (torch, torchvision, transformers); make bench calls it.
"""
import json
import os
import subprocess
import sys
import tempfile
import time

sys.modules["ftfy"] = None  # the slow tokenizer's non-ftfy path, as sdtools
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torchvision import transforms  # noqa: E402
from transformers import CLIPTokenizer  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BIN = os.path.join(ROOT, os.environ.get("SD_BUILD", "build"), "bin")
N = int(os.environ.get("BENCH_PREP_N", "96"))
RES = int(os.environ.get("BENCH_PREP_RES", "512"))


def main():
    torch.set_num_threads(1)
    tmp = tempfile.mkdtemp(prefix="bench-sdprep-")
    data = os.path.join(tmp, "data")
    py = os.path.join(ROOT, ".venv-test", "bin", "python")
    subprocess.run([py, f"{ROOT}/tests/fixtures/make_dataset.py", data, "--n", str(N), "--min-size", "640",
                    "--max-size", "1280", "--seed", "7", "--formats", os.environ.get("BENCH_PREP_FORMATS", "jpg")], check=True)
    model = os.path.join(tmp, "model")
    # the real CLIP vocabulary (SD1 tokenizer) so the BPE work is realistic
    vocab = subprocess.run([py, f"{ROOT}/tests/fixtures/get_clip_vocab.py", ROOT], capture_output=True, text=True)
    lines = vocab.stdout.strip().splitlines() if vocab.returncode == 0 else []
    tokdir = next((l for l in lines if l.rstrip("/").endswith("sd1")), None)
    if not tokdir or not os.path.isdir(tokdir):
        subprocess.run([py, f"{ROOT}/tests/fixtures/make_tiny_model.py", "--config", "sd1-tiny", model], check=True,
                       capture_output=True)
        tokdir = os.path.join(model, "tokenizer")
    rows = [json.loads(l) for l in open(os.path.join(data, "train", "metadata.jsonl"))]

    # reference
    tok = CLIPTokenizer.from_pretrained(tokdir)
    assert not tok.__class__.__name__.endswith("Fast")
    tf = transforms.Compose([transforms.Resize(RES, interpolation=transforms.InterpolationMode.LANCZOS),
                             transforms.RandomCrop(RES), transforms.ToTensor(), transforms.Normalize([0.5], [0.5])])
    t0 = time.process_time()
    for r in rows:
        img = Image.open(os.path.join(data, "train", r["file_name"])).convert("RGB")
        tf(img)
        cap = r["text"] if isinstance(r["text"], str) else r["text"][0]
        tok(cap, max_length=77, padding="max_length", truncation=True).input_ids
    ref_s = time.process_time() - t0

    # sdprep, one thread (CPU time of the child)
    out = os.path.join(tmp, "prep")
    t0 = os.times()
    subprocess.run([f"{BIN}/sdprep", "--train_data_dir", data, "--tokenizer_name", tokdir, "-o", out,
                    "--resolution", str(RES), "-j", "1", "-q"], check=True, capture_output=True)
    t1 = os.times()
    ours_s = (t1.children_user - t0.children_user) + (t1.children_system - t0.children_system)
    ref_ips, our_ips = N / ref_s, N / ours_s
    fmts = os.environ.get("BENCH_PREP_FORMATS", "jpg")
    line = (f"sdprep bench: {N} {fmts} images ~640-1280 px -> {RES}, one core: PIL+torchvision+CLIPTokenizer "
            f"{ref_ips:.1f} img/s, sdprep {our_ips:.1f} img/s (incl. PNG encode + tar), ratio {our_ips / ref_ips:.2f}x")
    print(line)
    os.makedirs(os.path.join(ROOT, "bench", "out"), exist_ok=True)
    with open(os.path.join(ROOT, "bench", "out", "sdprep.json"), "w") as f:
        json.dump({"n": N, "resolution": RES, "reference_img_s": ref_ips, "sdprep_img_s": our_ips,
                   "ratio": our_ips / ref_ips}, f, indent=2)


if __name__ == "__main__":
    main()
