#!/usr/bin/env bash
# Run `flux2-int8 bench` on a lent GPU machine, from the repository root.
#
#   bash scripts/bench_gpu.sh proof [OUT]        every decision-relevant figure in one call (< 8 min on an H100/H200)
#   bash scripts/bench_gpu.sh proof-dry [OUT]    the same sequence on the tiny model on a CPU, small budget (CI runs it)
#   bash scripts/bench_gpu.sh PART [OUT]         one older, longer part: sanity | micro | 9b | 9b-fused | 4b | 9b-pipeline
#   bash scripts/bench_gpu.sh offload [OUT]      seconds per image and peak memory of each placement (none, model, group,
#                                                sequential) on klein-9B random weights beside the memory plan (< 4 min; own call,
#                                                as proof already returns the 8 files the device tool allows). offload-dry: tiny, CPU
#
# Installs the wheels carried in .whl/ (diffusers and flux2-int8; see docs/benchmarks.md)
# into /tmp/site, records the GPU and library versions, and writes under OUT/PART
# (default OUT: $OUT, else bench-out). Then: python3 scripts/record_gpu_results.py OUT/PART
#
# `proof` runs its sections under one clock (PROOF_SECONDS, default 460 s from the script's
# start, the wheel install included), cheapest and most decisive first; each section gets
# `--time-budget` (plans that will not fit are skipped and listed) and a hard `timeout`
# (SIGTERM: the section's report keeps every finished run). Sections, into OUT/proof/NAME.json:
#   check           every INT8 backend vs the reference, klein-9B shapes + fused q/k/v, M 1/16/17/4608, bf16+fp16
#   micro           BF16 vs int_mm / triton / triton_prequant on the klein-9B shapes at M = 4608, eager
#   eager-compiled  benchmarks/peers.py: eager int_mm vs eager triton on the klein-9B shapes at M = 4608, and one 9B-width
#                   double + single block (4096 + 512 tokens) eager and compiled per backend, with the peers if installed
#   9b              klein-9B transformer 1024x1024 4 steps: bf16, int8 int_mm, int8 triton_prequant; eager, regional
#   micro-compiled  the microbenchmark compiled (Inductor fuses the activation quantization)
#   lora            one step of 1 double + 2 single klein-9B blocks at 1024x1024: INT8 vs + rank-16 LoRA unfused vs fused (eager)
#   convrot         a ConvRot-rotated layer vs the plain one per path (int_mm eager, triton rotating in the tile, compiled),
#                   klein-9B shapes, M = 4608 (its JSON as one line of log.txt; recorded from there)
#   9b-full         int8 int_mm compiled whole: regional vs full step time (decides what `--compile on` means)
#   serve           klein-9B random INT8 weights under `flux2-int8 serve`, 512x512: images/s at batch 1/2/4 (into log.txt;
#                   needs the serve extra's wheels in .whl/, see docs/serve.md)
# Only the seven JSON files and log.txt (which starts with the versions) land in OUT/proof (the device tool returns at most 8 files).
set -uo pipefail
START=$(date +%s)
PART=${1:?usage: bash scripts/bench_gpu.sh proof|proof-dry|offload|offload-dry|sanity|micro|9b|9b-fused|4b|9b-pipeline [OUT]}
DEST=${2:-${OUT:-bench-out}}/$PART
PYTHON=${PYTHON:-python3}
mkdir -p "$DEST"
LOG="$DEST/log.txt"
: >"$LOG"
if [[ $PART != proof-dry && $PART != offload-dry ]] && compgen -G ".whl/*.whl" >/dev/null; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
else
  export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH}  # the working tree's package (diffusers must be installed)
fi
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1

versions() {
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv 2>/dev/null || echo "nvidia-smi: not available"
  "$PYTHON" - <<'EOF'
import importlib.metadata as metadata, platform, torch
def version(name):
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "-"
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA device"
print(f"python {platform.python_version()} torch {torch.__version__} cuda {torch.version.cuda} triton {version('triton')} diffusers {version('diffusers')} transformers {version('transformers')} flux2-int8 {version('flux2-int8')} gpu {gpu}")
import flux2_int8
print("flux2_int8 from", flux2_int8.__file__)
EOF
}

