#!/usr/bin/env bash
# Trains every shipped CIFAR-10 model on this machine, resumably, then measures clean
# accuracy behind every defense:
#   bash scripts/cifar10_models.sh
# Rerunning continues each unfinished training from its last checkpoint; a finished one
# only re-evaluates on the test set. Epoch counts are those of the shipped checkpoints
# (the autoencoders trained for fewer epochs than MNIST's 30: 3-5 min per epoch each
# on 2 CPU cores; their validation curves are in their meta.json).
# PYTHON names the interpreter (default: the repo's .venv if present, else python).
set -euo pipefail
if [[ $# -gt 0 ]]; then
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
  [[ "$1" == -h || "$1" == --help ]] && exit 0
  echo "error: this script takes no arguments" >&2
  exit 2
fi
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" && -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; fi
PY=${PYTHON:-python}
"$PY" -m train.classifier --dataset cifar10 --width 16
"$PY" -m train.reformer --dataset cifar10 --epochs 10
# the inpainter in three stages (RESULTS.md, "Keeping CIFAR-10's accuracy"): hidden-pixel
# MSE, then the classifier-aware objective, then one epoch through the reformer
"$PY" -m train.inpainter --dataset cifar10 --epochs 12 \
  --checkpoint-dir checkpoints/cifar10/ablation/inpainter-rednet-mse
"$PY" -m train.inpainter --dataset cifar10 --classifier-weight 0.1 --learning-rate 1e-4 \
  --epochs 2 --init-from checkpoints/cifar10/ablation/inpainter-rednet-mse \
  --checkpoint-dir checkpoints/cifar10/candidates/inpainter-rednet-ca0.1
"$PY" -m train.inpainter --dataset cifar10 --classifier-weight 0.1 --learning-rate 1e-4 \
  --epochs 1 --through-reformer --init-from checkpoints/cifar10/candidates/inpainter-rednet-ca0.1
"$PY" -m train.magnet --dataset cifar10
"$PY" -m eval.clean --dataset cifar10 --iterations 1 2 --num-keys 3
"$PY" -m eval.training_curves --dataset cifar10
