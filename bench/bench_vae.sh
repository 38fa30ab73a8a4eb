#!/usr/bin/env bash
# bench/bench_vae.sh — VAE encoder and decoder, sdtools vs PyTorch (diffusers
# AutoencoderKL, fp32), same machine, same thread count, same inputs.
#
#   bench/bench_vae.sh [SIZES]        default SIZES: "256 512"
#   THREADS=2 REPEAT=1 bench/bench_vae.sh
#   REPEAT=3 bench/bench_vae.sh 256          best of 3 (256 only: keep 512 runs single)
#
# Model: the SD1.5 VAE architecture (83.65 M params) with the random weights of
# tests/fixtures/make_tiny_model.py's sd15-shapes config, written once to
# .cache/bench/sd15-vae (335 MB, not committed). Each measurement is one
# process per side (tests/util/vae_bench vs bench/vae_torch.py), batch 1:
#   seconds    one timed call; at 256 after one untimed warm-up call, at 512 the
#              first call (no warm-up: the 512 runs are long and the machine is
#              shared; both sides pay their first-call allocations)
#   GFLOP/s    model FLOPs (2·MACs of convs, linears, attention matmuls, as
#              perf.md §1: enc 512 = 1116.7, dec 512 = 2514.5 GFLOP) / seconds.
#              Our 3x3 convolutions use Winograd F(2x2,3x3), which does 2.25x
#              fewer multiplies: model GFLOP/s can exceed the hardware's.
#   % peak     GFLOP/s / machine peak: THREADS x the FP32 FMA throughput of one
#              core as measured by `vae_bench peak 1` (512-bit FMA chains; one
#              core's figure is robust to the other core being busy), unless
#              PEAK_GFLOPS is set
#   peak RSS   getrusage maxrss of the process (weights, activations, runtime)
#   max err    max |sdtools - torch| / RMS(torch) of the outputs
#   others     share of the machine's CPUs used by OTHER processes during the
#              timed call (/proc/stat minus the process's own CPU time): a
#              timing with others > ~5% was disturbed and is not comparable
# REPEAT=N runs each process N times and keeps the fastest (both sides). The
# table is also written to bench/out/vae.txt.
# Before each run the script waits (up to QUIET_WAIT seconds, default 300) for
# a second in which the machine is < 5% busy, so that runs start on an idle
# machine when other jobs share it.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZES=${1:-"256 512"}
THREADS=${THREADS:-2}
REPEAT=${REPEAT:-1}
BUILD=${BUILD:-build}
PY=.venv-ref/bin/python
DRIVER=$BUILD/tests/util/vae_bench
MODEL=.cache/bench/sd15-vae
OUT=${TMPDIR:-/tmp}/sdtools-bench-vae.$$
mkdir -p "$OUT"
trap 'rm -rf "$OUT"' EXIT

[ -x "$DRIVER" ] || make -s -j2 "$DRIVER"
if [ ! -f "$MODEL/diffusion_pytorch_model.safetensors" ]; then
    mkdir -p "$(dirname "$MODEL")"
    echo "bench_vae: writing $MODEL (SD1.5 VAE shapes, random weights)" >&2
    $PY bench/vae_torch.py make "$MODEL"
fi
export OMP_NUM_THREADS=$THREADS OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=$THREADS

field() { # json key
    $PY -c "import json,sys; print(json.loads(sys.stdin.readline())['$1'])"
}

busy_jiffies() { awk '/^cpu / {print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9}' /proc/stat; }
wait_quiet() { # until one second with < 5% of the CPUs busy, or QUIET_WAIT seconds
    local t0=$SECONDS b0 a0 b1 a1
    while [ $((SECONDS - t0)) -lt "${QUIET_WAIT:-300}" ]; do
        read -r b0 a0 < <(busy_jiffies)
        sleep 1
        read -r b1 a1 < <(busy_jiffies)
        awk -v b=$((b1 - b0)) -v a=$((a1 - a0)) 'BEGIN {exit !(a > 0 && b / a < 0.05)}' && return 0
    done
    echo "bench_vae: machine still busy after ${QUIET_WAIT:-300}s; measuring anyway" >&2
}

best() { # cmd...: run REPEAT times, print the JSON line with the smallest seconds
    local line best_line="" best_s=""
    for _ in $(seq "$REPEAT"); do
        wait_quiet
        line=$("$@" | tail -1)
        s=$(echo "$line" | field seconds)
        if [ -z "$best_s" ] || awk -v a="$s" -v b="$best_s" 'BEGIN {exit !(a < b)}'; then best_s=$s; best_line=$line; fi
    done
    echo "$best_line"
}

if [ -z "${PEAK_GFLOPS:-}" ]; then
    wait_quiet
    PEAK_GFLOPS=$(awk -v c="$("$DRIVER" peak 1)" -v t="$THREADS" 'BEGIN {printf "%.1f", t * c}')
fi
mkdir -p bench/out
exec > >(tee bench/out/vae.txt)
echo "VAE (SD1.5 shapes, fp32, batch 1), $THREADS threads, peak $PEAK_GFLOPS GFLOP/s ($(uname -m), $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg))"
printf '%-9s %-8s %9s %9s %8s %9s %8s %10s %10s %9s %7s\n' op side seconds GFLOP/s "%peak" "speedup" "RSS MB" "ws MB" "weights MB" "max err" others
for size in $SIZES; do
    warm=1
    [ "$size" -ge 512 ] && warm=0
    for op in enc dec; do
        fl=$($PY bench/vae_torch.py flops "$MODEL" $op "$size")
        c=$(best "$DRIVER" "$MODEL" $op "$size" --threads "$THREADS" --warmup $warm --out "$OUT/c.bin")
        t=$(best $PY bench/vae_torch.py run "$MODEL" $op "$size" --threads "$THREADS" --warmup $warm --out "$OUT/t.bin")
        err=$($PY bench/vae_torch.py compare "$OUT/c.bin" "$OUT/t.bin" | field max_rel_rms)
        cs=$(echo "$c" | field seconds) ts=$(echo "$t" | field seconds)
        for side in sdtools torch; do
            if [ $side = sdtools ]; then j=$c; s=$cs; else j=$t; s=$ts; fi
            awk -v op="$op$size" -v side=$side -v s="$s" -v fl="$fl" -v pk="$PEAK_GFLOPS" -v ts="$ts" \
                -v rss="$(echo "$j" | field maxrss_mb)" \
                -v ws="$([ $side = sdtools ] && echo "$j" | field workspace_mb || echo -)" \
                -v wt="$([ $side = sdtools ] && echo "$j" | field weights_mb || echo -)" \
                -v err="$([ $side = sdtools ] && printf '%.2g' "$err" || echo -)" \
                -v oth="$(echo "$j" | field others_pct)" \
                'BEGIN {g = fl / s / 1e9; printf "%-9s %-8s %9.2f %9.1f %7.1f%% %8.2fx %8.0f %10s %10s %9s %6s%%\n",
                        op, side, s, g, 100 * g / pk, ts / s, rss, ws, wt, err, oth}'
        done
    done
done
