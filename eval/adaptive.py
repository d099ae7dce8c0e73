"""Robust accuracy of REMIX under adaptive white-box attacks, beside the oblivious setting.

    python -m eval.adaptive --attack pgd --norm linf [--dataset mnist] [--sanity]

Every attack sees the whole pipeline classifier(defend(key, x)), with one of these
threat models (--threats):
  oblivious  crafted on the bare classifier (the paper's setting), scored behind REMIX;
  eot        exact gradients through the reformer and inpainter, logits averaged
             over --samples fresh mask draws per step (EOT);
  bpda       the same with an identity backward pass for the reformer and each
             mask-inpaint round (BPDA);
  eot-warm   eot from the oblivious example of the same budget, or --start-from's
             (CW/EAD: each search step from the best example so far: the adaptive
             minimum-distortion attack); its time excludes the start's;
  fixed      one fixed mask draw (the attacker's key) at every step: scored with the
             attacker's own key (a sanity check: the attack must then succeed) and
             with fresh keys.
Robust accuracy is measured with --num-keys keys the attacker never saw (mean and
spread). --detector adds the paper's proposed detector (remix_jax.detector): every
row then also reports how many examples it rejects (threshold at
--detector-drop-rate of clean validation images) and the accuracy counting a
rejection as defended, and runs "eot" attacks that also pay --detector-weights times
max(score / threshold - 1/2, 0) to evade it (a hinge: no cost while the score stays
well below the threshold, so the attack is free to fool the classifier until the
detector is near). --sanity adds the checks
of Carlini et al. (2019) at --sanity-budget: more EOT samples and more steps must not
weaken the attack, and a large budget must bring accuracy to ~0. Adversarial images
are cached per run under results/<dataset>/cache/adaptive/, so a killed evaluation
resumes. Writes
results/<dataset>/adaptive-<attack>[-<norm>].{json,md,png}.
"""

from __future__ import annotations

import os
import time

from remix_jax import adaptive_plan, attack_registry, cli, datasets


def parse(argv):
    p = cli.parser(__doc__)
    cli.add_attack_flag(p)
    p.add_argument("--norm", choices=["linf", "l2"], default="linf", help="PGD's ball")
    p.add_argument(
        "--budgets",
        type=cli.nonnegative_float,
        nargs="+",
        default=None,
        help="PGD: epsilons (default MNIST linf 0.05 0.1 0.2 0.3, l2 1 2 3; "
        "CIFAR-10 linf 2/255 4/255 8/255, l2 0.25 0.5 1); "
        "CW/EAD: confidences kappa (default 0)",
    )
    defenses, threats = adaptive_plan.DEFENSES, adaptive_plan.THREATS
    p.add_argument("--defenses", nargs="+", choices=defenses, default=[defenses[-1]])
    p.add_argument("--threats", nargs="+", choices=threats, default=["oblivious", "eot"])
    cli.add_evaluation_flags(p, num_examples=100, num_keys=10, keys="evaluation keys")
    p.add_argument("--samples", type=cli.draws, default=4, help="EOT: draws per step (R)")
    p.add_argument("--steps", type=cli.attack_iterations, default=100, help="PGD steps")
    # margin, not cross-entropy: the MNIST classifier's logits (gaps of 20+) saturate the
    # float32 softmax, so CE's gradient is exactly 0 on confidently classified images
    # (PGD-L2, eps 2, bare classifier, 100 images: 35% accuracy left with CE, 14% with
    # the margin: results/mnist/adaptive-pgd-l2{-ce,}.md)
    p.add_argument("--loss", choices=["ce", "margin"], default="margin", help="PGD's loss")
    p.add_argument("--binary-search-steps", type=cli.search_steps, default=5, help="CW/EAD")
    p.add_argument("--max-iterations", type=cli.attack_iterations, default=200, help="CW/EAD")
    p.add_argument("--initial-const", type=cli.positive_float, default=1.0, help="CW/EAD first c")
    p.add_argument("--beta", type=cli.nonnegative_float, default=0.1, help="EAD's L1 weight")
    p.add_argument("--iterations", type=cli.rounds, default=1, help="mask-inpaint rounds K")
    start_help = "a cached run (.npz) on the same images whose examples begin eot-warm"
    p.add_argument("--start-from", type=cli.existing_file, default=None, help=start_help)
    p.add_argument("--sanity", action="store_true", help="add the sanity-check runs")
    p.add_argument(
        "--sanity-budget",
        type=cli.positive_float,
        default=None,
        help="budget of the samples/steps checks (default: the second budget)",
    )
    p.add_argument(
        "--large-budget",
        type=cli.positive_float,
        default=None,
        help="the large-budget check (default linf 0.5, l2 8, kappa: none)",
    )
    p.add_argument(
        "--detector",
        choices=adaptive_plan.DETECTOR_SCORES,
        default=None,
        help="score and attack REMIX's detector with this score",
    )
    p.add_argument(
        "--detector-weights",
        type=cli.positive_float,
        nargs="+",
        default=[1.0, 10.0, 100.0],
        help="weight of max(score / threshold - 1/2, 0) in detector-aware runs",
    )
    p.add_argument(
        "--detector-drop-rate",
        type=cli.fraction,
        default=None,
        help="share of clean validation images the detector rejects (default: "
        "MagNet's headline rate for the dataset, as eval.detector: "
        + "; ".join(f"{d} {datasets.get(d).detector_drop_rates[0]:g}" for d in datasets.names())
        + ")",
    )
    validation_help = "last N training images: the detector's clean calibration set"
    p.add_argument("--validation-size", type=cli.positive_int, default=5000, help=validation_help)
    cli.add_output_flags(
        p,
        out="results/<dataset>/adaptive-<attack>[-<norm>]",
        cache="results/<dataset>/cache/adaptive",
    )
    args = p.parse_args(argv)
    cli.require_with_classifier(p, args, "--out", "--cache-dir")
    spec = datasets.get(args.dataset)
    if args.detector_drop_rate is None:
        args.detector_drop_rate = spec.detector_drop_rates[0]
    epsilon = attack_registry.get(args.attack).budget == "epsilon"
    if args.budgets is None:
        args.budgets = list(spec.pgd_budgets[args.norm]) if epsilon else [0.0]
    problem = adaptive_plan.budget_problem(epsilon, args.norm, args.budgets)
    if problem:
        p.error(problem)
    if args.start_from and "eot-warm" not in args.threats:
        p.error("--start-from starts the eot-warm runs: add eot-warm to --threats")
    return args