# budget NAME CAP_SECONDS: set $budget to min(CAP, time left on the call's clock), or log a skip and fail.
budget() {
  local left=$((END - $(date +%s)))
  budget=$((left < $2 ? left : $2))
  if ((budget < MIN_SECTION)); then
    echo "== $1: skipped, ${left} s of the call's clock left" | tee -a "$LOG"
    return 1
  fi
}

# section NAME CAP_SECONDS BENCH_OPTIONS...: one bench run under min(CAP, time left), its JSON copied to DEST/NAME.json.
section() {
  local name=$1 code
  budget "$1" "$2" || return 0
  shift 2
  echo "== $name: --time-budget $((budget - STARTUP)) s, hard stop after $budget s: $*" | tee -a "$LOG"
  timeout -s TERM -k 20 "$budget" "$PYTHON" -m flux2_int8.cli bench "$@" --time-budget $((budget - STARTUP)) --out "$WORK/$name" >>"$LOG" 2>&1
  code=$?
  echo "== $name: exit $code after $(($(date +%s) - START)) s of the call" | tee -a "$LOG"
  cp "$WORK/$name"/bench-*.json "$DEST/$name.json" 2>/dev/null || echo "== $name: wrote no report" | tee -a "$LOG"
}

# script_section NAME CAP_SECONDS SCRIPT OPTIONS...: a benchmark script writing DEST/NAME.json itself (--json).
script_section() {
  local name=$1 code
  budget "$1" "$2" || return 0
  shift 2
  echo "== $name: hard stop after $budget s: $*" | tee -a "$LOG"
  timeout -s TERM -k 20 "$budget" "$PYTHON" "$@" --json "$DEST/$name.json" >>"$LOG" 2>&1
  code=$?
  echo "== $name: exit $code after $(($(date +%s) - START)) s of the call" | tee -a "$LOG"
  [[ -f $DEST/$name.json ]] || echo "== $name: wrote no report" | tee -a "$LOG"
}

# serve_section CAP SERVE_LOAD_OPTIONS...: images/s at batch 1/2/4 under `flux2-int8 serve` (benchmarks/serve_load.py
# --sweep 1,2,4). Its JSON goes into log.txt, not a file of its own: the device tool returns at most 8 files.
serve_section() {
  local code
  budget serve "$1" || return 0
  shift
  echo "== serve: hard stop after $budget s: benchmarks/serve_load.py --sweep 1,2,4 $*" | tee -a "$LOG"
  timeout -s TERM -k 20 "$budget" "$PYTHON" benchmarks/serve_load.py --sweep 1,2,4 --budget-s $((budget / 2)) --json - "$@" >>"$LOG" 2>&1
  code=$?
  echo "== serve: exit $code after $(($(date +%s) - START)) s of the call" | tee -a "$LOG"
}

# ConvRot (rotated INT8): benchmarks/convrot_paths.py, a rotated layer (G = 256) vs the plain one, dynamic activations,
# klein-9B shapes at M = 4608, per path (int_mm eager with a separate rotation, triton rotating in the tile, int_mm
# compiled). Its JSON goes into log.txt as one "== report convrot.json: {...}" line (the device tool returns at most
# 8 files); scripts/record_gpu_results.py reads it from there.
convrot_section() {  # $1: "" on a GPU, "dry" on a CPU
  local options=(--device cuda --m 4608 --group 256 --rounds 10)
  [[ ${1:-} == dry ]] && options=(--device cpu --m 64 --shapes 256x256 --rounds 2 --no-compile)
  budget convrot 60 || return 0
  echo "== convrot: hard stop after $budget s: benchmarks/convrot_paths.py ${options[*]}" | tee -a "$LOG"
  timeout -s TERM -k 10 "$budget" "$PYTHON" benchmarks/convrot_paths.py "${options[@]}" --time-budget $((budget - STARTUP)) --json "$WORK/convrot.json" >>"$LOG" 2>&1
  echo "== convrot: exit $? after $(($(date +%s) - START)) s of the call" | tee -a "$LOG"
  if [[ -f $WORK/convrot.json ]]; then
    echo "== report convrot.json: $("$PYTHON" -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1]))))' "$WORK/convrot.json")" >>"$LOG"
  else
    echo "== convrot: wrote no report" | tee -a "$LOG"
  fi
}

