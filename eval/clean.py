"""Clean test accuracy of the classifier behind each defense: ``python -m eval.clean``.

Rows: classifier alone; + REMIX's reformer; + MagNet's reformer; MagNet (detectors +
reformer: a rejected clean image counts as an error; its rejection rate is reported);
REMIX mask-inpaint (K = 1, 2, 3), without and with the reformer. Randomized rows: mean
and spread over --num-keys keys. ``--num-masks`` runs the inpainter with another number
of masks than it was trained for (an ablation: fewer hidden pixels per copy). Writes
``results/<dataset>/clean.json`` and ``clean.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from remix_jax import datasets
from remix_jax.cli import (
    CHECKPOINT_ROOT_HELP,
    DATA_DIR_HELP,
    HelpFormatter,
    add_classifier_flag,
    add_dataset_flag,
    check_output_path,
    existing_folder,
    mask_count,
    positive_int,
    require_with_classifier,
)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    add_dataset_flag(p)
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.add_argument(
        "--checkpoint-root", type=existing_folder, default=None, help=CHECKPOINT_ROOT_HELP
    )
    p.add_argument(
        "--inpainter",
        type=existing_folder,
        default=None,
        help="use this inpainter checkpoint folder instead of the shipped one",
    )
    add_classifier_flag(p)
    p.add_argument("--num-keys", type=positive_int, default=5, help="keys per randomized row")
    p.add_argument(
        "--iterations",
        type=positive_int,
        nargs="+",
        default=[1, 2, 3],
        help="mask-inpaint rounds K to score (one row each)",
    )
    p.add_argument(
        "--num-masks",
        type=mask_count,
        default=None,
        help="masks per round (default: what the inpainter was trained with)",
    )
    p.add_argument("--limit", type=positive_int, default=None, help="first N test images only")
    p.add_argument("--no-magnet", action="store_true", help="leave out the MagNet rows")
    p.add_argument("--out", default=None, help="default: results/<dataset>/clean")
    args = p.parse_args(argv)
    require_with_classifier(p, args, "--out")

    check_output_path(args.out or os.path.join("results", args.dataset, "clean"))
    from remix_jax import runtime

    runtime.configure()
    import numpy as np
    from tqdm import tqdm

    from remix_jax import data, eval_inputs, evaluation, provenance
    from remix_jax.masking import num_positions
    from remix_jax.pretrained import load_magnet, load_pretrained

    try:
        split = data.load_split(args.dataset, "test", args.data_dir)
        pre = load_pretrained(
            args.dataset, args.checkpoint_root, inpainter=args.inpainter, classifier=args.classifier
        )
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"error: {e}")
    trained_masks = pre.remix.n_masks
    if args.num_masks is not None:
        positions = num_positions(datasets.get(args.dataset).image_shape, pre.remix.per_channel)
        if args.num_masks > positions:  # checked before minutes of scoring, not after
            sys.exit(f"error: --num-masks must be <= {positions} (the image's positions)")
        pre = pre._replace(remix=pre.remix.replace(n_masks=args.num_masks))
    x = data.to_float(split.images[: args.limit])
    y = split.labels[: args.limit]
    started = time.time()

    try:
        magnet = None if args.no_magnet else load_magnet(args.dataset, args.checkpoint_root)
    except FileNotFoundError as e:
        sys.exit(f"error: {e} (or leave MagNet out with --no-magnet)")
    suite = eval_inputs.defense_suite(args.dataset, pre, magnet, args.iterations)
    rows = []
    for name, defense in tqdm(suite.items(), desc="defenses"):
        accs = [float(np.mean(r)) for r in defense.correct_over_keys(x, y, False, args.num_keys)]
        name = name.replace("mask-inpaint", f"mask-inpaint n={pre.remix.n_masks}")
        row = (
            {"defense": name, **evaluation.summarize(accs)}
            if defense.randomized
            else {"defense": name, "accuracy": accs[0] * 100}
        )
        if defense.reject is not None:
            row["rejected"] = float(defense.reject(None, x).mean() * 100)
        rows.append(row)
    inpainter_dir = os.path.abspath(args.inpainter) if args.inpainter else None
    result = {
        "dataset": args.dataset,
        "images": len(x),
        "rows": rows,
        **pre.classifier_entry(),
        "inpainter_checkpoint": inpainter_dir,
        "inpainter_config": pre.remix.inpainter_config.__dict__,
        "inpainter_trained_masks": trained_masks,
        "num_masks": pre.remix.n_masks,
        "data_source": split.source,
        "wall_seconds": round(time.time() - started, 1),
        **provenance.stamp(),
    }
    out = args.out or os.path.join("results", args.dataset, "clean")
    print(markdown(result))
    provenance.write_unless_reproduced(out, result, write_outputs)


def write_outputs(out: str, result: dict) -> None:
    """JSON and Markdown, each written atomically."""
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    text = markdown(result)
    for path, content in (
        (f"{out}.json", json.dumps(result, indent=2) + "\n"),
        (f"{out}.md", text),
    ):
        with open(path + ".tmp", "w") as f:
            f.write(content)
        os.replace(path + ".tmp", path)


def markdown(result: dict) -> str:
    lines = [
        f"Clean test accuracy, {result['dataset']}, {result['images']} test images "
        f"(`{result['command']}`; {result['machine']})",
        "",
        "| defense | accuracy (%) | spread over keys | clean images rejected (%) |",
        "|---|---|---|---|",
    ]
    for row in result["rows"]:
        rejected = f"{row['rejected']:.2f}" if "rejected" in row else ""
        if "mean" in row:
            lines.append(
                f"| {row['defense']} | {row['mean']:.2f} | ± {row['std']:.2f} (min "
                f"{row['min']:.2f}, max {row['max']:.2f}, {row['runs']} keys) | |"
            )
        else:
            lines.append(
                f"| {row['defense']} | {row['accuracy']:.2f} | deterministic | {rejected} |"
            )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
