#!/usr/bin/env bash
# dltrain vs plain Keras vs PyTorch on an NVIDIA GPU, float32 and mixed precision (and XLA for dltrain):
# bench/out/gpu/GPU-RESULTS.md (+ gpu-results.json) in under 10 minutes. See bench/README.md, "GPU".
#
#   bench/gpu.sh                 # installs into .venv-gpu (TensorFlow with CUDA, PyTorch), then runs
#   bench/gpu.sh --dry-run       # the same plumbing on the CPU with the current Python, nothing installed
#   bench/gpu.sh --epochs 5      # more epochs per run (default 3, the first dropped)
set -euo pipefail
cd "$(dirname "$0")/.."
dry_run=0
args=()
for arg in "$@"; do
  case "$arg" in
    --dry-run) dry_run=1; args+=("$arg") ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) args+=("$arg") ;;
  esac
done
if [ "$dry_run" = 1 ]; then
  python="${PYTHON:-$(command -v python3)}"
else
  command -v nvidia-smi >/dev/null || { echo "bench/gpu.sh: no nvidia-smi: this needs an NVIDIA GPU and its driver (or use --dry-run)" >&2; exit 2; }
  nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader
  venv="${GPU_VENV:-.venv-gpu}"
  test -x "$venv/bin/python" || "${PYTHON:-python3}" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  # TensorFlow's CUDA wheels; PyTorch's default Linux wheel carries CUDA; dltrain itself, editable.
  "$venv/bin/python" -m pip install --quiet "tensorflow[and-cuda]" torch -e .
  python="$venv/bin/python"
fi
exec timeout "${GPU_BENCH_TIMEOUT:-600}" "$python" bench/gpu.py "${args[@]}"