proof() {  # $1: "" on a GPU, "dry" on a CPU with the tiny model
  WORK=$(mktemp -d "${TMPDIR:-/tmp}/flux2-int8-proof.XXXXXX")
  # One cold cache for the whole call (the machine starts bare): each graph's first compile is
  # honest, and the Triton W8A8 kernel built by `check` is not rebuilt by every later section.
  export TORCHINDUCTOR_CACHE_DIR="$WORK/inductor-cache" TRITON_CACHE_DIR="$WORK/triton-cache"
  versions >>"$LOG" 2>&1
  if [[ ${1:-} == dry ]]; then
    END=$((START + ${PROOF_SECONDS:-150})) MIN_SECTION=15 STARTUP=8
    local model=(--base tiny --device cpu) check=(--check-tokens 1,17) size=(--resolution 64 --repeats 2 --warmup 1)
    local micro_size=(--resolution 64 --repeats 2 --warmup 1)
    local lora=(--variant klein-4b --double 0 --single 1 --side 4 --text 8 --device cpu --repeats 1)
    local serve=(--requests 4 -- --base nano --device cpu --quiet)
    local eager=(--quick --device cpu --peers none --parts linear,block --max-shapes 1 --int8-backends int_mm,triton)
  else
    END=$((START + ${PROOF_SECONDS:-460})) MIN_SECTION=40 STARTUP=20
    local model=(--base klein-9b --random-weights --device cuda) check=() size=(--resolution 1024 --steps 4 --batch 1 --repeats 5 --warmup 1)
    local micro_size=(--resolution 1024 --repeats 20 --warmup 3)
    local lora=(--variant klein-9b --double 1 --single 2 --side 64 --text 512 --device cuda --repeats 20)
    local serve=(--size 512x512 --requests 8 -- --base klein-9b --random-weights --device cuda --quiet)
    # Eager per-shape figures decide `auto` on CUDA (does triton's fused epilogue beat int_mm's int32 round trip?);
    # compiled only in the block (one compile per backend), since micro-compiled times the compiled shapes.
    local eager=(--device cuda --tokens 4608 --parts linear,block --image-side 64 --text 512 --int8-backends int_mm,triton --compile block --rounds 10)
  fi
  local micro=(--microbench-only --microbench-shapes variant --int8-backends int_mm,triton,triton_prequant --fuse-qkv off,on "${micro_size[@]}")
  section check 75 "${model[@]}" --check "${check[@]}"
  section micro 50 "${model[@]}" "${micro[@]}" --microbench-compile off
  peers_section eager-compiled 70 "${eager[@]}"
  section 9b 220 "${model[@]}" --formats bf16,int8 --int8-backends int_mm,triton_prequant --compile off,regional "${size[@]}"
  section micro-compiled 90 "${model[@]}" "${micro[@]}" --microbench-compile on
  script_section lora 45 benchmarks/lora_step.py "${lora[@]}" --compile off
  convrot_section "$@"
  section 9b-full 150 "${model[@]}" --formats int8 --int8-backends int_mm --compile full "${size[@]}"
  serve_section 120 "${serve[@]}"
  rm -rf "$WORK"
  echo "== proof: done in $(($(date +%s) - START)) s; record with: python3 scripts/record_gpu_results.py $DEST" | tee -a "$LOG"
}

