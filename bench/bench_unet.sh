#!/usr/bin/env bash
# bench_unet.sh — UNet2DConditionModel on the CPU: sdtools vs PyTorch (diffusers
# 0.39, .venv-ref), same thread count, same run, one process per measurement
# (so each peak RSS is its own).
#
#   bench/bench_unet.sh [quick|forward|train|tiny|all]     (default quick)
#
# quick:   what `make bench` runs (a few minutes): forward at 32x32 (batch 1,
#          2), the SD1.5 training step and the tiny training step;
# forward: SD1.5 shapes (random fp16 weights, run in fp32), latents 32x32 and
#          64x64, batch 1 and 2;
# train:   one training step (forward + MSE + backward, no optimizer) of SD1.5
#          shapes at 32x32, batch 1, without and with gradient checkpointing;
# tiny:    the same training step for the sd1-tiny model (32x32, batch 1).
# Env: THREADS (default 2), ITERS (timed iterations at 32x32, default 2),
#      ITERS64 (at 64x64, default 1), ITERS_TINY (default 10), WARMUP (default 1),
#      MODEL (default .cache/sd15-shapes, generated if absent), REPEAT (default 1:
#      rounds over all cases, sdtools and torch alternating; the table takes the
#      best round of each and shows the spread max/min across rounds).
# Results: one JSON line per run in bench/out/unet-DATE.jsonl and a table:
# seconds (min over the timed iterations), ratio torch/sdtools, GFLOP/s with
# the FLOP counts of shared/reference/perf.md (180 GFLOP per 32x32 eval, 803
# per 64x64, a training step = 3 evals), % of the machine's fp32 peak (THREADS
# x one core's FMA throughput measured by `vae_bench peak 1`, the same peak
# bench_vae.sh uses, unless PEAK_GFLOPS is set; above 100% is possible:
# Winograd 3x3 convolutions do 2.25x fewer multiplies than the direct count
# these GFLOP/s are computed from), peak RSS overall and
# during the timed iterations. The machine may be shared: the table prints
# the load average before and after each run; rerun when it is high.
set -euo pipefail
cd "$(dirname "$0")/.."
WHAT=${1:-quick}
THREADS=${THREADS:-2}
ITERS=${ITERS:-2}
ITERS64=${ITERS64:-1}
WARMUP=${WARMUP:-1}
MODEL=${MODEL:-.cache/sd15-shapes}
BUILD=${BUILD:-build}
TOOL=$BUILD/tests/util/unet_tool
PY=.venv-ref/bin/python
mkdir -p bench/out
OUT=bench/out/unet-$(date +%Y%m%d-%H%M%S).jsonl
export OMP_NUM_THREADS=$THREADS

[ -x "$TOOL" ] || make -s "$TOOL"
if [ ! -d "$MODEL/unet" ] && [[ $WHAT != tiny ]]; then
    echo "bench_unet: generating $MODEL (SD1.5 shapes, random fp16 weights, ~2 GB)" >&2
    .venv-test/bin/python tests/fixtures/make_tiny_model.py --config sd15-shapes "$MODEL" --dtype fp16 --force
fi
TINY=.cache/sd1-tiny
if [ ! -d "$TINY/unet" ] && [[ $WHAT == all || $WHAT == tiny || $WHAT == quick ]]; then
    .venv-test/bin/python tests/fixtures/make_tiny_model.py --config sd1-tiny "$TINY" --force
fi

load() { cut -d' ' -f1 /proc/loadavg; }
one() { # label impl mode model args...
    local label=$1 impl=$2 mode=$3 model=$4; shift 4
    local l0 line
    l0=$(load)
    if [ "$impl" = sdtools ]; then
        line=$("$TOOL" "$mode" "$model" --threads "$THREADS" "$@" 2>/dev/null | tail -1)
    else
        line=$("$PY" bench/unet_torch.py "$mode" "$model" --threads "$THREADS" "$@" 2>/dev/null | tail -1)
    fi
    echo "${line%\}}, \"label\": \"$label\", \"load_before\": $l0, \"load_after\": $(load)}" | tee -a "$OUT" >&2
}
pair() { # label mode model args...: sdtools then torch
    one "$1" sdtools "${@:2}"
    one "$1" torch "${@:2}"
}

