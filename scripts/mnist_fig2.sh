#!/usr/bin/env bash
# The MNIST half of the paper's Fig. 2, end to end and resumable:
#   bash scripts/mnist_fig2.sh [extra eval.sweep flags, e.g. --preset paper]
# Crafts CW-L2 then EAD examples for every kappa (cached per batch under
# results/mnist/cache/; a killed run, rerun, continues where it stopped), then scores
# every defense on them and draws the grid. With the default `cpu` preset this is
# hours on a 2-core CPU (python -m bench.presets); on one GPU, add --preset paper.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
for attack in cw ead; do
  "$PY" -m eval.sweep --attack "$attack" --dataset mnist --craft-only --batch-size 500 "$@"
done
for attack in cw ead; do
  "$PY" -m eval.sweep --attack "$attack" --dataset mnist --batch-size 500 "$@"
done
"$PY" -m eval.figure --datasets mnist
