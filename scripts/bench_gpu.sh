#!/usr/bin/env bash
# Run `flux2-int8 bench` on a lent GPU machine, from the repository root.
#
#   bash scripts/bench_gpu.sh PART [OUT]      PART: sanity | micro | 9b | 9b-fused | 4b | 9b-pipeline
#
# Installs the wheels carried in .whl/ (diffusers and flux2-int8; see docs/benchmarks.md)
# into /tmp/site, records the GPU and library versions, runs one part and writes
# bench-*.json, bench-*.md and a log under OUT/PART (default OUT: $OUT, else bench-out).
#
# Each part is one device call and must end inside its 10-minute limit. Compiling dominates:
# estimated (not yet measured) ~1-2 min per full-size transformer compile, ~15-30 s per tiny one,
# a few seconds per single-layer compile in the microbenchmark. Estimated H100 wall times:
#   sanity ~4 min (3 + 8 plans of tiny, each eager and compiled)
#   micro ~5 min (12 shapes x (BF16 + 3 backends), eager and compiled: 48 layer compiles + Triton autotuning)
#   9b, 9b-fused ~5 min each (3 plans: bf16, int8 int_mm, int8 triton_prequant; 3 compiles)
#   4b ~4 min, 9b-pipeline ~6 min (2 plans with text encoder and VAE, whole images eager and compiled)
# Fused and unfused 9B are two parts because one run of all 6 plans (--fuse-qkv off,on) would
# need ~6 full-size compiles, too close to the limit.
set -euo pipefail
PART=${1:?usage: bash scripts/bench_gpu.sh sanity|micro|9b|9b-fused|4b|9b-pipeline [OUT]}
DEST=${2:-${OUT:-bench-out}}/$PART
mkdir -p "$DEST"
if compgen -G ".whl/*.whl" >/dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
else
  export PYTHONPATH=src  # no wheels carried: the working tree's package (diffusers must be installed)
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1
LOG="$DEST/log.txt"
{
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv || echo "nvidia-smi: not available"
  python3 -c "import torch, diffusers, transformers, flux2_int8; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__, 'flux2_int8 from', flux2_int8.__file__)"
} 2>&1 | tee "$LOG"

# bench OPTIONS...: one `flux2-int8 bench` run writing into $DEST (BENCH_SUB=NAME: into $DEST/NAME).
bench() { python3 -m flux2_int8.cli bench "$@" --out "$DEST${BENCH_SUB:+/$BENCH_SUB}" 2>&1 | tee -a "$LOG"; }
NINE_B=(--variant klein-9b --random-weights --formats bf16,int8 --int8-backends int_mm,triton_prequant --compile off,on --resolution 1024 --steps 4 --batch 1 --repeats 5)
case "$PART" in
  sanity)
    BENCH_SUB=formats bench --variant tiny --formats bf16,int8,fp8 --compile off,on --resolution 256 --repeats 3
    BENCH_SUB=backends bench --variant tiny --formats bf16,int8 --int8-backends int_mm,triton,triton_prequant --fuse-qkv off,on --compile off,on --resolution 256 --repeats 3 ;;
  micro) bench --variant klein-9b --random-weights --microbench-only --int8-backends int_mm,triton,triton_prequant --fuse-qkv off,on --compile off,on --repeats 20 ;;
  9b) bench "${NINE_B[@]}" ;;
  9b-fused) bench "${NINE_B[@]}" --fuse-qkv on ;;
  4b) bench --variant klein-4b --random-weights --full-pipeline --formats bf16,int8 --compile off,on --resolution 1024 --steps 4 --batch 1 --repeats 5 ;;
  9b-pipeline) bench --variant klein-9b --random-weights --full-pipeline --formats bf16,int8 --compile off,on --resolution 1024 --steps 4 --batch 1 --repeats 5 ;;
  *) echo "unknown part '$PART': expected sanity, micro, 9b, 9b-fused, 4b or 9b-pipeline" >&2; exit 2 ;;
esac