def default_out(args) -> str:
    """``--out``, else results/<dataset>/adaptive-<attack>[-<norm>]."""
    epsilon = attack_registry.get(args.attack).budget == "epsilon"
    name = f"adaptive-{args.attack}" + (f"-{args.norm}" if epsilon else "")
    return args.out or os.path.join("results", args.dataset, name)


def validation(args):
    """The detector's clean calibration images, or one line naming --validation-size."""
    from remix_jax import eval_inputs

    with cli.exit_on_load_errors(lambda message: " (--validation-size)"):
        return eval_inputs.validation_images(args.dataset, args.validation_size, args.data_dir)[0]


def main(argv=None) -> None:
    args = parse(argv)
    check = default_out(args)
    cli.check_output_path(check)
    from remix_jax import runtime

    runtime.configure()
    runtime.use_full_precision()
    from tqdm import tqdm

    from remix_jax import adaptive_eval, adaptive_report, progress, provenance

    setup = adaptive_plan.AdaptiveSetup.from_args(args)
    started = time.time()
    inputs = cli.load_eval_inputs(args)
    if args.start_from:  # a start of other images: refused in one line, before any work
        with cli.exit_on_load_errors():
            adaptive_eval.load_start(args.start_from, args.dataset, inputs.chosen.tolist())
    run = adaptive_eval.AdaptiveEvaluation(
        setup,
        *inputs.attacked(),
        args.cache_dir or adaptive_plan.default_cache_dir(args.dataset),
        lambda: validation(args),
        classifier_weights=inputs.classifier_weights(),
    )
    runs = tqdm(adaptive_plan.plan(setup), desc=f"adaptive {args.attack}")
    # every scored run is kept until the result is written: a killed scoring resumes
    scoring = progress.ProgressFile(
        check + ".progress.json", adaptive_eval.scoring_identity(run, inputs.weights())
    )
    scored = adaptive_eval.evaluate(run, runs, log=tqdm.write, scoring=scoring)
    result = {
        "dataset": args.dataset,
        "attack": args.attack,
        "settings": {
            **setup.attack_settings,
            "samples": args.samples,
            "steps": args.steps if setup.epsilon else None,
            "iterations": args.iterations,
            "n_masks": inputs.pretrained.remix.n_masks,
            "seed": args.seed,
        },
        # clean, rows, worst_case, detector
        **inputs.result_fields(args.num_keys, scored, started),
    }
    provenance.publish(
        check, result, adaptive_report.markdown, adaptive_report.write_outputs, scoring
    )


if __name__ == "__main__":
    main()