offload() {  # $1: "" on a GPU, "dry" on a CPU with the tiny model. Writes DEST/offload.json, env.txt, log.txt.
  START=$(date +%s)
  versions 2>&1 | tee "$DEST/env.txt" >>"$LOG"
  if [[ ${1:-} == dry ]]; then
    END=$((START + ${OFFLOAD_SECONDS:-120})) MIN_SECTION=15
    script_section offload 110 benchmarks/offload_modes.py --variant tiny --device cpu --resolution 64 --steps 1 --time-budget 90
  else
    END=$((START + ${OFFLOAD_SECONDS:-230})) MIN_SECTION=40
    script_section offload 220 benchmarks/offload_modes.py --variant klein-9b --device cuda --resolution 1024 --steps 4 --time-budget 190
  fi
  echo "== offload: done in $(($(date +%s) - START)) s" | tee -a "$LOG"
}

# peers_section NAME CAP_SECONDS OPTIONS...: benchmarks/peers.py under min(CAP, time left), its --time-budget
# the same less the start-up, writing DEST/NAME.json after every workload (a hard stop keeps what finished).
peers_section() {
  local name=$1 code
  budget "$1" "$2" || return 0
  shift 2
  echo "== $name: --time-budget $((budget - STARTUP)) s, hard stop after $budget s: benchmarks/peers.py $*" | tee -a "$LOG"
  timeout -s TERM -k 20 "$budget" "$PYTHON" benchmarks/peers.py "$@" --time-budget $((budget - STARTUP)) --json "$DEST/$name.json" >>"$LOG" 2>&1
  code=$?
  echo "== $name: exit $code after $(($(date +%s) - START)) s of the call" | tee -a "$LOG"
  [[ -f $DEST/$name.json ]] || echo "== $name: wrote no report" | tee -a "$LOG"
}

# bench OPTIONS...: one `flux2-int8 bench` run writing into $DEST (BENCH_SUB=NAME: into $DEST/NAME).
bench() { "$PYTHON" -m flux2_int8.cli bench "$@" --out "$DEST${BENCH_SUB:+/$BENCH_SUB}" 2>&1 | tee -a "$LOG"; }
NINE_B=(--base klein-9b --random-weights --formats bf16,int8 --int8-backends int_mm,triton_prequant --compile off,full --resolution 1024 --steps 4 --batch 1 --repeats 5)
case "$PART" in
  proof) proof ;;
  proof-dry) proof dry ;;
  offload) offload ;;
  offload-dry) offload dry ;;
  sanity)
    versions 2>&1 | tee -a "$LOG"
    BENCH_SUB=formats bench --base tiny --formats bf16,int8,fp8 --compile off,full --resolution 256 --repeats 3
    BENCH_SUB=backends bench --base tiny --formats bf16,int8 --int8-backends int_mm,triton,triton_prequant --fuse-qkv off,on --compile off,full --resolution 256 --repeats 3 ;;
  micro) versions 2>&1 | tee -a "$LOG"; bench --base klein-9b --random-weights --microbench-only --int8-backends int_mm,triton,triton_prequant --fuse-qkv off,on --compile off,full --repeats 20 ;;
  9b) versions 2>&1 | tee -a "$LOG"; bench "${NINE_B[@]}" ;;
  9b-fused) versions 2>&1 | tee -a "$LOG"; bench "${NINE_B[@]}" --fuse-qkv on ;;
  4b) versions 2>&1 | tee -a "$LOG"; bench --base klein-4b --random-weights --full-pipeline --formats bf16,int8 --compile off,full --resolution 1024 --steps 4 --batch 1 --repeats 5 ;;
  9b-pipeline) versions 2>&1 | tee -a "$LOG"; bench --base klein-9b --random-weights --full-pipeline --formats bf16,int8 --compile off,full --resolution 1024 --steps 4 --batch 1 --repeats 5 ;;
  *) echo "unknown part '$PART': expected proof, proof-dry, offload, offload-dry, sanity, micro, 9b, 9b-fused, 4b or 9b-pipeline" >&2; exit 2 ;;
esac
