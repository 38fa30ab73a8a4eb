"""gen_train_math.py — goldens for lib/train (optimizer, clipping, LR schedules,
EMA, losses, loss scaling) from torch / diffusers, run in .venv-ref.

Writes tests/ref/golden/train/:
  adamw.safetensors + adamw.json   AdamW trajectories (torch.optim.AdamW, CPU,
                                   default foreach/fused -> _single_tensor_adam),
                                   one case with clip + LR schedule + EMA in the loop;
                                   plus *_ieee: the same runs by a replica of
                                   _single_tensor_adam whose only change is an IEEE
                                   (correctly rounded) sqrt instead of MKL's
  clip.safetensors + clip.json     torch.nn.utils.clip_grad_norm_ on gradient sets
  sched.json                       diffusers.optimization.get_scheduler lr sequences
  ema.safetensors + ema.json       diffusers EMAModel decay values and shadow params
  loss.safetensors + loss.json     F.mse_loss and the min-SNR weighted loss (values, grads)
  scaler.json                      torch.amp.GradScaler scale/growth sequence

Everything is float32 on CPU with torch's default thread count. Params of a
case are flattened and concatenated in the order of their tensors ("segments"),
as libsd keeps them in one flat buffer.
"""
import json
import os

import numpy as np
import torch
from safetensors.torch import save_file

import diffusers
from diffusers.optimization import get_cosine_schedule_with_warmup, get_scheduler
from diffusers.training_utils import EMAModel, compute_snr
from diffusers import DDPMScheduler

