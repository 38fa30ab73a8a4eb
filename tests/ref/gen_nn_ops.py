#!/usr/bin/env python3
"""gen_nn_ops.py — golden files for tests/unit/test_nn.c (the lib/nn layers).

For every op: small random inputs (fixed seed; shapes chosen to hit edge
cases: odd sizes, channel counts not divisible by 4/8, non-square images,
several groups, stride 2 with odd input, asymmetric padding, causal masks,
token counts that are not a multiple of the attention query block), the torch
forward output, and the gradients w.r.t. every input and parameter for a random
upstream gradient `gy` (loss = sum(y * gy)).

References are computed by torch in float64 from the float32 inputs and stored
as float32, so the C test measures the C code's own error. The exception is
the timestep embedding, whose float32 arithmetic *is* the specification
(diffusers computes it in fp32): it is produced by diffusers' own function.

Output: tests/ref/golden/nn/<case>.safetensors, tensors named in.*, out.*,
grad.*; metadata "params" holds the case's integer/float parameters as JSON.
Run: .venv-ref/bin/python tests/ref/gen_nn_ops.py
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

ROOT = os.environ.get("SD_ROOT", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
OUT = os.path.join(ROOT, "tests", "ref", "golden", "nn")

gen = torch.Generator().manual_seed(20240611)


def randn(*shape, scale=1.0):
    return (torch.randn(*shape, generator=gen, dtype=torch.float32) * scale)


def save(name, params, inputs, outputs, grads):
    t = {}
    for k, v in inputs.items():
        t["in." + k] = v.detach().to(torch.float32).contiguous()
    for k, v in outputs.items():
        t["out." + k] = v.detach().to(torch.float32).contiguous()
    for k, v in grads.items():
        t["grad." + k] = v.detach().to(torch.float32).contiguous()
    os.makedirs(OUT, exist_ok=True)
    save_file(t, os.path.join(OUT, name + ".safetensors"), metadata={"params": json.dumps(params)})


def run(fn, inputs, grad_names):
    """fn(**double tensors) -> dict of outputs (first one gets gy). Returns
    outputs and gradients (float64), plus the upstream gradient used."""
    d = {k: v.double().requires_grad_(k in grad_names) for k, v in inputs.items()}
    outs = fn(**d)
    first = next(iter(outs))
    gy = randn(*outs[first].shape)
    (outs[first] * gy.double()).sum().backward()
    grads = {k: d[k].grad for k in grad_names}
    return outs, grads, gy


# ---- linear / matmul -------------------------------------------------------------------
def gen_linear():
    for name, BT, C, OC, bias in [("linear", 7, 13, 11, True), ("linear_nobias", 5, 8, 6, False)]:
        inp = {"x": randn(BT, C), "w": randn(OC, C, scale=0.3)}
        if bias:
            inp["b"] = randn(OC)
        outs, grads, gy = run(lambda x, w, b=None: {"y": F.linear(x, w, b)}, inp, list(inp))
        inp["gy"] = gy
        save(name, {"BT": BT, "C": C, "OC": OC}, inp, outs, grads)


def gen_matmul():
    M, N, K, batch = 5, 7, 9, 2
    for ta in (0, 1):
        for tb in (0, 1):
            A = randn(batch, K, M) if ta else randn(batch, M, K)
            B = randn(batch, N, K) if tb else randn(batch, K, N)
            C0 = randn(batch, M, N)
            alpha, beta = 0.75, -0.5
            a = A.double().transpose(1, 2) if ta else A.double()
            b = B.double().transpose(1, 2) if tb else B.double()
            y = alpha * (a @ b) + beta * C0.double()
            save(f"matmul_t{ta}{tb}", {"M": M, "N": N, "K": K, "batch": batch, "ta": ta, "tb": tb,
                                        "alpha": alpha, "beta": beta},
                 {"A": A, "B": B, "C": C0}, {"y": y}, {})


# ---- conv2d ----------------------------------------------------------------------------
CONV_CASES = [
    # name, B, C, H, W, OC, k, stride, (pad_t, pad_b, pad_l, pad_r)
    ("conv_k3s1p1", 2, 5, 9, 7, 6, 3, 1, (1, 1, 1, 1)),       # odd sizes: partial Winograd tiles
    ("conv_k3s1p1_multi", 2, 24, 20, 18, 20, 3, 1, (1, 1, 1, 1)),  # several Winograd chunks, across images
    ("conv_k3s1p0", 1, 3, 6, 8, 2, 3, 1, (0, 0, 0, 0)),
    ("conv_k3s1_big", 1, 3, 65, 66, 2, 3, 1, (1, 1, 1, 1)),    # > 1024 tiles: chunked filter gradient
    ("conv_k3s2p1", 2, 4, 9, 11, 5, 3, 2, (1, 1, 1, 1)),       # UNet downsampler, odd input
    ("conv_vae_down", 1, 3, 8, 7, 4, 3, 2, (0, 1, 0, 1)),      # VAE: F.pad(0,1,0,1) + k3 s2 p0
    ("conv_k1", 2, 6, 5, 3, 7, 1, 1, (0, 0, 0, 0)),            # 1x1 (shortcut, proj_in/out)
    ("conv_k3s1p2", 1, 2, 5, 6, 3, 3, 1, (2, 2, 2, 2)),        # pad 2: transposed pad 0 in backward
]


def gen_conv():
    for name, B, C, H, W, OC, k, s, (pt, pb, pl, pr) in CONV_CASES:
        inp = {"x": randn(B, C, H, W), "w": randn(OC, C, k, k, scale=1.0 / math.sqrt(C * k * k)), "b": randn(OC)}

        def f(x, w, b):
            xp = F.pad(x, (pl, pr, pt, pb))
            return {"y": F.conv2d(xp, w, b, stride=s)}

        outs, grads, gy = run(f, inp, ["x", "w", "b"])
        inp["gy"] = gy
        save(name, {"B": B, "C": C, "H": H, "W": W, "OC": OC, "k": k, "stride": s,
                    "pad_t": pt, "pad_b": pb, "pad_l": pl, "pad_r": pr}, inp, outs, grads)


# ---- norms -----------------------------------------------------------------------------
def gen_norm():
    for name, B, C, H, W, G, eps, silu in [("groupnorm", 2, 6, 5, 7, 3, 1e-5, 0),
                                           ("groupnorm_silu", 2, 8, 3, 5, 2, 1e-6, 1),
                                           ("groupnorm_g1", 1, 5, 4, 4, 1, 1e-5, 1)]:
        inp = {"x": randn(B, C, H, W, scale=2.0) + 0.5, "gamma": 1 + randn(C, scale=0.3), "beta": randn(C, scale=0.3)}

        def f(x, gamma, beta):
            y = F.group_norm(x, G, gamma, beta, eps)
            if silu:
                y = F.silu(y)
            xg = x.reshape(B, G, -1)
            mean = xg.mean(-1)
            rstd = 1.0 / torch.sqrt(xg.var(-1, unbiased=False) + eps)
            return {"y": y, "mean": mean.reshape(-1), "rstd": rstd.reshape(-1)}

        outs, grads, gy = run(f, inp, ["x", "gamma", "beta"])
        inp["gy"] = gy
        save(name, {"B": B, "C": C, "HW": H * W, "G": G, "eps": eps, "silu": silu}, inp, outs, grads)

    N, C, eps = 9, 13, 1e-5
    inp = {"x": randn(N, C, scale=1.5) - 0.3, "w": 1 + randn(C, scale=0.3), "b": randn(C, scale=0.3)}

    def f(x, w, b):
        return {"y": F.layer_norm(x, (C,), w, b, eps), "mean": x.mean(-1),
                "rstd": 1.0 / torch.sqrt(x.var(-1, unbiased=False) + eps)}

    outs, grads, gy = run(f, inp, ["x", "w", "b"])
    inp["gy"] = gy
    save("layernorm", {"N": N, "C": C, "eps": eps}, inp, outs, grads)


# ---- activations -----------------------------------------------------------------------
def gen_act():
    x = torch.cat([randn(200, scale=3.0), torch.tensor([0.0, 1e-6, -1e-6, 5.0, -5.0, 10.0, -10.0, 30.0, -30.0,
                                                         80.0, -80.0, 0.5, -0.5]), randn(44, scale=0.1)])
    for name, fn in [("silu", F.silu), ("gelu", lambda t: F.gelu(t)), ("quick_gelu", lambda t: t * torch.sigmoid(1.702 * t))]:
        outs, grads, gy = run(lambda x: {"y": fn(x)}, {"x": x}, ["x"])
        save(name, {"n": x.numel()}, {"x": x, "gy": gy}, outs, grads)

    N, D = 5, 7
    inp = {"x": randn(N, 2 * D, scale=1.5)}

    def geglu(x):
        a, g = x.chunk(2, dim=-1)
        return {"y": a * F.gelu(g)}

    outs, grads, gy = run(geglu, inp, ["x"])
    inp["gy"] = gy
    save("geglu", {"N": N, "D": D}, inp, outs, grads)

    N, C = 6, 11
    inp = {"x": randn(N, C, scale=4.0)}
    outs, grads, gy = run(lambda x: {"y": torch.softmax(x, -1)}, inp, ["x"])
    inp["gy"] = gy
    save("softmax", {"N": N, "C": C}, inp, outs, grads)


# ---- attention -------------------------------------------------------------------------
ATTN_CASES = [
    # name, B, H, Nq, Nk, D, causal
    ("attn_self", 2, 3, 70, 70, 8, 0),       # N not a multiple of the 64-row query block
    ("attn_causal", 2, 2, 77, 77, 4, 1),     # CLIP
    ("attn_cross", 1, 2, 130, 9, 5, 0),      # cross-attention: few keys, 3 query blocks
    ("attn_onehead", 1, 1, 150, 150, 6, 0),  # VAE mid-block shape: one head (blocks split across threads)
]


def gen_attn():
    for name, B, H, Nq, Nk, D, causal in ATTN_CASES:
        C = H * D
        inp = {"q": randn(B, Nq, C), "k": randn(B, Nk, C), "v": randn(B, Nk, C)}

        def f(q, k, v):
            qh = q.view(B, Nq, H, D).transpose(1, 2)
            kh = k.view(B, Nk, H, D).transpose(1, 2)
            vh = v.view(B, Nk, H, D).transpose(1, 2)
            s = (qh @ kh.transpose(-1, -2)) / math.sqrt(D)
            if causal:
                mask = torch.ones(Nq, Nk, dtype=torch.bool).triu(1)
                s = s.masked_fill(mask, float("-inf"))
            lse = torch.logsumexp(s, -1)                      # [B, H, Nq]
            o = torch.softmax(s, -1) @ vh
            ref = F.scaled_dot_product_attention(qh, kh, vh, is_causal=bool(causal))
            assert torch.allclose(o, ref, atol=1e-10), name
            return {"y": o.transpose(1, 2).reshape(B, Nq, C), "lse": lse}

        outs, grads, gy = run(f, inp, ["q", "k", "v"])
        inp["gy"] = gy
        save(name, {"B": B, "H": H, "Nq": Nq, "Nk": Nk, "D": D, "causal": causal}, inp, outs, grads)


# ---- small ops -------------------------------------------------------------------------
def gen_misc():
    B, C, H, W = 2, 3, 2, 5
    inp = {"x": randn(B, C, H, W), "v": randn(B, C)}
    outs, grads, gy = run(lambda x, v: {"y": x + v[:, :, None, None]}, inp, ["x", "v"])
    inp["gy"] = gy
    save("add_channel", {"B": B, "C": C, "HW": H * W}, inp, outs, grads)

    for name, B, C, H, W, OH, OW in [("upsample2x", 1, 2, 3, 5, 6, 10), ("upsample_size", 2, 2, 3, 5, 7, 9),
                                     ("upsample_size2", 1, 1, 5, 4, 8, 11)]:
        inp = {"x": randn(B, C, H, W)}
        if OH == 2 * H and OW == 2 * W:
            fn = lambda x: {"y": F.interpolate(x, scale_factor=2.0, mode="nearest")}
        else:
            fn = lambda x: {"y": F.interpolate(x, size=(OH, OW), mode="nearest")}
        outs, grads, gy = run(fn, inp, ["x"])
        inp["gy"] = gy
        save(name, {"B": B, "C": C, "H": H, "W": W, "OH": OH, "OW": OW}, inp, outs, grads)

    B, L, C, V = 2, 5, 6, 10
    ids = torch.tensor([[3, 1, 4, 1, 5], [9, 2, 6, 5, 3]], dtype=torch.int64)
    inp = {"tok": randn(V, C), "pos": randn(L, C)}

    def emb(tok, pos):
        return {"y": tok[ids] + pos[None, :L]}

    outs, grads, gy = run(emb, inp, ["tok", "pos"])
    inp["gy"] = gy
    inp["ids"] = ids.to(torch.float32)  # small integers, exact in float
    save("embedding", {"B": B, "L": L, "C": C, "V": V}, inp, outs, grads)

    for name, B, n, weighted in [("mse", 3, 20, 0), ("mse_weighted", 3, 20, 1)]:
        inp = {"pred": randn(B, n), "target": randn(B, n)}
        if weighted:
            inp["w"] = torch.tensor([0.5, 2.0, 1.25])

        def mse(pred, target, w=None):
            per = ((pred - target) ** 2).mean(-1)
            loss = (per * w).mean() if w is not None else F.mse_loss(pred, target)
            return {"loss": loss.reshape(1), "per_sample": per}

        d = {k: v.double().requires_grad_(k == "pred") for k, v in inp.items()}
        o = mse(**d)
        dloss = 1.5
        (o["loss"].sum() * dloss).backward()
        save(name, {"B": B, "n": n, "dloss": dloss}, inp, {"loss": o["loss"], "per_sample": o["per_sample"]},
             {"pred": d["pred"].grad})


def gen_timestep():
    from diffusers.models.embeddings import get_timestep_embedding
    t = torch.tensor([981.0, 0.0, 1.0, 500.5, 999.0])
    for name, dim, flip, shift in [("timestep", 320, True, 0.0), ("timestep_odd", 7, False, 1.0)]:
        y = get_timestep_embedding(t, dim, flip_sin_to_cos=flip, downscale_freq_shift=shift)
        save(name, {"B": t.numel(), "dim": dim, "flip": int(flip), "shift": shift}, {"t": t}, {"y": y}, {})


def main():
    torch.set_num_threads(1)
    gen_linear()
    gen_matmul()
    gen_conv()
    gen_norm()
    gen_act()
    gen_attn()
    gen_misc()
    gen_timestep()
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"gen_nn_ops: {len(os.listdir(OUT))} files, {total} bytes in {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()
