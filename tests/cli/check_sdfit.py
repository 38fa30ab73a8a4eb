#!/usr/bin/env python3
"""check_sdfit.py — helpers for tests/cli/test_sdfit.sh (numpy + safetensors only).

  same A B                   the two safetensors files hold the same tensors, bit for bit
  differ A B                 they do not
  golden FILE GOLD PREFIX TOL   max over tensors of max|FILE[k] - GOLD[PREFIX k]| / RMS(GOLD) <= TOL;
                             prints the error
  keys FILE REF              FILE holds exactly the tensors (names, shapes) of REF
  replay OUT S B C H W [--nan M] [--ncap]   a replay file (formats/replay.md) with
                             numpy draws; --nan M puts a NaN into noise[M, 0]
  tb LOGDIR TAG N            a TensorBoard event file under LOGDIR has >= N records
                             that name TAG (and valid record framing)
  field FILE STEP KEY        print KEY of STEP's line of a train_log.jsonl
  pixels A B                 two image files hold the same pixels
  jsonl FILE N               FILE has N lines of JSON objects with step 1..N (last
                             occurrence of a step wins) and prints the skipped steps
"""
import glob
import json
import os
import struct
import sys

import numpy as np
from safetensors.numpy import load_file, save_file


def same(a, b):
    x, y = load_file(a), load_file(b)
    if sorted(x) != sorted(y):
        return False
    return all(x[k].dtype == y[k].dtype and x[k].shape == y[k].shape and x[k].tobytes() == y[k].tobytes() for k in x)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "same":
        return 0 if same(args[0], args[1]) else 1
    if cmd == "differ":
        return 1 if same(args[0], args[1]) else 0
    if cmd == "golden":
        x, g, pre, tol = load_file(args[0]), load_file(args[1]), args[2], float(args[3])
        worst = 0.0
        for k, v in x.items():
            r = g[pre + k].astype(np.float64)
            rms = np.sqrt((r * r).mean()) or 1.0
            worst = max(worst, float(np.abs(v.astype(np.float64) - r).max() / rms))
        n = sum(1 for k in g if k.startswith(pre))
        print(f"{worst:.1e}")
        return 0 if worst <= tol and n == len(x) else 1
    if cmd == "keys":
        x, r = load_file(args[0]), load_file(args[1])
        return 0 if {k: v.shape for k, v in x.items()} == {k: v.shape for k, v in r.items()} else 1
    if cmd == "replay":
        out, S, B, C, H, W = args[0], *map(int, args[1:6])
        rng = np.random.default_rng(5)
        t = {"latent_noise": rng.standard_normal((S, B, C, H, W)).astype(np.float32),
             "noise": rng.standard_normal((S, B, C, H, W)).astype(np.float32),
             "timesteps": rng.integers(0, 1000, (S, B)).astype(np.int64),
             "flip": rng.integers(0, 2, (S, B)).astype(np.uint8),
             "caption": np.zeros((S, B), np.int32)}
        if "--nan" in args:
            m = int(args[args.index("--nan") + 1])
            t["noise"][m, 0, 0, 0, 0] = np.nan
        save_file(t, out, metadata={"format": "sdfit-replay", "version": "1"})
        return 0
    if cmd == "tb":
        files = glob.glob(os.path.join(args[0], "**", "events.out.tfevents.*"), recursive=True)
        tag, want = args[1].encode(), int(args[2])
        n = 0
        for f in files:
            data = open(f, "rb").read()
            off = 0
            while off < len(data):
                if off + 12 > len(data):
                    return 1
                (ln,) = struct.unpack("<Q", data[off:off + 8])
                rec = data[off + 12:off + 12 + ln]
                if len(rec) != ln or off + 16 + ln > len(data):
                    return 1
                n += tag in rec
                off += 16 + ln
        print(n)
        return 0 if files and n >= want else 1
    if cmd == "field":
        v = None
        for line in open(args[0]):
            j = json.loads(line)
            if j["step"] == int(args[1]):
                v = j[args[2]]
        print(v)
        return 0 if v is not None else 1
    if cmd == "pixels":
        from PIL import Image
        a, b = (np.asarray(Image.open(x).convert("RGB")) for x in args[:2])
        return 0 if a.shape == b.shape and (a == b).all() else 1
    if cmd == "jsonl":
        steps = {}
        for line in open(args[0]):
            j = json.loads(line)
            steps[j["step"]] = j
        want = int(args[1])
        print(" ".join(str(s) for s, j in sorted(steps.items()) if j.get("skipped")))
        return 0 if sorted(steps) == list(range(1, want + 1)) else 1
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
