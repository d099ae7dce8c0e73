"""Our APGD-CE / APGD-DLR against reference implementations at equal settings.

``python -m bench.apgd_reference``, run with an interpreter that also has the
references, kept out of the project's venv (the README's reference venv)::

    python3 -m venv ../refvenv && ../refvenv/bin/pip install torch==2.13.0 \\
        && ../refvenv/bin/pip install -e . \\
        && ../refvenv/bin/pip install --no-deps torchattacks==3.5.1 \\
           adversarial-robustness-toolbox==1.20.1 \\
        && ../refvenv/bin/pip install scipy scikit-learn tqdm six setuptools

In one process, on the first --num-examples test images of --dataset (all of them,
right or wrong), L-inf at --epsilon, --steps steps, one restart, rho 0.75, no EOT, the
whole batch at once, fixed seeds (bench.apgd_runs):

  ours-ce / ours-dlr                  remix_jax.attacks.apgd
  torchattacks-ce / torchattacks-dlr  torchattacks.APGD
  art-ce / art-dlr                    ART's AutoProjectedGradientDescent
                                      (eps_step = 2 * eps, its default is 0.1)
  official-ce / official-dlr          fra31/auto-attack's APGDAttack, only with
                                      --official-path (a checkout of that repository)

The references attack the torch port of the same weights, checked to give the same
logits within 1e-4 first (bench.torch_ports.checked_port). Every returned image is
judged alike (remix_jax.attack_quality.judge_in_ball): projected into the ball and
[0, 1] (and counted if it lay outside), then classified by our JAX classifier; an
image is robust if that still gives its label. Each implementation's own verdict (the
torch port's for the references) is reported beside it.

Time: each run is preceded by a warm-up, the same call with --warmup-steps steps
(ours compiles there; reported separately); the timed call is the next one. The runs
alternate (ours, then each reference, per loss) so that load from other processes
falls on all of them alike. Writes <out>.json and <out>.md atomically after every run;
``--render-only`` rewrites them from <out>.json's rows and per-image verdicts (the
comparison and the tables: remix_jax.apgd_comparison).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from bench.apgd_runs import IMPLEMENTATIONS
from remix_jax import apgd_comparison, cli, datasets
from remix_jax.cli import DATA_DIR_HELP, HelpFormatter, add_dataset_flag

# the default budgets: where the bare classifier keeps 20-80% (issue 32)
EPSILON = {"mnist": 0.1, "cifar10": 1 / 255}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    add_dataset_flag(p)
    p.add_argument(
        "--num-examples", type=cli.positive_int, default=1000, help="first test images attacked"
    )
    p.add_argument(
        "--epsilon",
        type=cli.fraction,
        default=None,
        help="L-inf budget (default: 0.1 for MNIST, 1/255 for CIFAR-10)",
    )
    p.add_argument(
        "--steps", type=cli.attack_iterations, default=100, help="APGD steps (one restart)"
    )
    p.add_argument(
        "--warmup-steps",
        type=cli.attack_iterations,
        default=10,
        help="steps of the untimed-for-the-result warm-up call before each timed run",
    )
    p.add_argument("--seed", type=cli.seed, default=0, help="every implementation's seed")
    p.add_argument(
        "--implementations",
        nargs="+",
        choices=IMPLEMENTATIONS,
        default=None,
        help="default: ours and every reference installed (official-*: with --official-path)",
    )
    p.add_argument(
        "--official-path",
        default=None,
        help="a checkout of fra31/auto-attack (the folder holding autoattack/): runs its "
        "APGDAttack too",
    )
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.add_argument(
        "--out",
        default=None,
        help="output path without extension (.json and .md; default "
        "results/bench/apgd_reference, _cifar10 appended for CIFAR-10)",
    )
    p.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite <out>.json's comparisons and <out>.md from its rows, attacking nothing",
    )
    return p


def main(argv=None) -> None:
    p = _parser()
    args = p.parse_args(argv)
    if args.out is None:
        args.out = "results/bench/apgd_reference" + datasets.file_suffix(args.dataset)
    cli.check_output_path(args.out)
    if args.render_only:
        print(apgd_comparison.markdown(apgd_comparison.rerender(args.out)))
        return
    if args.epsilon is None:
        if args.dataset not in EPSILON:
            p.error(f"--epsilon has no default for {args.dataset}")
        args.epsilon = EPSILON[args.dataset]

    from bench import apgd_runs

    implementations = apgd_runs.choose(args.implementations, args.official_path)
    official = apgd_runs.official_source(args.official_path) if args.official_path else None

    from remix_jax import runtime

    runtime.configure()
    import jax
    import numpy as np

    from remix_jax import data, evaluation
    from remix_jax.pretrained import load_pretrained

    pre = load_pretrained(args.dataset)
    images, labels = data.load(args.dataset, "test", args.data_dir)
    if len(images) < args.num_examples:
        sys.exit(f"error: the test split has only {len(images)} images")
    x = np.asarray(data.to_float(images[: args.num_examples]), np.float32)
    y = np.asarray(labels[: args.num_examples], np.int32)
    logits_fn = jax.jit(pre.logits_fn)
    clean = evaluation.predict(logits_fn, x) == y
    net, port, classes = None, None, int(np.asarray(logits_fn(x[:1])).shape[-1])
    if any(not i.startswith("ours") for i in implementations):
        from bench.torch_ports import checked_port

        net, port = checked_port(pre, logits_fn, x)
    header = {
        "settings": apgd_comparison.settings(
            args.dataset, len(x), args.epsilon, args.steps, args.seed, args.warmup_steps
        ),
        "implementations": implementations,
        "clean_accuracy": 100.0 * float(clean.mean()),
        "torch_port": port,
        "official": official,
    }
    run = apgd_runs.runners(pre.logits_fn, net, classes)
    _measure(args, header, run, logits_fn, x, y)


def _measure(args, header: dict, run: dict, logits_fn, x, y) -> dict:
    """Warm-up and timed call of every implementation, judged alike; rewrites the result
    files after each; returns the last result written."""
    from bench.apgd_runs import versions
    from remix_jax import attack_quality

    rows, per_example = [], {}
    payload = None
    for impl in header["implementations"]:
        who, loss = impl.split("-")
        print(f"[{time.strftime('%H:%M:%S')}] {impl} ...", flush=True)
        load = os.getloadavg()[0]
        start = time.perf_counter()
        run[who](x, y, loss, args.epsilon, args.warmup_steps, args.seed)
        warmup = time.perf_counter() - start
        start = time.perf_counter()
        adv, own_robust = run[who](x, y, loss, args.epsilon, args.steps, args.seed)
        seconds = time.perf_counter() - start
        verdict = attack_quality.judge_in_ball(logits_fn, x, y, adv, args.epsilon)
        row = apgd_comparison.run_row(
            impl, verdict, own_robust, seconds, warmup, load, os.getloadavg()[0]
        )
        rows.append(row)
        per_example[impl] = apgd_comparison.per_image(verdict, own_robust)
        print(
            f"  robust {row['robust_accuracy']:.1f}% (own verdict "
            f"{row['own_robust_accuracy']:.1f}%), {seconds:.1f} s, warm-up {warmup:.1f} s",
            flush=True,
        )
        payload = apgd_comparison.result(header, rows, per_example, y, versions())
        apgd_comparison.write(args.out, payload)
    print(apgd_comparison.markdown(payload))
    return payload


if __name__ == "__main__":
    main()