ROOT = os.environ.get("SD_ROOT", os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
OUT = os.path.join(ROOT, "tests", "ref", "golden", "train")
os.makedirs(OUT, exist_ok=True)

META = {
    "torch": torch.__version__,
    "diffusers": diffusers.__version__,
    "cpu_capability": torch.backends.cpu.get_cpu_capability(),
    "threads": torch.get_num_threads(),
}


def flat(ts):
    return torch.cat([t.detach().reshape(-1) for t in ts]).clone()


def finite_json(x):
    """JSON has no inf/nan: write them as the strings "inf", "-inf", "nan" (strtod reads them)."""
    if isinstance(x, float) and not np.isfinite(x):
        return "nan" if np.isnan(x) else ("inf" if x > 0 else "-inf")
    if isinstance(x, dict):
        return {k: finite_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite_json(v) for v in x]
    return x


def dump_json(name, obj):
    with open(os.path.join(OUT, name), "w") as f:
        json.dump(finite_json(obj), f, indent=1, allow_nan=False)
        f.write("\n")


# ---------------------------------------------------------------- AdamW
def make_params(shapes, gen):
    return [torch.nn.Parameter(torch.randn(s, generator=gen) * 0.5) for s in shapes]


def ieee_sqrt(t):
    """Correctly rounded float32 sqrt (numpy's). torch's CPU sqrt goes through
    MKL VML (vmsSqrt, VML_HA), which is off by one ulp in about 20% of
    elements on this machine; libsd uses IEEE sqrtf."""
    return torch.from_numpy(np.sqrt(t.numpy()))


class ReplicaAdamW:
    """torch's _single_tensor_adam (decoupled weight decay) written out with
    the same tensor ops, with a pluggable sqrt. With torch.sqrt it must
    reproduce torch.optim.AdamW bit for bit (checked below), which shows the
    replica is faithful; with ieee_sqrt it gives the trajectory libsd's
    arithmetic (IEEE sqrt) must match exactly."""

    def __init__(self, params, lr, betas, eps, wd, sqrt):
        self.params, self.lr, self.betas, self.eps, self.wd, self.sqrt = params, lr, betas, eps, wd, sqrt
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.step_t = 0

    @torch.no_grad()
    def step(self, grads):
        b1, b2 = self.betas
        lr = self.lr
        self.step_t += 1
        step = float(self.step_t)
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            if self.wd != 0:
                p.mul_(1 - lr * self.wd)
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            bc1 = 1 - b1 ** step
            bc2 = 1 - b2 ** step
            step_size = lr / bc1
            bc2_sqrt = bc2 ** 0.5
            denom = (self.sqrt(v) / bc2_sqrt).add_(self.eps)
            p.addcdiv_(m, denom, value=-step_size)


def adamw_case(name, shapes, steps, lr, wd, betas=(0.9, 0.999), eps=1e-8, grad_scales=None,
               sched=None, clip=None, ema=False, seed=0):
    gen = torch.Generator().manual_seed(seed)
    params = make_params(shapes, gen)
    # the same run twice more, by the replica: with torch's sqrt and with IEEE sqrt
    rep_t = [torch.nn.Parameter(p.detach().clone()) for p in params]
    rep_i = [torch.nn.Parameter(p.detach().clone()) for p in params]
    opt = torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=wd)
    opt_t = ReplicaAdamW(rep_t, lr, betas, eps, wd, torch.sqrt)
    opt_i = ReplicaAdamW(rep_i, lr, betas, eps, wd, ieee_sqrt)
    lr_sched = None
    if sched is not None:
        lr_sched = get_scheduler(sched["name"], optimizer=opt, num_warmup_steps=sched["warmup"],
                                 num_training_steps=sched["total"])
    ema_model = EMAModel(params) if ema else None
    ema_i = EMAModel(rep_i) if ema else None
    p0 = flat(params)
    grads, ps, ps_i, lrs, norms, ema_shadow, ema_shadow_i, ema_decay = [], [], [], [], [], [], [], []
    for s in range(steps):
        for k, p in enumerate(params):
            sc = grad_scales[k] if grad_scales else 1.0
            p.grad = torch.randn(p.shape, generator=gen) * sc
        grads.append(flat([p.grad for p in params]))
        for rep in (rep_t, rep_i):
            for p, q in zip(params, rep):
                q.grad = p.grad.clone()
        if clip is not None:
            norms.append(float(torch.nn.utils.clip_grad_norm_(params, clip)))
            for rep in (rep_t, rep_i):
                torch.nn.utils.clip_grad_norm_(rep, clip)
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        for o, rep in ((opt_t, rep_t), (opt_i, rep_i)):
            o.lr = lrs[-1]
            o.step([q.grad for q in rep])
        if lr_sched is not None:
            lr_sched.step()
        if ema_model is not None:
            ema_model.step(params)
            ema_i.step(rep_i)
            ema_shadow.append(flat(ema_model.shadow_params))
            ema_shadow_i.append(flat(ema_i.shadow_params))
            ema_decay.append(ema_model.cur_decay_value)
        opt.zero_grad(set_to_none=True)
        ps.append(flat(params))
        ps_i.append(flat(rep_i))
        assert torch.equal(flat(rep_t), ps[-1]), f"{name}: the AdamW replica does not reproduce torch at step {s}"
    st = opt.state
    assert torch.equal(flat(opt_t.m), flat([st[p]["exp_avg"] for p in params]))
    assert torch.equal(flat(opt_t.v), flat([st[p]["exp_avg_sq"] for p in params]))
    tensors = {
        f"{name}.params0": p0,
        f"{name}.grads": torch.stack(grads),
        f"{name}.params": torch.stack(ps),
        f"{name}.params_ieee": torch.stack(ps_i),
        f"{name}.exp_avg": flat([st[p]["exp_avg"] for p in params]),
        f"{name}.exp_avg_sq": flat([st[p]["exp_avg_sq"] for p in params]),
        f"{name}.exp_avg_ieee": flat(opt_i.m),
        f"{name}.exp_avg_sq_ieee": flat(opt_i.v),
    }
    if ema_model is not None:
        tensors[f"{name}.ema"] = torch.stack(ema_shadow)
        tensors[f"{name}.ema_ieee"] = torch.stack(ema_shadow_i)
    meta = {
        "segments": [int(np.prod(s)) for s in shapes], "steps": steps, "lr": lr, "weight_decay": wd,
        "betas": list(betas), "eps": eps, "lrs": lrs, "sched": sched, "clip": clip, "norms": norms,
        "ema": ema, "ema_decay": ema_decay, "step_count": int(st[params[0]]["step"].item()),
    }
    return tensors, meta


