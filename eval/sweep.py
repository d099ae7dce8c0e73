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

import argparse
import os
import sys
import time

from remix_jax import attack_registry, cli, datasets, sweep_report


def parse(argv):
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=cli.HelpFormatter
    )
    p.add_argument("--attack", choices=attack_registry.names("confidence"), required=True)
    cli.add_dataset_flag(p)
    p.add_argument(
        "--num-examples",
        type=cli.positive_int,
        default=1000,
        help="first N test images the bare classifier gets right",
    )
    p.add_argument(
        "--confidences",
        type=cli.nonnegative_float,
        nargs="+",
        default=None,
        help="kappa grid (default: the paper's for the dataset)",
    )
    p.add_argument(
        "--preset",
        choices=sorted(attack_registry.PRESETS),
        default="cpu",
        help="attack budget: "
        + "; ".join(
            f"{k} {v['binary_search_steps']} x {v['max_iterations']}"
            for k, v in sorted(attack_registry.PRESETS.items())
        ),
    )
    p.add_argument("--binary-search-steps", type=cli.search_steps, help="overrides --preset")
    p.add_argument("--max-iterations", type=cli.attack_iterations, help="overrides --preset")
    p.add_argument("--initial-const", type=cli.positive_float, default=1e-3, help="first c")
    p.add_argument("--beta", type=cli.nonnegative_float, default=0.1, help="EAD's L1 weight")
    p.add_argument(
        "--decision-rule",
        choices=["EN", "L1"],
        default="EN",
        help="EAD: which distortion picks the best example (EN = L2 + beta L1)",
    )
    p.add_argument(
        "--targeted", action="store_true", help="random wrong target labels from a fixed key"
    )
    p.add_argument("--batch-size", type=cli.positive_int, default=1000, help="images per call")
    p.add_argument("--num-keys", type=cli.positive_int, default=10, help="keys per defense")
    p.add_argument(
        "--iterations",
        type=cli.positive_int,
        nargs="+",
        default=[1],
        help="REMIX mask-inpaint rounds K to score",
    )
    p.add_argument("--craft-only", action="store_true", help="fill the cache, score nothing")
    p.add_argument("--no-magnet", action="store_true", help="leave out the MagNet rows")
    cli.add_source_flags(p)
    p.add_argument(
        "--inpainter",
        type=cli.existing_folder,
        default=None,
        help="score REMIX with this inpainter checkpoint folder instead of the "
        "shipped one (the caches do not depend on it; pass --out)",
    )
    cli.add_classifier_flag(p)
    p.add_argument(
        "--cache-dir",
        default=None,
        help="adversarial examples per kappa (default: "
        "results/<dataset>/cache/<attack>[-<preset>], -cpu for the cpu preset)",
    )
    p.add_argument("--out", default=None, help="default: results/<dataset>/<attack>")
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
        try:
            sweep_report.render_again(out)
        except FileNotFoundError:
            sys.exit(f"error: --render-only needs {out}.json")
        print(f"-> {out}.csv / .md / .png")
        return
    if not args.craft_only:
        cli.check_output_path(out)
    from remix_jax import adversarial_cache

    cache_dir = args.cache_dir or adversarial_cache.default_folder(args.dataset, name, args.preset)
    cli.check_output_folder(cache_dir, "--cache-dir")  # crafting writes there
    from remix_jax import runtime

    runtime.configure()
    runtime.use_full_precision()
    from tqdm import tqdm

    from remix_jax import (
        components,
        data,
        evaluation,
        progress,
        provenance,
        sweep_eval,
    )
    from remix_jax.adversarial_cache import AdversarialCache
    from remix_jax.pretrained import load_magnet, load_pretrained

    skip_magnet = args.no_magnet or args.craft_only
    try:
        pre = load_pretrained(
            args.dataset, args.checkpoint_root, inpainter=args.inpainter, classifier=args.classifier
        )
        magnet = None if skip_magnet else load_magnet(args.dataset, args.checkpoint_root)
        split = data.load_split(args.dataset, "test", args.data_dir)
    except (FileNotFoundError, ValueError, NotImplementedError) as e:
        hint = " (or leave MagNet out with --no-magnet)" if "magnet" in str(e) else ""
        sys.exit(f"error: {e}{hint}")
    started = time.time()
    kappas = args.confidences or list(datasets.get(args.dataset).kappa_grid)
    settings = attack_settings(args)

    x_all = data.to_float(split.images)
    chosen = evaluation.first_correct(pre.logits_fn, x_all, split.labels, args.num_examples)
    if len(chosen) < args.num_examples:
        sys.exit(
            f"error: --num-examples {args.num_examples}: the classifier gets only "
            f"{len(chosen)} of the {len(x_all)} test images right"
        )
    x, y = x_all[chosen], split.labels[chosen]
    attack_labels = adversarial_cache.attack_labels(
        y, datasets.get(args.dataset).num_classes, args.targeted
    )
    attack = attack_registry.get(args.attack).resolve()
    # another classifier's examples are never read as this one's (SettingsMismatch)
    own = pre.classifier_entry()
    cache = AdversarialCache(cache_dir, tuple(chosen.tolist()), {**settings, **own}, log=tqdm.write)

    try:
        crafted = sweep_eval.craft_sweep(
            cache, attack, pre.logits_fn, x, attack_labels, kappas, settings, args.batch_size,
            machine=provenance.machine(), name=name,
        )  # fmt: skip
    except adversarial_cache.SettingsMismatch as e:
        sys.exit(f"error: {e}")
    if args.craft_only:
        return

    defenses = evaluation.defense_suite(
        pre.logits_fn,
        pre.remix,
        magnet,
        components.magnet_official_names(args.dataset) if magnet is not None else (),
        args.iterations,
    )
    # every scored kappa is kept until the result is written: a killed scoring resumes
    networks = [pre.classifier_params, pre.remix] + ([magnet] if magnet is not None else [])
    weights = progress.fingerprint(*networks)
    identity = sweep_eval.scoring_identity(
        settings, chosen.tolist(), args.num_keys, defenses, pre.remix, weights
    )
    scoring = progress.ProgressFile(out + ".progress.json", identity)
    clean_rows, rows = sweep_eval.score_sweep(
        defenses, x, y, crafted, args.num_keys, scoring, lambda k: tqdm(k, desc="scoring")
    )
    result = {
        "dataset": args.dataset,
        "attack": name,
        "settings": settings,
        "num_examples": len(y),
        "num_keys": args.num_keys,
        "clean": clean_rows,
        "rows": rows,
        "data_source": split.source,
        **({"inpainter": args.inpainter} if args.inpainter else {}),
        **own,
        "wall_seconds": round(time.time() - started, 1),
        **provenance.stamp(),
    }
    print(sweep_report.markdown(result, list(defenses)))
    provenance.write_unless_reproduced(
        out, result, lambda path, res: sweep_report.write_outputs(path, res, list(defenses))
    )
    scoring.finish()


if __name__ == "__main__":
    main()
