#!/usr/bin/env python3
"""bench_ops.py — lib/nn ops on the CPU backend vs PyTorch CPU, same machine,
same thread count, same run. Run with .venv-ref/bin/python (torch).

For each SD1.5-shaped case it times PyTorch (forward under no_grad; backward
= autograd of a random upstream gradient, w.r.t. inputs and parameters) and
then our op (tests/util/bench_ops, the same op and gradients), back to back,
so a load change on the shared machine hits both. It prints time, ratio
(torch / ours, > 1 means we are faster), GFLOP/s counted as the direct
algorithm's FLOPs, and % of the measured sgemm peak.

  bench/bench_ops.py [--threads 2] [--iters 3] [--quick] [--only conv,attn,...] [--cputime] [--median]
"""
import argparse
import json
import math
import os
import re
import subprocess
import sys
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
BUILD = os.environ.get("SD_BUILD", os.path.join(ROOT, "build"))
BIN = os.path.join(BUILD, "tests", "util", "bench_ops")


CPUTIME = False  # --cputime: process CPU time (single thread), immune to time-slicing
METRIC = "min"   # min of the iterations: the least disturbed sample on a shared machine


def ours(args, threads, iters, algo=None):
    cmd = [BIN, "-t", str(threads), "-n", str(iters)] + (["-c"] if CPUTIME else []) + \
          (["-a", algo] if algo else []) + [str(a) for a in args]
    out = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    if METRIC == "min":
        out["fwd_ms"], out["bwd_ms"] = out["fwd_min_ms"], out["bwd_min_ms"]
    return out


def tmed(fn, iters):
    clock = time.process_time if CPUTIME else time.perf_counter
    fn()
    ts = []
    for _ in range(iters):
        t0 = clock()
        fn()
        ts.append((clock() - t0) * 1e3)
    ts.sort()
    return ts[0] if METRIC == "min" else ts[len(ts) // 2]


def torch_case(kind, a, iters):
    import torch
    import torch.nn.functional as F
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)
    if kind == "conv":
        B, C, H, W, OC, k, s, p = a
        x, w, b = r(B, C, H, W), r(OC, C, k, k) * 0.05, r(OC)
        with torch.no_grad():
            fwd = tmed(lambda: F.conv2d(x, w, b, stride=s, padding=p), iters)
        xg, wg, bg = x.requires_grad_(), w.requires_grad_(), b.requires_grad_()
        y = F.conv2d(xg, wg, bg, stride=s, padding=p)
        gy = r(*y.shape)
        bwd = tmed(lambda: torch.autograd.grad(y, (xg, wg, bg), gy, retain_graph=True), iters)
        return fwd, bwd
    if kind == "linear":
        BT, C, OC = a
        x, w, b = r(BT, C), r(OC, C) * 0.05, r(OC)
        with torch.no_grad():
            fwd = tmed(lambda: F.linear(x, w, b), iters)
        xg, wg, bg = x.requires_grad_(), w.requires_grad_(), b.requires_grad_()
        y = F.linear(xg, wg, bg)
        gy = r(*y.shape)
        bwd = tmed(lambda: torch.autograd.grad(y, (xg, wg, bg), gy, retain_graph=True), iters)
        return fwd, bwd
    if kind == "attn":
        B, H, Nq, Nk, D, causal = a
        C = H * D
        q, k, v = r(B, Nq, C), r(B, Nk, C), r(B, Nk, C)
        # diffusers AttnProcessor2_0: [B,N,C] -> view/transpose -> SDPA -> back
        def f(q, k, v):
            qh = q.view(B, Nq, H, D).transpose(1, 2)
            kh = k.view(B, Nk, H, D).transpose(1, 2)
            vh = v.view(B, Nk, H, D).transpose(1, 2)
            o = F.scaled_dot_product_attention(qh, kh, vh, is_causal=bool(causal))
            return o.transpose(1, 2).reshape(B, Nq, C)
        with torch.no_grad():
            fwd = tmed(lambda: f(q, k, v), iters)
        qg, kg, vg = q.requires_grad_(), k.requires_grad_(), v.requires_grad_()
        y = f(qg, kg, vg)
        gy = r(*y.shape)
        bwd = tmed(lambda: torch.autograd.grad(y, (qg, kg, vg), gy, retain_graph=True), iters)
        return fwd, bwd
    if kind == "gn":
        B, C, HW, G, silu = a
        x, ga, be = r(B, C, HW) * 2, r(C), r(C)
        f = (lambda x, ga, be: F.silu(F.group_norm(x, G, ga, be, 1e-5))) if silu else \
            (lambda x, ga, be: F.group_norm(x, G, ga, be, 1e-5))
        with torch.no_grad():
            fwd = tmed(lambda: f(x, ga, be), iters)
        xg, gg, bg = x.requires_grad_(), ga.requires_grad_(), be.requires_grad_()
        y = f(xg, gg, bg)
        gy = r(*y.shape)
        bwd = tmed(lambda: torch.autograd.grad(y, (xg, gg, bg), gy, retain_graph=True), iters)
        return fwd, bwd
    if kind == "gemm":
        M, N, K = a
        A, Bm = r(M, K), r(K, N)
        return tmed(lambda: A @ Bm, iters), 0.0
    raise ValueError(kind)


