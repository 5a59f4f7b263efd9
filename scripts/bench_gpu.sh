#!/usr/bin/env bash
# Run `flux2-int8 bench` on a lent GPU machine, from the repository root.
#
#   bash scripts/bench_gpu.sh PART [OUT]      PART: sanity | micro | 4b | 9b
#
# Installs the wheels carried in .whl/ (diffusers and flux2-int8; see docs/benchmarks.md)
# into /tmp/site, records the GPU and library versions, runs one part and writes
# bench-*.json, bench-*.md and a log under OUT/PART (default OUT: $OUT, else bench-out).
set -euo pipefail
PART=${1:?usage: bash scripts/bench_gpu.sh sanity|micro|4b|9b [OUT]}
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

bench() { python3 -m flux2_int8.cli bench "$@" --out "$DEST" 2>&1 | tee -a "$LOG"; }
case "$PART" in
  sanity) bench --variant tiny --formats bf16,int8,fp8 --compile off,on --resolution 256 --repeats 3 ;;
  micro) bench --variant klein-9b --microbench-only --compile off,on --repeats 20 ;;
  4b) bench --variant klein-4b --random-weights --full-pipeline --formats bf16,int8 --compile off,on --resolution 1024 --steps 4 --batch 1 --repeats 5 ;;
  9b) bench --variant klein-9b --random-weights --full-pipeline --formats bf16,int8 --compile off,on --resolution 1024 --steps 4 --batch 1 --repeats 5 ;;
  *) echo "unknown part '$PART': expected sanity, micro, 4b or 9b" >&2; exit 2 ;;
esac