def gen_adamw():
    shapes = [(37,), (8, 16), (4, 25)]
    cases = [
        ("basic", dict(lr=1e-3, wd=1e-2, grad_scales=[1e-3, 1.0, 10.0])),
        ("nowd", dict(lr=1e-4, wd=0.0)),
        ("big", dict(lr=0.05, wd=0.1, betas=(0.8, 0.99), eps=1e-6, grad_scales=[1e-4, 3.0, 0.1], seed=3)),
        ("sched", dict(lr=1e-3, wd=1e-2, sched={"name": "cosine", "warmup": 5, "total": 20}, seed=5)),
        ("train", dict(lr=2e-3, wd=1e-2, sched={"name": "linear", "warmup": 3, "total": 20}, clip=1.0,
                       ema=True, grad_scales=[0.05, 0.5, 0.2], seed=7)),
        # beta1 <= 0.5: lerp's other formula (weight 1-beta1 >= 0.5)
        ("lowbeta", dict(lr=1e-2, wd=0.05, betas=(0.3, 0.9), seed=13)),
    ]
    tensors, meta = {}, {}
    for name, kw in cases:
        t, m = adamw_case(name, shapes, 20, **kw)
        tensors.update(t)
        meta[name] = m
    # a larger single tensor: many full SIMD blocks plus a ragged tail
    t, m = adamw_case("long", [(1000, 3), (7,)], 3, lr=3e-4, wd=1e-2, seed=11)
    tensors.update(t)
    meta["long"] = m
    save_file(tensors, os.path.join(OUT, "adamw.safetensors"))
    dump_json("adamw.json", {"meta": META, "cases": meta})


# ---------------------------------------------------------------- clip_grad_norm_
def gen_clip():
    gen = torch.Generator().manual_seed(1)
    sets = {}

    def add(name, shapes, scale, max_norm, poison=None):
        params = [torch.nn.Parameter(torch.zeros(s)) for s in shapes]
        for p in params:
            p.grad = torch.randn(p.shape, generator=gen) * scale
        if poison is not None:
            k, i, v = poison
            params[k].grad.view(-1)[i] = v
        gin = flat([p.grad for p in params])
        total = torch.nn.utils.clip_grad_norm_(params, max_norm)
        sets[name] = {"segments": [int(np.prod(s)) for s in shapes], "max_norm": max_norm,
                      "total": float(total)}
        return {f"{name}.in": gin, f"{name}.out": flat([p.grad for p in params]), f"{name}.total": total.reshape(1)}

    shapes = [(37,), (8, 16), (4, 25)]
    tensors = {}
    tensors.update(add("below", shapes, 0.01, 1.0))
    tensors.update(add("above", shapes, 1.0, 1.0))
    tensors.update(add("above_small", shapes, 3.0, 0.25))
    tensors.update(add("inf", shapes, 1.0, 1.0, poison=(1, 5, float("inf"))))
    tensors.update(add("nan", shapes, 1.0, 1.0, poison=(2, 0, float("nan"))))
    tensors.update(add("many", [(i * 7 + 1,) for i in range(13)] + [(4099,)], 0.3, 0.5))
    tensors.update(add("huge", [(20,), (3,)], 1e20, 1.0))
    tensors.update(add("one", [(5, 5)], 2.0, 1.0))
    save_file(tensors, os.path.join(OUT, "clip.safetensors"))
    dump_json("clip.json", {"meta": META, "sets": sets})


