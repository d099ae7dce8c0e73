"""The paper's Fig. 2: defense accuracy against CW / EAD vs confidence kappa.

    python -m eval.sweep --attack cw [--dataset mnist] [--preset cpu|paper]

Oblivious setting: adversarial examples are crafted on the bare classifier for the
first --num-examples test images it classifies correctly, at every kappa of the grid
(MNIST 0, 5, ..., 40; CIFAR-10 0, 10, ..., 100), and cached per kappa (and, while a
kappa is in progress, per --batch-size batch) under results/<dataset>/cache/<attack>/
(--preset paper) or .../<attack>-<preset>/ so an interrupted sweep resumes where it
stopped.
Then every defense is scored on the same images (none; REMIX's reformer; MagNet's
reformer; MagNet = its detectors + reformer, an input counting as defended when
rejected or classified right; REMIX mask-inpaint without and with the reformer): on
the examples that fooled the bare classifier ("fooled") and, labelled separately, on
all N with failed attacks left as the clean image ("all"). Randomized defenses: mean
and spread over --num-keys keys.
Success is re-checked on the scoring machine (margin >= kappa with its own
arithmetic), so caches crafted elsewhere are judged here.
"""

from __future__ import annotations

import os
import sys
import time

from remix_jax import attack_registry, cli, datasets, sweep_report


def parse(argv):
    p = cli.parser(__doc__)
    cli.add_attack_flag(p, "confidence")
    p.add_argument(
        "--confidences",
        type=cli.nonnegative_float,
        nargs="+",
        default=None,
        help="kappa grid (default: the paper's for the dataset)",
    )
    cli.add_search_attack_flags(p, initial_const=1e-3)
    p.add_argument(
        "--targeted", action="store_true", help="random wrong target labels from a fixed key"
    )
    p.add_argument("--batch-size", type=cli.positive_int, default=1000, help="images per call")
    cli.add_evaluation_flags(p, num_examples=1000, num_keys=10, keys="keys per defense")
    p.add_argument(
        "--iterations",
        type=cli.rounds,
        nargs="+",
        default=[1],
        help="REMIX mask-inpaint rounds K to score",
    )
    p.add_argument("--craft-only", action="store_true", help="fill the cache, score nothing")
    cli.add_baseline_flags(p)
    p.add_argument(
        "--inpainter",
        type=cli.existing_folder,
        default=None,
        help="score REMIX with this inpainter checkpoint folder instead of the "
        "shipped one (the caches do not depend on it; pass --out)",
    )
    cli.add_output_flags(
        p,
        out="results/<dataset>/<attack>",
        cache="results/<dataset>/cache/<attack>[-<preset>], -cpu for the cpu preset",
    )
    p.add_argument(
        "--render-only",
        action="store_true",
        help="rewrite the CSV, Markdown and plot from the existing <out>.json",
    )
    args = p.parse_args(argv)
    if args.inpainter and not args.out:
        p.error("--inpainter needs --out (the default results are the shipped defense's)")
    cli.require_with_classifier(p, args, "--out", "--cache-dir")
    if args.craft_only and args.render_only:
        p.error("--craft-only and --render-only exclude each other")
    return args


def attack_settings(args) -> dict:
    """The cache's attack settings: the preset, overridden by the flags given."""
    return attack_registry.search_settings(
        args.attack,
        args.preset,
        args,
        targeted=args.targeted,
        initial_const=args.initial_const,
    )


