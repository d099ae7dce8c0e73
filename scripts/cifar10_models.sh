#!/usr/bin/env bash
# Trains every shipped CIFAR-10 model on this machine, resumably, then measures clean
# accuracy behind every defense:
#   bash scripts/cifar10_models.sh
# Rerunning continues each unfinished training from its last checkpoint; a finished one
# only re-evaluates on the test set. Epoch counts are those of the shipped checkpoints
# (the autoencoders trained for fewer epochs than MNIST's 30: ~2.6 min per epoch each
# on 2 CPU cores; their validation curves are in their meta.json).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
"$PY" -m train.classifier --dataset cifar10 --width 16
"$PY" -m train.reformer --dataset cifar10 --epochs 10
"$PY" -m train.inpainter --dataset cifar10 --epochs 12
"$PY" -m train.magnet --dataset cifar10
"$PY" -m eval.clean --dataset cifar10 --iterations 1 2 --num-keys 3
"$PY" -m eval.training_curves --dataset cifar10
