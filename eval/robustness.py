"""Robust accuracy under the field's protocol: AutoAttack's rand APGD plus a portfolio.

    python -m eval.robustness --dataset mnist --defense remix --norm linf

For REMIX (randomized): AutoAttack's version="rand" (APGD-CE and APGD-DLR, each with
EOT over --draws draws per step and --restarts random starts) on the whole pipeline
classifier(defend(key, x)); the portfolio of eval.adaptive's threats (PGD with the
margin loss and EOT: from a random start, from the transfer example, with BPDA); and
the transfer attacks (APGD-CE, APGD-T and PGD crafted on the bare classifier). An
image counts as robust at a budget under a key only if it survives every attack
there, and accuracy is judged over --num-keys keys the attacker never used. The bare
classifier is judged by APGD-CE and APGD-T (AutoAttack standard's APGD parts; FAB-T
and Square are not implemented, so its numbers are upper bounds of AutoAttack's), and
MagNet's reformer (--defense magnet-reformer) and APE-GAN's purifier (--defense
apegan), both deterministic, by the same two through the purifier with exact
gradients, beside the transfer attacks.
The sanity checks of Carlini et al. (2019) are reported beside the numbers (--no-sanity
drops them): a quarter of the draws or of the steps never leaves a lower accuracy, a
large budget leaves ~0%, the bare classifier is at ~0% at the largest budget.

Cost: an EOT-20 APGD step is 20 passes through REMIX; on a 2-core CPU, MNIST costs
about 5 ms per image, step and draw (about 80 minutes per attack and budget at 500
images and 100 steps): use a GPU for the full protocol, or --num-examples for a
smaller run. Crafted batches (--batch-size images) are cached under
results/<dataset>/cache/adaptive/ (shared with eval.adaptive), so a killed run
resumes. Writes results/<dataset>/robustness-<defense>-<norm>.{json,md,png}.
"""

from __future__ import annotations

import dataclasses
import os
import time

from remix_jax import adaptive_plan, cli, datasets, robustness_plan

DEFENSES = {
    "remix": "reformer + mask-inpaint",
    "mask-inpaint": "mask-inpaint",
    "magnet-reformer": adaptive_plan.MAGNET_REFORMER,
    "apegan": adaptive_plan.APE_GAN,
    "none": "none",
}


# a judged purifier's keyword in adaptive_eval.purifiers, and its weights' field in the result
BASELINE_WEIGHTS = {adaptive_plan.MAGNET_REFORMER: "magnet", adaptive_plan.APE_GAN: "apegan"}


def load_purifiers(args, defense: str) -> dict:
    """The judged purifier's transform and weights (empty unless ``defense`` is one),
    from ``--checkpoint-root``; a missing checkpoint exits with one line."""
    if defense not in adaptive_plan.PURIFIERS:
        return {}
    from remix_jax import adaptive_eval, pretrained

    load = {
        adaptive_plan.MAGNET_REFORMER: pretrained.load_magnet,
        adaptive_plan.APE_GAN: pretrained.load_apegan,
    }[defense]
    with cli.exit_on_load_errors():
        weights = load(args.dataset, args.checkpoint_root)
    return adaptive_eval.purifiers(**{BASELINE_WEIGHTS[defense]: weights})