def flops(kind, a):
    """Direct-algorithm FLOPs (1 MAC = 2 FLOP) of forward and backward."""
    if kind == "conv":
        B, C, H, W, OC, k, s, p = a
        OH, OW = (H + 2 * p - k) // s + 1, (W + 2 * p - k) // s + 1
        f = 2.0 * B * OC * C * k * k * OH * OW
        return f, 2 * f
    if kind == "linear":
        BT, C, OC = a
        f = 2.0 * BT * C * OC
        return f, 2 * f
    if kind == "attn":
        B, H, Nq, Nk, D, causal = a
        f = 4.0 * B * H * Nq * Nk * D * (0.5 if causal else 1.0)
        return f, 2.5 * f  # backward: 5 GEMMs of the forward's 2
    if kind == "gn":
        return 0.0, 0.0
    if kind == "gemm":
        M, N, K = a
        return 2.0 * M * N * K, 0.0


CASES = [
    # (group, label, kind, args)
    ("conv", "3x3 320->320 64x64 b1", "conv", (1, 320, 64, 64, 320, 3, 1, 1)),
    ("conv", "3x3 320->320 64x64 b2", "conv", (2, 320, 64, 64, 320, 3, 1, 1)),
    ("conv", "3x3 640->640 32x32 b1", "conv", (1, 640, 32, 32, 640, 3, 1, 1)),
    ("conv", "3x3 640->640 32x32 b2", "conv", (2, 640, 32, 32, 640, 3, 1, 1)),
    ("conv", "3x3 1280->1280 16x16 b1", "conv", (1, 1280, 16, 16, 1280, 3, 1, 1)),
    ("conv", "3x3 1280->1280 16x16 b2", "conv", (2, 1280, 16, 16, 1280, 3, 1, 1)),
    ("conv", "3x3 1280->1280 8x8 b1", "conv", (1, 1280, 8, 8, 1280, 3, 1, 1)),
    ("conv", "3x3 1280->1280 8x8 b2", "conv", (2, 1280, 8, 8, 1280, 3, 1, 1)),
    ("conv", "3x3 s2 320 64->32 b1", "conv", (1, 320, 64, 64, 320, 3, 2, 1)),
    ("conv", "1x1 640->320 32x32 b1", "conv", (1, 640, 32, 32, 320, 1, 1, 0)),
    ("conv", "3x3 128->128 128x128 b1 (VAE)", "conv", (1, 128, 128, 128, 128, 3, 1, 1)),
    ("linear", "4096x320 -> 320 (to_q)", "linear", (4096, 320, 320)),
    ("linear", "4096x320 -> 2560 (geglu proj)", "linear", (4096, 320, 2560)),
    ("linear", "4096x1280 -> 320 (ff out)", "linear", (4096, 1280, 320)),
    ("linear", "1024x640 -> 5120 (geglu proj)", "linear", (1024, 640, 5120)),
    ("linear", "154x768 -> 320 (to_k ctx b2)", "linear", (154, 768, 320)),
    ("attn", "self 8x40 N=4096 b1", "attn", (1, 8, 4096, 4096, 40, 0)),
    ("attn", "self 8x80 N=1024 b1", "attn", (1, 8, 1024, 1024, 80, 0)),
    ("attn", "self 8x160 N=256 b2", "attn", (2, 8, 256, 256, 160, 0)),
    ("attn", "cross 8x40 4096x77 b1", "attn", (1, 8, 4096, 77, 40, 0)),
    ("attn", "cross 8x80 1024x77 b1", "attn", (1, 8, 1024, 77, 80, 0)),
    ("attn", "clip causal 12x64 77 b2", "attn", (2, 12, 77, 77, 64, 1)),
    ("gn", "groupnorm+silu 320x64x64 b1", "gn", (1, 320, 4096, 32, 1)),
    ("gn", "groupnorm+silu 1280x16x16 b2", "gn", (2, 1280, 256, 32, 1)),
]

