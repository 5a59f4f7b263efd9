#!/usr/bin/env bash
# The calibration options of `flux2-int8 quantize`, compared on nano (or nano-outliers) against
# its BF16 transformer: the table of docs/quantize.md ("Calibration on a model with activation
# outliers") and docs/evaluate.md's worked example. CPU only, about 12 minutes a base on 2 cores.
#   bash scripts/nano_calibration.sh [OUT [BASE]]     OUT defaults to ./nano-calibration, BASE to nano
set -euo pipefail
OUT=${1:-nano-calibration}
BASE=${2:-nano}
mkdir -p "$OUT"
candidates=()
q() {
    flux2-int8 quantize --base "$BASE" --device cpu --quiet --out "$OUT/$1.safetensors" "${@:2}"
    candidates+=(--candidate "$1=$OUT/$1.safetensors")
}
q max --calibration max
q percentile --calibration percentile:99.99
q smoothquant --smoothquant 0.5
q smoothquant-0.3 --smoothquant 0.3
q smoothquant-0.7 --smoothquant 0.7
q dynamic --activations dynamic
q dynamic-smoothquant --activations dynamic --smoothquant 0.5
q convrot-max --rotation convrot:64
q convrot-dynamic --rotation convrot:64 --activations dynamic
q convrot-smoothquant --rotation convrot:64 --activations dynamic --smoothquant 0.5
q modulation --calibration max --quantize-modulation
flux2-int8 eval --base "$BASE" --device cpu --metrics psnr,fidelity,accuracy --out "$OUT/eval" "${candidates[@]}"