def main(argv=None) -> None:
    args = parse(argv)
    name = args.attack + ("-targeted" if args.targeted else "")
    out = args.out or os.path.join("results", args.dataset, name)
    if args.render_only:
        return cli.render_only(out, sweep_report.render_again, ".csv / .md / .png")
    if not args.craft_only:
        cli.check_output_path(out)
    from remix_jax import adversarial_cache

    cache_dir = args.cache_dir or adversarial_cache.default_folder(args.dataset, name, args.preset)
    cli.check_output_folder(cache_dir, "--cache-dir")  # crafting writes there
    from remix_jax import runtime

    runtime.configure()
    runtime.use_full_precision()
    started = time.time()
    inputs = cli.load_eval_inputs(args)
    baselines = cli.load_baselines(args, skip=args.craft_only)
    if len(inputs.chosen) < args.num_examples:
        sys.exit(
            f"error: --num-examples {args.num_examples}: the classifier gets only "
            f"{len(inputs.chosen)} of the {len(inputs.images)} test images right"
        )
    crafted = craft(args, name, cache_dir, inputs)
    if not args.craft_only:
        score(args, name, out, inputs, baselines, crafted, started)


def craft(args, name: str, cache_dir: str, inputs) -> dict:
    """Every kappa's examples, from ``cache_dir`` or crafted into it."""
    from tqdm import tqdm

    from remix_jax import adversarial_cache, provenance, sweep_eval

    settings = attack_settings(args)
    kappas = args.confidences or list(datasets.get(args.dataset).kappa_grid)
    attack_labels = adversarial_cache.attack_labels(
        inputs.y, datasets.get(args.dataset).num_classes, args.targeted
    )
    # another classifier's examples (or a retrained one's) are never read as this
    # one's (SettingsMismatch)
    identity = {
        **settings,
        **inputs.pretrained.classifier_entry(),
        **inputs.classifier_identity(args.dataset),
    }
    cache = adversarial_cache.AdversarialCache(
        cache_dir, tuple(inputs.chosen.tolist()), identity, log=tqdm.write
    )
    attack = attack_registry.get(args.attack).resolve()
    try:
        return sweep_eval.craft_sweep(
            cache, attack, inputs.pretrained.logits_fn, inputs.x, attack_labels, kappas,
            settings, args.batch_size, machine=provenance.machine(), name=name,
        )  # fmt: skip
    except adversarial_cache.SettingsMismatch as e:
        sys.exit(f"error: {e}")


def score(args, name: str, out: str, inputs, baselines, crafted: dict, started: float) -> None:
    """Scores every defense (REMIX, and the ``baselines``: a :class:`remix_jax.cli.Baselines`) on
    the clean and crafted images; writes ``<out>.*``."""
    from tqdm import tqdm

    from remix_jax import eval_inputs, progress, provenance, sweep_eval

    pre, settings = inputs.pretrained, attack_settings(args)
    defenses = eval_inputs.defense_suite(args.dataset, pre, baselines, args.iterations)
    # every scored kappa is kept until the result is written: a killed scoring resumes
    networks = [pre.classifier_params, pre.remix, *baselines.networks()]
    identity = sweep_eval.scoring_identity(
        settings, inputs.chosen.tolist(), args.num_keys, defenses, pre.remix,
        progress.fingerprint(*networks), args.seed,
    )  # fmt: skip
    scoring = progress.ProgressFile(out + ".progress.json", identity)
    clean_rows, rows = sweep_eval.score_sweep(
        defenses, inputs.x, inputs.y, crafted, args.num_keys, scoring,
        lambda k: tqdm(k, desc="scoring"), args.seed,
    )  # fmt: skip
    result = {
        "dataset": args.dataset,
        "attack": name,
        "settings": settings,
        "num_examples": len(inputs.y),
        "num_keys": args.num_keys,
        "seed": args.seed,
        "clean": clean_rows,
        "rows": rows,
        **baselines.settings(),
        "data_source": inputs.split.source,
        **({"inpainter": args.inpainter} if args.inpainter else {}),
        **pre.classifier_entry(),
        **provenance.finished(started),
    }
    print(sweep_report.markdown(result, list(defenses)))
    provenance.write_unless_reproduced(
        out, result, lambda path, res: sweep_report.write_outputs(path, res, list(defenses))
    )
    scoring.finish()


if __name__ == "__main__":
    main()
