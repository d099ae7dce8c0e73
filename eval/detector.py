"""Detecting adversarial examples with REMIX's inpainted copies, beside MagNet's detectors.

    python -m eval.detector --attack cw [--dataset mnist] [--preset cpu|paper] [--num-keys 5]

The detector the REMIX paper proposes in its conclusion (remix_jax.detector): scores
from the n inpainted copies of an input, for REMIX with and without its reformer.
It reads the adversarial examples eval.sweep cached (results/<dataset>/cache/<attack>/
for --preset paper, .../<attack>-<preset>/ otherwise; finished kappa_<k>.npz only)
and crafts none itself. Positives (--positives verified): the cached examples that
fool the bare classifier, success re-checked here in full float32 (margin >= kappa,
wrong argmax) as eval.sweep does, or (misclassified) every cached example the
classifier gets wrong here; negatives: the same clean test images the attack started
from. Thresholds (MagNet's rule) are set on clean validation images, the last
--validation-size training images (MagNet's validation split, never evaluated), at
each --drop-rates; the first rate is the headline (default: MagNet's rate for the
dataset, 0.001 on MNIST, 0.005 on CIFAR-10). Randomized scores: mean and spread over
--num-keys keys, each key with fresh masks for the validation, clean and adversarial
images. Writes results/<dataset>/detector-<attack>[-<preset>][-misclassified].json,
.md and .png (ROC AUC vs kappa).
"""

from __future__ import annotations

import sys
import time

from remix_jax import adversarial_cache, attack_registry, cli, datasets, runtime
from remix_jax import detector_report as report
from remix_jax.detector_report import VARIANTS


def parse(argv):
    p = cli.parser(__doc__)
    cli.add_attack_flag(p, "confidence")
    p.add_argument(
        "--preset",
        choices=sorted(attack_registry.PRESETS),
        default="cpu",
        help="which eval.sweep cache to read",
    )
    p.add_argument("--targeted", action="store_true", help="the targeted attack's cache")
    p.add_argument(
        "--positives",
        choices=sorted(report.POSITIVES),
        default="verified",
        help="which cached examples count as adversarial",
    )
    p.add_argument(
        "--confidences",
        type=cli.nonnegative_float,
        nargs="+",
        default=None,
        help="kappas to score (default: every finished cache)",
    )
    p.add_argument(
        "--num-keys", type=cli.positive_int, default=5, help="keys (mask draws) per REMIX score"
    )
    cli.add_seed_flag(p)
    p.add_argument(
        "--drop-rates",
        type=cli.fraction,
        nargs="+",
        default=None,
        help="clean validation rejection rates; the first is the headline (default: "
        + "; ".join(
            f"{d} {' '.join(map(str, datasets.get(d).detector_drop_rates))}"
            for d in datasets.names()
        )
        + ")",
    )
    p.add_argument(
        "--temperature", type=cli.positive_float, default=10.0, help="T of the JSD scores"
    )
    p.add_argument(
        "--validation-size",
        type=cli.positive_int,
        default=5000,
        help="last N training images, the clean calibration set",
    )
    p.add_argument("--variants", nargs="+", choices=sorted(VARIANTS), default=list(VARIANTS))
    p.add_argument("--batch-size", type=cli.positive_int, default=250)
    cli.add_output_flags(
        p, out="results/<dataset>/detector-<attack>[-<preset>]", cache="eval.sweep's for the preset"
    )
    p.add_argument(
        "--render-only", action="store_true", help="rewrite the .md and .png from <out>.json"
    )
    args = p.parse_args(argv)
    cli.require_with_classifier(p, args, "--out", "--cache-dir")
    if args.drop_rates is None:
        args.drop_rates = list(datasets.get(args.dataset).detector_drop_rates)
    if args.validation_size * min(args.drop_rates) < 1:
        p.error("--validation-size times the smallest --drop-rates must be >= 1")
    return args


