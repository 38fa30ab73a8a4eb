#!/usr/bin/env python3
"""plot_loss.py — draw sdfit's train_log.jsonl as a loss-curve PNG (numpy + Pillow only).

    plot_loss.py LOG OUT.png [--key loss] [--width 800] [--height 400]

LOG is a train_log.jsonl, or sdfit's output directory (its logs/train_log.jsonl
is used; a path OUT_DIR/train_log.jsonl that does not exist falls back to
OUT_DIR/logs/train_log.jsonl). A resumed run appends to the log: the last line
of a step wins. Draws the per-step value (light), a moving average (dark),
skipped steps (--on_nan skip) as red ticks, and the learning rate (right axis,
dashed) when it varies.
"""
import argparse
import json
import os
import sys

import numpy as np
from PIL import Image, ImageDraw, ImageFont


def find_log(path):
    if os.path.isdir(path):
        for p in (os.path.join(path, "logs", "train_log.jsonl"), os.path.join(path, "train_log.jsonl")):
            if os.path.isfile(p):
                return p
    if not os.path.isfile(path):
        alt = os.path.join(os.path.dirname(path), "logs", os.path.basename(path))
        if os.path.isfile(alt):
            return alt
    return path


def read(path, key):
    rows = {}
    with open(path) as f:
        for line in f:
            try:
                j = json.loads(line)
            except ValueError:
                continue  # a partial last line of a killed run
            if "step" in j:
                rows[j["step"]] = j
    steps = sorted(rows)
    val = np.array([rows[s].get(key) if rows[s].get(key) is not None else np.nan for s in steps], float)
    lr = np.array([rows[s].get("lr", np.nan) for s in steps], float)
    skipped = [s for s in steps if rows[s].get("skipped")]
    return np.array(steps, float), val, lr, skipped


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("log")
    ap.add_argument("out")
    ap.add_argument("--key", default="loss")
    ap.add_argument("--width", type=int, default=800)
    ap.add_argument("--height", type=int, default=400)
    a = ap.parse_args()
    path = find_log(a.log)
    steps, val, lr, skipped = read(path, a.key)
    if len(steps) == 0:
        print(f"plot_loss.py: {path}: no steps", file=sys.stderr)
        return 1
    W, H, L, R, T, B = a.width, a.height, 70, 70, 30, 40
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    x0, x1 = steps.min(), max(steps.max(), steps.min() + 1)
    ok = np.isfinite(val)
    lo, hi = (np.nanmin(val[ok]), np.nanmax(val[ok])) if ok.any() else (0.0, 1.0)
    if hi <= lo:
        hi = lo + 1
    pad = 0.05 * (hi - lo)
    lo, hi = lo - pad, hi + pad

    def px(s, v, vlo=lo, vhi=hi):
        return L + (s - x0) / (x1 - x0) * (W - L - R), T + (1 - (v - vlo) / (vhi - vlo)) * (H - T - B)

    # axes and grid
    d.rectangle([L, T, W - R, H - B], outline="black")
    for k in range(5):
        v = lo + (hi - lo) * k / 4
        _, y = px(x0, v)
        d.line([L, y, W - R, y], fill=(225, 225, 225))
        d.text((5, y - 6), f"{v:.4g}", fill="black", font=font)
    for k in range(5):
        s = x0 + (x1 - x0) * k / 4
        x, _ = px(s, lo)
        d.text((x - 10, H - B + 6), f"{int(round(s))}", fill="black", font=font)
    d.text((W // 2 - 20, H - 18), "step", fill="black", font=font)
    d.text((L, 8), f"sdfit {a.key} ({os.path.basename(os.path.dirname(os.path.dirname(os.path.abspath(path))))})",
           fill="black", font=font)
    # learning rate on the right axis when it varies
    if np.isfinite(lr).all() and lr.max() > lr.min():
        pts = [px(s, v, lr.min(), lr.max()) for s, v in zip(steps, lr)]
        for p, q in zip(pts, pts[1:]):
            if int(p[0]) % 8 < 5:
                d.line([p, q], fill=(90, 160, 90))
        d.text((W - R + 4, T), f"lr {lr.max():.2g}", fill=(60, 130, 60), font=font)
        d.text((W - R + 4, H - B - 10), f"{lr.min():.2g}", fill=(60, 130, 60), font=font)
    # values and their moving average
    pts = [px(s, v) for s, v in zip(steps[ok], val[ok])]
    if len(pts) > 1:
        d.line(pts, fill=(160, 185, 230), width=1)
    win = max(1, len(steps) // 20)
    if ok.sum() >= win and win > 1:
        ma = np.convolve(val[ok], np.ones(win) / win, mode="valid")
        mpts = [px(s, v) for s, v in zip(steps[ok][win - 1:], ma)]
        d.line(mpts, fill=(20, 60, 160), width=2)
    for s in skipped:
        x, _ = px(s, lo)
        d.line([x, H - B - 8, x, H - B], fill="red", width=2)
    img.save(a.out)
    print(f"{a.out}: {len(steps)} steps, {a.key} {val[ok][0]:.4f} -> {val[ok][-1]:.4f}"
          + (f", {len(skipped)} skipped" if skipped else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
