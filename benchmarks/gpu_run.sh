#!/usr/bin/env bash
# Both benchmarks on one accelerator, in one call of about 8 minutes, results under $OUT.
#
# For a session with the `device` tool (nvidia-h200: JAX, flax, optax, orbax and PyTorch are in
# its image; ml_collections, ScaNN and faiss-cpu travel as wheels). Once, here, in the repo root:
#
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
#     --platform manylinux_2_17_x86_64 -d .whl ml_collections==1.1.0 scann==1.4.2 faiss-cpu==1.15.1
#
# then: run(command="bash benchmarks/gpu_run.sh", carry=[".whl"], timeout_s=540).
# The plumbing check on a CPU (tests/benchmarks/test_benchmarks_smoke.py runs it in `make test`):
#   PYTHON=.venv/bin/python PRESET=smoke NO_WHEELS=1 OUT=/tmp/gpu_run bash benchmarks/gpu_run.sh
# (smoke: tiny nets, bf16 rows only, one timed step, the HLO report lowered but not run.)
# Each part has its own time limit and the results files are written row by row, so a part that
# runs long loses its last rows, not the whole call; a part that fails or times out is reported
# with "!!" and makes the script's exit status 1 once the other parts have run. Files back (8 at most): train_step_gpu.md,
# train_step_gpu_rbg.md, train_step_gpu_no_triton_gemm.md, bf16_hlo_gpu.md, retrieval_gpu.md,
# xla_dump_bf16.tgz, gpu_run.log.
set -uo pipefail
OUT=${OUT:-/tmp/kd_jax_gpu}
PYTHON=${PYTHON:-python3}
PRESET=${PRESET:-gpu}
STEP_TIMING="--windows=7 --steps=10"
DIAGNOSIS_TIMING="--windows=5 --steps=10"
HLO_ARGS="--batch=64 --seq_len=128 --time_steps=5"
LIMIT_SCALE=1
if [ "$PRESET" = smoke ]; then
  # The time limits below fit an H200's call; a shared CPU compiles many times slower, so the
  # plumbing check runs without them (`timeout 0`).
  LIMIT_SCALE=0
  STEP_TIMING="--dtypes=bfloat16 --warmup=1 --windows=1 --steps=1"
  DIAGNOSIS_TIMING="$STEP_TIMING --runners=kd_jax"
  HLO_ARGS="--batch=2 --seq_len=16 --layers=1,1 --time_steps=0"  # the smoke preset's BERT
fi
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_run.log") 2>&1
if [ -z "${NO_WHEELS:-}" ] && ls .whl/*.whl >/dev/null 2>&1; then
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site
fi
# JAX would take 75% of the GPU's memory at start; PyTorch runs in the same process.
export PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2 XLA_PYTHON_CLIENT_MEM_FRACTION=0.45
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
"$PYTHON" -c "import importlib.util, jax, flax; print('jax', jax.__version__, jax.devices(), \
'flax', flax.__version__, 'torch', importlib.util.find_spec('torch') and \
__import__('torch').__version__ or 'not installed')" || exit 1
FAILED=()
bench() {
  echo "== $*"
  local limit=$(($1 * LIMIT_SCALE))
  shift
  timeout "$limit" "$@" || { echo "!! exit $? (time-out or failure): $*"; FAILED+=("$*"); }
}

# 1. The KD step, f32 and bf16, kd_jax (engine as configured, f32 params, cuDNN attention)
#    against PyTorch eager and torch.compile: the issue's table.
bench 200 "$PYTHON" benchmarks/train_step.py --preset="$PRESET" --cudnn $STEP_TIMING \
  --note="One H200, nothing else running." --out="$OUT/train_step_gpu.md"

# 2. The bf16 diagnosis: the same BERT step with the rbg PRNG for dropout masks, and without
#    Triton GEMM fusions (issue 15 saw 65-88 ms -> 31 ms with that flag before the model fixes).
bench 40 env JAX_DEFAULT_PRNG_IMPL=rbg "$PYTHON" benchmarks/train_step.py --preset="$PRESET" \
  --cases=bert --no_torch $DIAGNOSIS_TIMING --note="JAX_DEFAULT_PRNG_IMPL=rbg" \
  --out="$OUT/train_step_gpu_rbg.md"
bench 40 env XLA_FLAGS=--xla_gpu_enable_triton_gemm=false "$PYTHON" benchmarks/train_step.py \
  --preset="$PRESET" --cases=bert --no_torch $DIAGNOSIS_TIMING \
  --note="XLA_FLAGS=--xla_gpu_enable_triton_gemm=false" \
  --out="$OUT/train_step_gpu_no_triton_gemm.md"

# 3. The bf16 graph (backend-independent counts) with GPU step times, and the optimised GPU HLO
#    of those steps for reading later (fusions, Triton GEMMs, where the RNG landed).
DUMP=$(mktemp -d)
bench 50 env XLA_FLAGS="--xla_dump_to=$DUMP/xla_dump --xla_dump_hlo_as_text" \
  "$PYTHON" benchmarks/hlo_report.py $HLO_ARGS \
  --out="$OUT/bf16_hlo_gpu.md"
(cd "$DUMP" && find xla_dump -name '*train_step*after_optimizations.txt' -size -20M \
  | head -6 | tar czf "$OUT/xla_dump_bf16.tgz" -T -) || true
rm -rf "$DUMP"

# 4. Knowledge-base search, 1 M × 384 (no HNSW: its 1 M build alone takes minutes).
bench 140 "$PYTHON" benchmarks/retrieval.py --preset="$PRESET" --repeats=2 --no_hnsw \
  --note="One H200 (JAX rows on the GPU; ScaNN and FAISS on the host's 16 cores)." \
  --out="$OUT/retrieval_gpu.md"
ls -la "$OUT"
if [ ${#FAILED[@]} -gt 0 ]; then
  echo "!! ${#FAILED[@]} part(s) failed: $(printf '[%s] ' "${FAILED[@]}")"
  exit 1
fi