# ---------------------------------------------------------------- LR schedules
def lr_sequence(make, base_lr, n):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=base_lr)
    sched = make(opt)
    out = []
    for _ in range(n):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def gen_sched():
    base = 1e-4
    n = 36
    cases = []

    def add(name, warmup, total, num_cycles=None, power=None, step_rules=None, direct_cosine_cycles=None, lr=base):
        if direct_cosine_cycles is not None:
            def make(opt):
                return get_cosine_schedule_with_warmup(opt, warmup, total, num_cycles=direct_cosine_cycles)
        else:
            kw = {}
            if num_cycles is not None:
                kw["num_cycles"] = num_cycles
            if power is not None:
                kw["power"] = power
            if step_rules is not None:
                kw["step_rules"] = step_rules

            def make(opt):
                return get_scheduler(name, optimizer=opt, num_warmup_steps=warmup, num_training_steps=total, **kw)
        cases.append({"name": name, "base_lr": lr, "warmup": warmup, "total": total,
                      "num_cycles": direct_cosine_cycles if direct_cosine_cycles is not None else num_cycles,
                      "power": power, "step_rules": step_rules, "lrs": lr_sequence(make, lr, n)})

    for w in (0, 5):
        add("constant", w, 30)
        add("constant_with_warmup", w, 30)
        add("linear", w, 30)
        add("cosine", w, 30)
        add("cosine_with_restarts", w, 30)
        add("cosine_with_restarts", w, 30, num_cycles=3)
        add("polynomial", w, 30)
        add("polynomial", w, 30, power=2.0)
    add("polynomial", 5, 30, power=0.5, lr=3e-3)
    add("cosine", 5, 30, direct_cosine_cycles=1.5)
    add("linear", 7, 13, lr=1e-3)
    add("cosine", 1, 2, lr=1e-3)
    add("piecewise_constant", 0, 30, step_rules="1:10,0.1:20,0.01:30,0.005")
    add("piecewise_constant", 0, 30, step_rules="0.5:3,2:17,0.25")
    dump_json("sched.json", {"meta": META, "steps": n, "cases": cases})


# ---------------------------------------------------------------- EMA
def gen_ema():
    configs = {
        "default": {},
        "warmup": {"use_ema_warmup": True},
        "after3": {"update_after_step": 3, "min_decay": 0.5, "decay": 0.95},
        "warmup_pow": {"use_ema_warmup": True, "inv_gamma": 2.0, "power": 0.75, "decay": 0.9},
        "foreach": {"foreach": True},  # --foreach_ema
    }
    gen = torch.Generator().manual_seed(2)
    tensors, meta = {}, {}
    probe = [0, 1, 2, 3, 4, 5, 10, 100, 1000, 31623, 215444, 1000000]
    for name, kw in configs.items():
        params = [torch.nn.Parameter(torch.randn(s, generator=gen)) for s in [(33,), (6, 7)]]
        ema = EMAModel(params, **kw)
        tensors[f"{name}.params0"] = flat(params)
        ps, shadows, decays = [], [], []
        for _ in range(20):
            with torch.no_grad():
                for p in params:
                    p.add_(torch.randn(p.shape, generator=gen) * 0.05)
            ps.append(flat(params))
            ema.step(params)
            shadows.append(flat(ema.shadow_params))
            decays.append(ema.cur_decay_value)
        tensors[f"{name}.params"] = torch.stack(ps)
        tensors[f"{name}.shadow"] = torch.stack(shadows)
        full = {"decay": 0.9999, "min_decay": 0.0, "update_after_step": 0, "use_ema_warmup": False,
                "inv_gamma": 1.0, "power": 2 / 3, "foreach": False}
        full.update(kw)
        meta[name] = {"config": full, "decays": decays, "probe_steps": probe,
                      "probe_decays": [ema.get_decay(s) for s in probe]}
    save_file(tensors, os.path.join(OUT, "ema.safetensors"))
    dump_json("ema.json", {"meta": META, "configs": meta})


