"""Our CW-L2 / EAD against reference implementations at equal settings.

``python -m bench.reference_attacks``, run with an interpreter that also has the
references, kept out of the project's venv, e.g.::

    python3 -m venv /work/refvenv
    /work/refvenv/bin/pip install -e . foolbox==3.3.4 torch==2.13.0
    /work/refvenv/bin/pip install --no-deps advertorch==0.2.3

On the first --num-examples test images of --dataset (MNIST: MagNet's CNN; CIFAR-10:
the narrow ResNet-9) the shipped classifier gets right, untargeted, at each kappa of
--confidences, with the same search steps, iterations, learning rate, initial
constant, beta, decision rule, and early abort on:

  ours-cw         remix_jax.attacks.cw_l2
  foolbox-cw      foolbox.attacks.L2CarliniWagnerAttack (JAXModel of the same function)
  advertorch-cw   advertorch.attacks.CarliniWagnerL2Attack (torch port, below)
  ours-ead        remix_jax.attacks.ead
  foolbox-ead     foolbox.attacks.EADAttack (regularization=beta)
  advertorch-ead  advertorch.attacks.ElasticNetL1Attack (abort_early=True passed,
                  as to all; its default is False)
  foolboxtorch-*  Foolbox's attacks on a PyTorchModel of the torch port: the same
                  attack code as foolbox-*, on advertorch's network, which separates
                  differences of attack code from differences of the two networks'
                  float32 arithmetic (not run by default)

By default every reference whose package is installed runs (bench.reference_runs);
advertorch gets a torch port of the Flax weights checked to give the same logits within
1e-4 first (bench.advertorch_runs). Every returned image is judged by the same function,
never by the implementation's own flags (remix_jax.attack_quality: margin >= kappa,
argmax wrong, in the box, not Foolbox's all-zero "nothing found"); distortions are
averaged over successes only; a paired table compares each reference with ours on the
examples both broke.

The references run the whole batch at once (their usual use); their early abort
then watches the loss summed over the batch (ours: per example, as the original
batch-size-1 code). Wall seconds include JIT compilation (ours compiles once per
attack and shape; the second kappa reuses it).

Writes <out>.json (per-example numbers, versions, provenance) and <out>.md atomically
after every run, so an interrupted bench keeps what it measured (the result and its
tables: remix_jax.cw_ead_comparison); ``--render-only`` recomputes them from <out>.json.
"""

from __future__ import annotations

import argparse
import sys
import time