def _caches(args, name: str) -> tuple[str, dict[float, str]]:
    """The cache folder and its finished kappas to score; exits with a hint if none."""
    folder = args.cache_dir or adversarial_cache.default_folder(args.dataset, name, args.preset)
    caches = adversarial_cache.finished(folder)
    if args.confidences is not None:
        caches = {k: v for k, v in caches.items() if k in set(args.confidences)}
    if caches:
        return folder, caches
    # finished kappas exist only when --confidences left them all out
    found = " ".join(f"{k:g}" for k in adversarial_cache.finished(folder))
    asked = " ".join(f"{k:g}" for k in args.confidences or ())
    sys.exit(
        f"error: no finished kappa_<k>.npz in {folder}"
        + (f" for --confidences {asked} (finished: {found})" if found else "")
        + f" (run python -m eval.sweep --attack {args.attack} --preset {args.preset} "
        "--craft-only first)"
    )


def main(argv=None) -> None:
    args = parse(argv)
    name = args.attack + ("-targeted" if args.targeted else "")
    out = args.out or report.default_out(args.dataset, name, args.preset, args.positives)
    if args.render_only:
        return cli.render_only(out, report.render_again, ".md / .png")
    cli.check_output_path(out)
    runtime.configure()
    runtime.use_full_precision()

    from remix_jax import components, data, eval_inputs, evaluation, keys, progress, provenance
    from remix_jax.pretrained import load_magnet, load_pretrained

    started = time.time()
    folder, caches = _caches(args, name)
    with cli.exit_on_load_errors():
        pre = load_pretrained(args.dataset, args.checkpoint_root, classifier=args.classifier)
        magnet = load_magnet(args.dataset, args.checkpoint_root)
        test = data.load_split(args.dataset, "test", args.data_dir)
        x_val, train_source = eval_inputs.validation_images(
            args.dataset, args.validation_size, args.data_dir
        )
        crafted, indices, settings = report.read_crafted(caches)
        pre.check_crafted_on(settings, folder)
    x_clean, y = data.to_float(test.images)[indices], test.labels[indices]
    targeted = bool(settings.get("targeted", False))
    positive, rows = report.check_positives(
        pre.logits_fn, crafted, y, datasets.get(args.dataset).num_classes, targeted, args.positives
    )
    clean_right = float((evaluation.predict(pre.logits_fn, x_clean) == y).mean() * 100)
    sets = {"val": x_val, "clean": x_clean}
    sets.update({k: c["adversarial"][positive[k]] for k, c in crafted.items()})
    # every key's scores are kept until the result is written: a killed run resumes
    run_identity = {
        "args": {k: v for k, v in vars(args).items() if k not in ("out", "render_only")},
        "indices": [int(i) for i in indices],
        "attack_settings": settings,
        "weights": progress.fingerprint(pre.classifier_params, pre.remix, magnet),
    }
    scoring = progress.ProgressFile(out + ".progress.json", run_identity)
    evaluated = report.evaluate_detectors(
        keys.evaluation_keys(args.seed, args.num_keys),
        report.remix_variants(pre.remix, args.variants),
        magnet,
        pre.logits_fn,
        sets,
        rows,
        official=components.magnet_official_names(args.dataset),
        drop_rates=args.drop_rates,
        temperature=args.temperature,
        batch_size=args.batch_size,
        progress=f"REMIX detector scores ({name})",
        scoring=scoring,
    )
    result = {
        "dataset": args.dataset,
        "attack": name,
        "preset": args.preset,
        "cache_dir": folder,
        "attack_settings": settings,
        "settings": report.run_settings(
            args.num_keys, args.drop_rates, args.temperature, args.variants, pre.remix.n_masks
        ),
        **report.describe_images(args.positives, len(y), clean_right, len(x_val), train_source),
        "data_source": test.source,
        **pre.classifier_entry(),
        "num_examples": len(y),
        **evaluated,
        **provenance.finished(started),
    }
    print(report.markdown(result))
    provenance.write_unless_reproduced(out, result, report.write_outputs)
    scoring.finish()


if __name__ == "__main__":
    main()
