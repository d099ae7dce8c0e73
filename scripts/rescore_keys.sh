#!/usr/bin/env bash
# Rescore the committed tables still scored under the old keys (issue 29; remix_jax.keys):
# each line is the command a committed result records, run again from its cached
# examples (no crafting, except the detector-aware adaptive runs, whose identity now
# includes the calibration draw). Every command resumes where it was killed; rerunning
# this script redoes only unfinished work. After each command, update the numbers
# RESULTS.md quotes from that file.
# PYTHON names the interpreter (default: the repo's .venv if present, else python).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" && -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; fi
run() { echo "== $(date -u +%H:%M:%S) $*"; "${PYTHON:-python}" "$@"; }
# MNIST: the L2 adaptive runs (detector-aware runs crafted again: ~12 min each on 2 cores)
run -m eval.adaptive --attack pgd --norm l2 --budgets 1 2 3 --threats oblivious eot bpda --detector copies-JSD --detector-weights 1 10 --num-examples 100 --samples 4 --steps 100 --loss ce --out results/mnist/adaptive-pgd-l2-ce
run -m eval.adaptive --attack pgd --norm l2 --budgets 1 2 3 --threats oblivious eot eot-warm --detector copies-JSD --detector-weights 1 --num-examples 100 --samples 4 --steps 100
run -m eval.detector --dataset mnist --attack ead --preset cpu
run -m eval.detector --dataset mnist --attack cw --preset paper --positives misclassified
run -m eval.clean --dataset mnist
# CIFAR-10: scored again once issue 30 ships its inpainter (every REMIX row changes
# then anyway), so these run once, with that inpainter
run -m eval.clean --dataset cifar10 --iterations 1 2 --num-keys 3
run -m eval.sweep --attack ead --dataset cifar10 --num-examples 1000 --batch-size 100
run -m eval.sweep --attack cw --dataset cifar10 --num-examples 1000 --batch-size 100
run -m eval.figure
run -m eval.detector --dataset cifar10 --attack cw --preset cpu
run -m eval.detector --dataset cifar10 --attack ead --preset cpu
run -m eval.adaptive --dataset cifar10 --attack pgd --norm linf --threats oblivious eot eot-warm --num-examples 100 --samples 4 --steps 100 --sanity
run -m eval.adaptive --dataset cifar10 --attack pgd --norm l2 --threats oblivious eot eot-warm --detector copies-JSD --detector-weights 1 --num-examples 100 --samples 4 --steps 100