from bench import reference_runs
from remix_jax import cw_ead_comparison, datasets
from remix_jax.cli import (
    DATA_DIR_HELP,
    HelpFormatter,
    add_dataset_flag,
    attack_iterations,
    check_output_path,
    nonnegative_float,
    positive_float,
    positive_int,
    search_steps,
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    add_dataset_flag(p)
    p.add_argument("--num-examples", type=positive_int, default=100, help="images attacked")
    p.add_argument("--binary-search-steps", type=search_steps, default=5, help="search steps on c")
    p.add_argument(
        "--max-iterations", type=attack_iterations, default=1000, help="iterations per search step"
    )
    p.add_argument(
        "--confidences", type=nonnegative_float, nargs="+", default=[0.0, 10.0], help="kappa values"
    )
    p.add_argument(
        "--learning-rate",
        type=positive_float,
        default=1e-2,
        help="Adam lr (CW), initial FISTA step (EAD)",
    )
    p.add_argument("--initial-const", type=positive_float, default=1e-3, help="first c")
    p.add_argument("--beta", type=nonnegative_float, default=1e-2, help="EAD's L1 weight (both)")
    p.add_argument(
        "--decision-rule",
        choices=["EN", "L1"],
        default="EN",
        help="EAD's choice of best example (both)",
    )
    p.add_argument(
        "--warm",
        action="store_true",
        help="run each of our attacks once untimed first, so its time excludes "
        "compilation (every batch size the compaction meets is compiled)",
    )
    p.add_argument(
        "--no-abort-early",
        dest="abort_early",
        action="store_false",
        help="turn every implementation's early abort off (a diagnostic)",
    )
    p.add_argument(
        "--implementations",
        nargs="+",
        choices=reference_runs.IMPLEMENTATIONS,
        default=None,
        help="default: ours and every reference whose package is installed",
    )
    p.add_argument(
        "--ours-budgets",
        type=reference_runs.budget,
        nargs="*",
        default=[],
        metavar="STEPSxITERATIONS[+warm][+linear][+lrRATE]",
        help="also run each of our attacks with these budgets (e.g. 5x500), labelled "
        "ours-cw@5x500: the time at which ours reaches a reference's success and "
        "distortion; suffixes turn our options on: +warm (warm_start=True: each search "
        "step starts at the best example so far), +linear (initial_const='linear': "
        "each example's first c from its linearised margin), +lr<RATE> (its own "
        "learning rate), e.g. 3x1000+linear or 5x500+lr0.03",
    )
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.add_argument(
        "--out",
        default=None,
        help="output path without extension (.json and .md are written; default "
        "results/bench/reference_attacks, _cifar10 appended for CIFAR-10)",
    )
    p.add_argument(
        "--render-only",
        action="store_true",
        help="recompute the tables of <out>.json from its per-example numbers "
        "and rewrite <out>.json/.md, running no attack",
    )
    return p


def main(argv=None) -> None:
    p = _parser()
    args = p.parse_args(argv)
    if args.out is None:
        args.out = "results/bench/reference_attacks" + (datasets.file_suffix(args.dataset))
    if args.render_only:
        print(cw_ead_comparison.markdown(cw_ead_comparison.rerender(args.out)))
        return
    check_output_path(args.out)

    from remix_jax import runtime

    runtime.configure()
    import jax
    import numpy as np

    from bench.common import setup

    args.implementations = reference_runs.choose(args.implementations)
    pre, x, y = setup(args.dataset, args.num_examples, args.data_dir)
    x = np.asarray(x, np.float32)
    y = np.asarray(y, np.int32)
    if len(x) < args.num_examples:
        sys.exit(f"error: only {len(x)} correctly classified images found")
    logits_fn = jax.jit(pre.logits_fn)
    runners, names, port = reference_runs.runners(args, pre, logits_fn, x, y)
    header = {
        "settings": reference_runs.settings(args, len(x)),
        "implementations": names,
        "torch_port": port or None,
    }
    payload = _measure(args, header, runners, logits_fn, x, y)
    print(cw_ead_comparison.markdown(payload))


def _measure(args, header: dict, runners: dict, logits_fn, x, y) -> dict:
    """Runs and judges every implementation at every kappa, rewriting the result files
    after each run; returns the last result written."""
    from remix_jax import attack_quality
    from remix_jax.cw_ead_comparison import fmt, result, write

    verdicts, seconds = {}, {}
    for kappa in args.confidences:
        for impl in header["implementations"]:
            print(f"[{time.strftime('%H:%M:%S')}] {impl} kappa={kappa} ...", flush=True)
            if args.warm and impl.startswith("ours"):
                runners[impl](kappa)  # compiles every shape the timed run will meet
            start = time.perf_counter()
            adv = runners[impl](kappa)
            seconds[(impl, kappa)] = round(time.perf_counter() - start, 1)
            verdicts[(impl, kappa)] = attack_quality.judge(logits_fn, x, y, adv, kappa)
            payload = result(header, verdicts, seconds, y, reference_runs.versions())
            row = payload["rows"][-1]
            print(
                f"  success {row['success_rate']:.3f}  mean L2 {fmt(row['mean_l2'])}  "
                f"mean L1 {fmt(row['mean_l1'])}  {row['seconds']:.1f}s",
                flush=True,
            )
            write(args.out, payload)
    return payload


if __name__ == "__main__":
    main()
