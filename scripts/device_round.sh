#!/usr/bin/env bash
# The device round: everything a lent GPU machine should do, in one call of about eight minutes.
#
#   bash scripts/device_round.sh            # on the GPU machine: device tool `run` with timeout_s 540 and
#                                           #   carry [".whl"] (fetch it first: bash scripts/device_wheels.sh)
#   bash scripts/device_round.sh --dry-run  # the same stages on this CPU with tiny budgets (under 2 minutes)
#
# Stages (bench/device_round.py), each under its own time cap so that one failure loses only that stage:
# environment check; pre-training of two priors side by side on data generated on the GPU (the shipped
# CPU architecture resumed from sa_convonet_ros/models/default.pt, and the larger GPU architecture);
# the GPU speed measurements (bench/bench_device.py: a 10 x 10 x 3 m room, 1 M points); the CUDA tests.
# Results in $OUT (default out/device_round): default.pt, gpu.pt (best validation), default_last.pt
# (the fine-tuned prior's last weights), report.json and the logs (at most 8 files: what comes back).
# Afterwards, on the CPU: evaluate the returned priors (bench/bench_tuning.py, bench/bench_quality.py),
# ship what wins, and put report.json's figures in docs/benchmarks.md and the model card.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
export OUT="${OUT:-$ROOT/out/device_round}"
export PYTHONUNBUFFERED=1 PYTHONWARNINGS="ignore::DeprecationWarning,ignore::UserWarning"
mkdir -p "$OUT"
# Pure-Python wheels the GPU machine lacks (trimesh, for meshing), carried in .whl.
if compgen -G ".whl/*.whl" >/dev/null; then
  SITE="$(mktemp -d)"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" .whl/*.whl
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
exec "$PY" -m bench.device_round --out "$OUT" "$@"
