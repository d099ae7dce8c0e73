"""REMIX at work, one row per test image: clean, adversarial, reformer, masks, inpainted, combined.

    python -m eval.visualize --dataset mnist [--attack cw|ead] [--confidence K] [--index I ...]

Oblivious setting: x' is crafted on the bare classifier, and the figure follows it
through the stages of :func:`remix_jax.defense.defend` with the reformer: r(x'), the n
masked copies, the inpainted copies, their combination (and the result after K rounds
with --iterations), then the perturbation x' - x. :mod:`remix_jax.stages_figure`
computes and draws them; each classified image is labelled "prediction (softmax
confidence)".

Adversarial images come from the sweep cache
``results/<dataset>/cache/<attack>/kappa_<K>.npz`` (eval.sweep, the paper's strong
settings), else the CPU preset's ``<attack>-cpu``, where it holds the requested test
image, and are otherwise crafted here with fast settings; the subtitle says which.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from remix_jax import attack_registry
from remix_jax.cli import (
    HelpFormatter,
    add_classifier_flag,
    add_dataset_flag,
    add_search_attack_flags,
    add_source_flags,
    check_output_path,
    nonnegative_float,
    nonnegative_int,
    require_with_classifier,
    rounds,
    seed,
)

DEFAULT_ROWS = 3


def parse(argv) -> argparse.Namespace:
    """The command line, checked; argparse exits with a message on bad values."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    add_dataset_flag(p)
    p.add_argument("--attack", choices=attack_registry.names("confidence"), default="cw")
    p.add_argument(
        "--confidence",
        type=nonnegative_float,
        default=30.0,
        help="kappa (MNIST sweep caches exist for 5..40; at 30 the reformer alone fails)",
    )
    p.add_argument(
        "--index",
        type=nonnegative_int,
        nargs="+",
        default=None,
        help=f"test-set indices (default: the first {DEFAULT_ROWS} the classifier gets right)",
    )
    p.add_argument(
        "--iterations",
        type=rounds,
        default=1,
        help="mask-inpaint rounds K; K > 1 adds a column with the result",
    )
    p.add_argument(
        "--seed", type=seed, default=0, help="seed of the masks (remix_jax.keys purpose 'masks')"
    )
    p.add_argument(
        "--out",
        default=None,
        help="PNG path, the PDF gets the same stem (default: results/<dataset>/remix_at_work.png)",
    )
    add_source_flags(p)
    add_classifier_flag(p)
    p.add_argument(
        "--cache-dir",
        default=None,
        help="sweep cache folder (default: results/<dataset>/cache/<attack>, then <attack>-cpu; "
        "none with --classifier)",
    )
    p.add_argument("--no-cache", action="store_true", help="always craft on the fly")
    # settings of on-the-fly crafting: fast, not the paper's 9 x 10000
    add_search_attack_flags(p, initial_const=1.0, budget=(3, 1000))
    args = p.parse_args(argv)
    require_with_classifier(p, args, "--out")
    if args.index is not None and len(set(args.index)) != len(args.index):
        p.error("--index values must be distinct")
    if args.out is not None and os.path.splitext(args.out)[1].lower() not in ("", ".png"):
        p.error("--out must be a .png path (the PDF gets the same stem)")
    return args


def _start_runtime() -> None:
    """Sets the XLA CPU flags; keeps going if JAX already runs in this process.

    That happens when ``main`` is called from a test or a notebook: the flags only
    make convolutions faster, so the figure is the same without them.
    """
    from remix_jax import runtime

    with contextlib.suppress(RuntimeError):
        runtime.configure()
    runtime.use_full_precision()  # judge cached examples as eval.sweep does


def cache_paths(args) -> list[str]:
    """The cache files to look in: --cache-dir's, else the reference settings' folder
    then the CPU preset's (see eval.sweep); none with --no-cache, and with --classifier
    only --cache-dir's (the default caches hold the dataset classifier's examples)."""
    from remix_jax import adversarial_cache

    if args.no_cache or (args.classifier and not args.cache_dir):
        return []
    folders = (
        [args.cache_dir]
        if args.cache_dir
        else [
            adversarial_cache.default_folder(args.dataset, args.attack, preset)
            for preset in ("paper", "cpu")
        ]
    )
    return [os.path.join(f, adversarial_cache.file_name(args.confidence)) for f in folders]


def crafter(args, logits_fn):
    """Untargeted CW-L2 or EAD with the CLI's (fast) settings, and a line saying so.

    Returns:
      (``craft(x, y) -> x'``, description of the settings).
    """
    import numpy as np

    spec = attack_registry.get(args.attack)
    own = spec.own_settings(args)
    settings = {
        "confidence": args.confidence,
        "binary_search_steps": args.binary_search_steps,
        "max_iterations": args.max_iterations,
        "initial_const": args.initial_const,
        **own,
    }

    def craft(x, y):
        return np.asarray(spec.resolve()(logits_fn, x, y, **settings).adversarial)

    beta = f", β {own['beta']:g}" if "beta" in own else ""
    const = args.initial_const  # a number, or "linear"
    const = f"{const:g}" if isinstance(const, float) else const
    note = (
        f"crafted here ({args.binary_search_steps} x {args.max_iterations} steps, "
        f"initial c {const}{beta})"
    )
    return craft, note


def main(argv=None) -> None:
    """Draws the figure of ``argv`` (default: the command line) to --out and its PDF."""
    args = parse(argv)
    out = args.out or os.path.join("results", args.dataset, "remix_at_work.png")
    check_output_path(out)
    _start_runtime()

    from remix_jax import data, keys, progress, stages_figure
    from remix_jax.pretrained import load_pretrained

    try:
        pre = load_pretrained(args.dataset, args.checkpoint_root, classifier=args.classifier)
        split = data.load_split(args.dataset, "test", args.data_dir)
        x_all = data.to_float(split.images)
        indices = stages_figure.choose_indices(
            args.index, pre.logits_fn, x_all, split.labels, DEFAULT_ROWS
        )
    except (FileNotFoundError, ValueError, NotImplementedError) as e:
        sys.exit(f"error: {e}")
    x, y = x_all[indices], split.labels[indices]
    craft, crafted_note = crafter(args, pre.logits_fn)
    x_adv, source = stages_figure.adversarial_images(
        indices, x, y, cache_paths(args), craft, crafted_note
    )
    print(source)
    stages = stages_figure.remix_stages(
        pre.remix, keys.purpose_key(args.seed, "masks"), x_adv, args.iterations
    )
    columns = stages_figure.build_columns(pre.logits_fn, x, x_adv, stages, args.iterations)
    title, subtitle = stages_figure.titles(
        args.dataset, args.attack, args.confidence, pre.remix.n_masks, source, args.seed
    )
    fig = stages_figure.draw(columns, indices, y, title, subtitle)
    inputs = {  # what the pixels are a function of, beside the texts
        "weights": progress.fingerprint(pre.classifier_params, pre.remix),
        "adversarial": progress.fingerprint(x_adv),
        "iterations": args.iterations,
    }
    shown = stages_figure.drawn(columns, indices, y, title, subtitle, inputs)
    written = stages_figure.save_atomically(fig, out, shown)
    print("-> " + " / ".join(written) if written else f"{out}: already shows this, kept")


if __name__ == "__main__":
    main()