def parse(argv):
    p = cli.parser(__doc__)
    cli.add_dataset_flag(p)
    p.add_argument("--defense", choices=list(DEFENSES), default="remix", help="the judged model")
    p.add_argument("--norm", choices=["linf", "l2"], default="linf")
    p.add_argument(
        "--budgets",
        type=cli.positive_float,
        nargs="+",
        default=None,
        help="epsilons (default: the dataset's PGD budgets, e.g. MNIST linf 0.1 0.2 0.3)",
    )
    cli.add_evaluation_flags(p, num_examples=500, num_keys=10, keys="evaluation keys")
    p.add_argument("--draws", type=cli.draws, default=20, help="APGD's EOT draws per step")
    p.add_argument("--steps", type=cli.attack_iterations, default=100, help="APGD and PGD steps")
    p.add_argument("--restarts", type=cli.draws, default=1, help="APGD's random starts")
    p.add_argument(
        "--portfolio",
        nargs="*",
        choices=robustness_plan.PORTFOLIO,
        default=list(robustness_plan.PORTFOLIO),
        help="PGD threats added to APGD (none: APGD and the transfer attacks only)",
    )
    p.add_argument("--portfolio-samples", type=cli.draws, default=4, help="EOT draws of PGD's")
    p.add_argument("--iterations", type=cli.rounds, default=1, help="mask-inpaint rounds K")
    p.add_argument("--no-sanity", action="store_true", help="leave out the sanity checks")
    p.add_argument("--sanity-budget", type=cli.positive_float, default=None)
    p.add_argument("--large-budget", type=cli.positive_float, default=None)
    p.add_argument("--batch-size", type=cli.positive_int, default=100, help="images per cache file")
    cli.add_output_flags(
        p,
        out="results/<dataset>/robustness-<defense>-<norm>",
        cache="results/<dataset>/cache/adaptive",
    )
    args = p.parse_args(argv)
    cli.require_with_classifier(p, args, "--out", "--cache-dir")
    if args.budgets is None:
        args.budgets = list(datasets.get(args.dataset).pgd_budgets[args.norm])
    if args.sanity_budget is not None and args.sanity_budget not in args.budgets:
        # the checks compare the weakened APGD-CE with the protocol's at the same budget
        p.error("--sanity-budget must be one of --budgets")
    if args.norm == "linf" and max(args.budgets + [args.large_budget or 0]) >= 1:
        p.error("an L-inf budget >= 1 allows any image in [0, 1]: budgets must be < 1")
    return args


def setup_from(args) -> robustness_plan.RobustnessSetup:
    """The protocol's settings from the parsed flags."""
    return robustness_plan.RobustnessSetup(
        dataset=args.dataset,
        norm=args.norm,
        budgets=tuple(args.budgets),
        defense=DEFENSES[args.defense],
        draws=args.draws,
        steps=args.steps,
        restarts=args.restarts,
        portfolio=tuple(args.portfolio),
        portfolio_samples=args.portfolio_samples,
        num_keys=args.num_keys,
        iterations=args.iterations,
        seed=args.seed,
        sanity=not args.no_sanity,
        sanity_budget=args.sanity_budget,
        large_budget=args.large_budget,
        classifier=args.classifier,
    )


def main(argv=None) -> None:
    args = parse(argv)
    out = args.out or os.path.join(
        "results", args.dataset, f"robustness-{args.defense}-{args.norm}"
    )
    cli.check_output_path(out)
    from remix_jax import runtime

    runtime.configure()
    runtime.use_full_precision()
    from tqdm import tqdm

    from remix_jax import progress, provenance, robustness_eval
    from remix_jax import robustness_report as report

    setup = setup_from(args)
    started = time.time()
    inputs = cli.load_eval_inputs(args)
    purifiers = load_purifiers(args, setup.defense)
    robustness = robustness_eval.RobustnessEvaluation(
        setup,
        *inputs.attacked(),
        args.cache_dir or adaptive_plan.default_cache_dir(args.dataset),
        args.batch_size,
        purifiers=purifiers,
        classifier_weights=inputs.classifier_weights(),
    )
    parts = robustness_plan.plan(setup, datasets.get(args.dataset).num_classes)
    # a purifier's weights, when judged, are part of what a resumed scoring must match
    extra = {f"{BASELINE_WEIGHTS[n]}_weights": p.weights for n, p in purifiers.items()}
    weights = inputs.weights() + "".join(f" {v}" for v in extra.values())
    scoring = progress.ProgressFile(
        out + ".progress.json", robustness_eval.scoring_identity(robustness, weights)
    )
    scored = robustness_eval.evaluate(
        robustness, tqdm(parts, desc="robustness"), log=tqdm.write, scoring=scoring
    )
    result = {
        "dataset": args.dataset,
        "defense": setup.defense,
        "settings": {
            k: v for k, v in dataclasses.asdict(setup).items() if k not in ("dataset", "defense")
        },
        **({"n_masks": inputs.pretrained.remix.n_masks} if setup.randomized else extra),
        **inputs.result_fields(args.num_keys, scored, started),  # clean, rows, worst_case, sanity
    }
    provenance.publish(out, result, report.markdown, report.write_outputs, scoring)


if __name__ == "__main__":
    main()
