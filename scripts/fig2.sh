#!/usr/bin/env bash
# One dataset's half of the paper's Fig. 2, end to end and resumable:
#   bash scripts/fig2.sh mnist|cifar10 [extra eval.sweep flags, e.g. --preset paper]
# Crafts CW-L2 then EAD examples for every kappa (cached per batch under
# results/<dataset>/cache/; a killed run, rerun, continues where it stopped), then
# scores every defense on them and draws the grid. With the default `cpu` preset this
# is many hours on a 2-core CPU per dataset (python -m bench.presets); on one GPU, add
# --preset paper.
# PYTHON names the interpreter (default: the repo's .venv if present, else python).
set -euo pipefail
usage() { sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; }
for arg in "$@"; do
  if [[ "$arg" == -h || "$arg" == --help ]]; then usage; exit 0; fi
done
if [[ $# -lt 1 || ( "$1" != mnist && "$1" != cifar10 ) ]]; then
  usage >&2
  exit 2
fi
cd "$(dirname "$0")/.."
if [[ -z "${PYTHON:-}" && -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; fi
dataset=$1
shift
PY=${PYTHON:-python}
for attack in cw ead; do
  "$PY" -m eval.sweep --attack "$attack" --dataset "$dataset" --craft-only --batch-size 500 "$@"
done
for attack in cw ead; do
  "$PY" -m eval.sweep --attack "$attack" --dataset "$dataset" --batch-size 500 "$@"
done
"$PY" -m eval.figure --datasets "$dataset"