REPEAT=${REPEAT:-1}
for round in $(seq 1 "$REPEAT"); do
if [[ $WHAT == all || $WHAT == forward || $WHAT == quick ]]; then
    sizes="32 64"; [ "$WHAT" = quick ] && sizes=32
    for s in $sizes; do
        for b in 1 2; do
            it=$ITERS; [ $s = 64 ] && it=$ITERS64
            pair "fwd ${s}x${s} B=$b" forward "$MODEL" --size $s $s --batch $b --iters "$it" --warmup "$WARMUP"
        done
    done
fi
if [[ $WHAT == all || $WHAT == train || $WHAT == quick ]]; then
    pair "train 32x32 B=1" train "$MODEL" --size 32 32 --batch 1 --iters "$ITERS" --warmup "$WARMUP"
    [ "$WHAT" = quick ] || pair "train 32x32 B=1 ckpt" train "$MODEL" --size 32 32 --batch 1 --iters "$ITERS" --warmup "$WARMUP" --checkpointing
fi
if [[ $WHAT == all || $WHAT == tiny || $WHAT == quick ]]; then
    pair "tiny train 32x32 B=1" train "$TINY" --size 32 32 --batch 1 --iters "${ITERS_TINY:-10}" --warmup 2
fi
done

[ -n "${PEAK_GFLOPS:-}" ] || PEAK_GFLOPS=$(awk -v c="$("$BUILD/tests/util/vae_bench" peak 1)" -v t="$THREADS" 'BEGIN {printf "%.1f", t * c}')
python3 - "$OUT" "$THREADS" "$PEAK_GFLOPS" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
thr = int(sys.argv[2])
peak = float(sys.argv[3])
def gflop(r):
    per = {32: 180.0, 64: 803.0}.get(r["h"]) if r["h"] == r["w"] and "tiny" not in r["label"] else None
    if per is None:
        return None
    return per * r["batch"] * (3 if r["mode"] == "train" else 1)
print(f"\nUNet on {thr} threads; fp32 peak {peak:.0f} GFLOP/s ({thr} x one core's measured FMA throughput)")
print(f"{'case':24} {'sdtools s':>9} {'torch s':>9} {'ratio':>6} {'sd GF/s':>8} {'%peak':>6} {'torch GF/s':>10} "
      f"{'sd RSS MB':>10} {'torch RSS':>10} {'sd run RSS':>10} {'torch run':>10} {'load':>9}  spread sd/torch")
labels = []
for r in rows:
    if r["label"] not in labels:
        labels.append(r["label"])
def best(lab, impl):
    rs = [r for r in rows if r["label"] == lab and r["impl"] == impl]
    if not rs:
        return None, 0
    b = min(rs, key=lambda r: r["sec_min"])
    return b, max(r["sec_min"] for r in rs) / b["sec_min"]
for lab in labels:
    s, ss = best(lab, "sdtools")
    t, ts = best(lab, "torch")
    if not s or not t:
        continue
    g = gflop(s)
    fmt = lambda v: f"{v:8.1f}" if v is not None else f"{'-':>8}"
    print(f"{lab:24} {s['sec_min']:9.3f} {t['sec_min']:9.3f} {t['sec_min'] / s['sec_min']:6.2f} "
          f"{fmt(g / s['sec_min'] if g else None)} {fmt(100 * g / s['sec_min'] / peak if g else None)[2:]:>6} "
          f"{fmt(g / t['sec_min'] if g else None):>10} {s['peak_rss_mb']:10.0f} {t['peak_rss_mb']:10.0f} "
          f"{s['peak_rss_run_mb']:10.0f} {t['peak_rss_run_mb']:10.0f} "
          f"{max(s['load_before'], t['load_before'], s['load_after'], t['load_after']):9.2f}"
          f"  spread {ss:.2f}/{ts:.2f}")
print(f"(raw results: {sys.argv[1]})")
EOF
