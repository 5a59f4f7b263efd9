#!/usr/bin/env bash
# The calibration options of `flux2-int8 quantize`, compared on nano against its BF16 transformer
# (docs/evaluate.md, "Worked example"). CPU only, a few minutes; OUT defaults to ./nano-calibration.
set -euo pipefail
OUT=${1:-nano-calibration}
mkdir -p "$OUT"
q() { flux2-int8 quantize --base nano --device cpu --quiet --out "$OUT/$1.safetensors" "${@:2}"; }
q max
q percentile --calibration percentile:99.99
q smoothquant --smoothquant 0.5
q dynamic --activations dynamic
q modulation --quantize-modulation
flux2-int8 eval --base nano --device cpu --metrics psnr,fidelity,accuracy --out "$OUT/eval" \
    --candidate max="$OUT/max.safetensors" --candidate percentile="$OUT/percentile.safetensors" \
    --candidate smoothquant="$OUT/smoothquant.safetensors" --candidate dynamic="$OUT/dynamic.safetensors" \
    --candidate modulation="$OUT/modulation.safetensors"
