#!/usr/bin/env bash
# Train and time the path predictor on a CUDA machine that has torch but no PyBullet.
#
#   benchmarks/predictor_gpu.sh DATA_DIR [EPOCHS] [more benchmarks/predictor.py options]
#
# DATA_DIR is a dataset made elsewhere with `surgsim predictor generate` (the planner needs
# PyBullet; training does not). Reports training throughput (samples/s), held-out waypoint and
# endpoint errors (mm) and the predictor's latency on the GPU; the collision check and the
# planner timing need PyBullet: run `surgsim predictor eval MODEL DATA_DIR` on a machine with it.
# If surgsim's own dependencies are missing there (gymnasium, pydantic), put their wheels in a
# folder and set WHEELS=that/folder: they are installed from it with no index.
set -euo pipefail
DATA=${1:?usage: benchmarks/predictor_gpu.sh DATA_DIR [EPOCHS] [options]}
EPOCHS=${2:-30}
shift $(( $# < 2 ? $# : 2 ))
PY=${PYTHON:-python3}
cd "$(dirname "$0")/.."
if [[ -n "${WHEELS:-}" ]]; then
  "$PY" -m pip install --quiet --no-index --no-deps "$WHEELS"/*.whl
fi
"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA GPU visible to torch')"
PYTHONPATH=".${PYTHONPATH:+:$PYTHONPATH}" "$PY" benchmarks/predictor.py --data "$DATA" --epochs "$EPOCHS" \
  --device cuda --no-pybullet --out "${OUT:-benchmarks/out/predictor-gpu}" "$@"