# ---------------------------------------------------------------- losses
def formula_input(n, mult, shift):
    """x_i = ((i*mult) mod 10007)/10007 - 0.5 + shift, in float64 then rounded to float32."""
    i = np.arange(n, dtype=np.int64)
    return (((i * mult) % 10007) / 10007.0 - 0.5 + shift).astype(np.float32)


def gen_loss():
    gen = torch.Generator().manual_seed(4)
    sched = DDPMScheduler(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
    tensors, meta = {}, {}
    for name, shape in [("small", (3, 4, 8, 8)), ("mid", (4, 4, 32, 32)), ("big", (2, 4, 64, 64))]:
        if name == "big":
            # over torch's 32768-element grain: the sum runs split over threads.
            # Inputs from a formula the C test recomputes exactly (integer
            # arithmetic and one correctly rounded division).
            pred0 = torch.from_numpy(formula_input(int(np.prod(shape)), 7919, 0.0)).reshape(shape)
            target = torch.from_numpy(formula_input(int(np.prod(shape)), 104729, 0.25)).reshape(shape)
        else:
            pred0 = torch.randn(shape, generator=gen)
            target = torch.randn(shape, generator=gen)
        timesteps = torch.randint(0, 1000, (shape[0],), generator=gen)
        snr = compute_snr(sched, timesteps)
        w = torch.stack([snr, 5.0 * torch.ones_like(timesteps)], dim=1).min(dim=1)[0] / snr
        pred = pred0.clone().requires_grad_(True)
        loss = torch.nn.functional.mse_loss(pred.float(), target.float(), reduction="mean")
        loss.backward()
        g_mean = pred.grad.clone()
        pred2 = pred0.clone().requires_grad_(True)
        l2 = torch.nn.functional.mse_loss(pred2.float(), target.float(), reduction="none")
        l2 = l2.mean(dim=list(range(1, len(l2.shape)))) * w
        l2 = l2.mean()
        l2.backward()
        tensors.update({f"{name}.w": w.float(), f"{name}.loss": loss.detach().reshape(1),
                        f"{name}.snr_loss": l2.detach().reshape(1)})
        if name != "big":
            tensors.update({f"{name}.pred": pred0, f"{name}.target": target, f"{name}.grad": g_mean,
                            f"{name}.snr_grad": pred2.grad.clone()})
        meta[name] = {"shape": list(shape), "timesteps": timesteps.tolist()}
    save_file(tensors, os.path.join(OUT, "loss.safetensors"))
    dump_json("loss.json", {"meta": META, "cases": meta})


# ---------------------------------------------------------------- GradScaler
def gen_scaler():
    p = torch.nn.Parameter(torch.zeros(4))
    opt = torch.optim.SGD([p], lr=0.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0 ** 16, growth_factor=2.0, backoff_factor=0.5,
                                  growth_interval=3)
    pattern = [0, 0, 0, 1, 0, 0, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 1, 0]
    seq = []
    gen = torch.Generator().manual_seed(9)
    for bad in pattern:
        g = torch.randn(4, generator=gen) * 1000.0
        if bad:
            g[2] = float("inf") if len(seq) % 2 else float("nan")
        scaler.scale(torch.ones(()))  # initialises the scale tensor, as loss scaling does
        scale_before = float(scaler.get_scale())
        p.grad = g.clone()
        scaler.unscale_(opt)
        unscaled = p.grad.clone()
        scaler.step(opt)
        scaler.update()
        seq.append({"grad": [float(x) for x in g], "bad": bad, "scale_before": scale_before,
                    "unscaled": [float(x) for x in unscaled], "scale_after": float(scaler.get_scale()),
                    "growth_tracker": int(scaler._growth_tracker.item())})
    dump_json("scaler.json", {"meta": META, "growth_interval": 3, "init_scale": 2.0 ** 16, "seq": seq})


if __name__ == "__main__":
    torch.manual_seed(0)
    gen_adamw()
    gen_clip()
    gen_sched()
    gen_ema()
    gen_loss()
    gen_scaler()
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"gen_train_math: wrote {OUT} ({total} bytes)")