QUICK = {"3x3 320->320 64x64 b1", "3x3 640->640 32x32 b2", "3x3 1280->1280 16x16 b1", "3x3 1280->1280 8x8 b2",
         "4096x320 -> 2560 (geglu proj)", "4096x1280 -> 320 (ff out)", "self 8x40 N=4096 b1", "self 8x80 N=1024 b1",
         "cross 8x40 4096x77 b1", "groupnorm+silu 320x64x64 b1"}


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            txt = f.read()
        name = re.search(r"model name\s*:\s*(.*)", txt).group(1)
        mhz = float(re.search(r"cpu MHz\s*:\s*([\d.]+)", txt).group(1))
        fam = int(re.search(r"cpu family\s*:\s*(\d+)", txt).group(1))
        model = int(re.search(r"\nmodel\s*:\s*(\d+)", txt).group(1))
        return name, mhz, fam, model
    except Exception:
        return "?", 0.0, 0, 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="a representative subset (~1 minute)")
    ap.add_argument("--only", default="", help="comma list of groups: conv,linear,attn,gn")
    ap.add_argument("--repeat", type=int, default=1,
                    help="measure each case this many times (torch, ours alternating) and keep the best of each")
    ap.add_argument("--json", default="", help="also write the results here")
    ap.add_argument("--cputime", action="store_true",
                    help="single thread, timed by process CPU time (robust when the machine is shared)")
    ap.add_argument("--median", action="store_true", help="report the median instead of the minimum")
    args = ap.parse_args()
    global CPUTIME, METRIC
    if args.cputime:
        CPUTIME = True
        args.threads = 1
    if args.median:
        METRIC = "median"
    import torch
    torch.set_num_threads(args.threads)
    if not os.path.exists(BIN):
        sys.exit(f"bench_ops.py: {BIN} missing: run make first")

    name, mhz, fam, model = cpu_model()
    # Zen 2/3/4 (family 23/25): 2 x 256-bit FMA pipes = 32 FP32 FLOP/cycle/core
    per_cycle = 32 if fam in (23, 25) else 0
    theo = per_cycle * mhz * 1e-3 * args.threads if per_cycle else 0.0
    # the practical peak: best of a few sgemm runs (a shared machine only ever slows us down)
    peak_ms = min(ours(("gemm", 2048, 2048, 2048), args.threads, args.iters)["fwd_ms"] for _ in range(3))
    peak = 2.0 * 2048 ** 3 / (peak_ms * 1e-3) * 1e-9
    tpeak = 2.0 * 2048 ** 3 / (min(torch_case("gemm", (2048, 2048, 2048), args.iters)[0] for _ in range(3)) * 1e-3) * 1e-9
    print(f"CPU: {name} (family {fam} model {model}), {args.threads} threads, {mhz:.0f} MHz nominal")
    if theo:
        print(f"theoretical FMA peak at nominal clock: {theo:.0f} GFLOP/s (32 FLOP/cycle/core)")
    print(f"practical peak = our sgemm 2048^3: {peak:.0f} GFLOP/s (torch/MKL: {tpeak:.0f})")
    print(f"torch {torch.__version__}, {args.iters} iterations per measurement, reported: {METRIC}"
          f"{', process CPU time' if CPUTIME else ', wall time'}\n")
    hdr = f"{'case':34s} {'pass':4s} {'torch ms':>9s} {'ours ms':>9s} {'ratio':>6s} {'GF/s':>7s} {'%peak':>6s}"
    print(hdr)
    print("-" * len(hdr))
    groups = set(args.only.split(",")) if args.only else None
    results = []
    tot = {}
    for group, label, kind, a in CASES:
        if groups and group not in groups:
            continue
        if args.quick and label not in QUICK:
            continue
        tf = tb = of = ob = float("inf")
        for _ in range(args.repeat):
            f_, b_ = torch_case(kind, a, args.iters)
            o = ours((kind,) + tuple(a), args.threads, args.iters)
            tf, tb = min(tf, f_), min(tb, b_)
            of, ob = min(of, o["fwd_ms"]), min(ob, o["bwd_ms"])
        o = {"fwd_ms": of, "bwd_ms": ob}
        ff, fb = flops(kind, a)
        for pas, t_t, t_o, fl in (("fwd", tf, o["fwd_ms"], ff), ("bwd", tb, o["bwd_ms"], fb)):
            gf = fl / (t_o * 1e-3) * 1e-9 if fl else 0.0
            pct = f"{100 * gf / peak:5.0f}%" if fl else "     -"
            print(f"{label:34s} {pas:4s} {t_t:9.2f} {t_o:9.2f} {t_t / t_o:6.2f} {gf:7.0f} {pct}")
            results.append({"case": label, "kind": kind, "pass": pas, "torch_ms": t_t, "ours_ms": t_o,
                            "gflops": gf})
            key = (group, pas)
            tt, to = tot.get(key, (0.0, 0.0))
            tot[key] = (tt + t_t, to + t_o)
        sys.stdout.flush()
    print("\nsums per group (ratio of summed times, torch / ours):")
    for (group, pas), (tt, to) in sorted(tot.items()):
        print(f"  {group:7s} {pas}: torch {tt:9.1f} ms  ours {to:9.1f} ms  ratio {tt / to:5.2f}")
    tt = sum(v[0] for v in tot.values())
    to = sum(v[1] for v in tot.values())
    print(f"  all        : torch {tt:9.1f} ms  ours {to:9.1f} ms  ratio {tt / to:5.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"peak_gflops": peak, "torch_peak_gflops": tpeak, "theoretical_gflops": theo,
                       "results": results}, f, indent=1)


if __name__ == "__main__":
    main()
