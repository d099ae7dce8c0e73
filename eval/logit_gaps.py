"""How confident a shipped classifier's logits are: ``python -m eval.logit_gaps``.

CW and EAD measure confidence kappa as a logit margin, so a kappa grid means
something only relative to the margins the classifier produces on clean images.
This reports, over the first --limit test images, the distribution of the gap
between the top two logits (and of the true-class margin) for each --dataset, and
for extra classifier checkpoints given with --classifier (to compare candidates).
Writes results/logit-gaps.{json,md}, atomically.
"""

from __future__ import annotations

import argparse
import os
import sys

from remix_jax import datasets
from remix_jax.cli import (
    DATA_DIR_HELP,
    HelpFormatter,
    add_dataset_flag,
    check_output_path,
    positive_int,
)


def gaps(logits, labels):
    """(top-1 minus top-2 logit, true logit minus best other) per image."""
    import numpy as np

    ordered = np.sort(logits, axis=-1)
    true = np.take_along_axis(logits, labels[:, None], -1)[:, 0]
    other = np.where(np.eye(logits.shape[-1], dtype=bool)[labels], -np.inf, logits).max(-1)
    return ordered[:, -1] - ordered[:, -2], true - other


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    add_dataset_flag(p, many=True)
    p.add_argument(
        "--classifier",
        nargs="*",
        default=[],
        metavar="DATASET=FOLDER|MODULE:FUNCTION",
        help="extra classifiers, each a checkpoint folder or package.module:function (a "
        "logits_fn), e.g. cifar10=checkpoints/cifar10/ablation/x",
    )
    p.add_argument("--limit", type=positive_int, default=1000, help="first N test images")
    p.add_argument("--data-dir", default=None, help=DATA_DIR_HELP)
    p.add_argument(
        "--out", default="results/logit-gaps", help="output path without extension (.json and .md)"
    )
    args = p.parse_args(argv)
    extra = []
    for item in args.classifier:
        dataset, _, folder = item.partition("=")
        if dataset not in datasets.names() or not folder:
            sys.exit(f"error: --classifier wants DATASET=FOLDER|MODULE:FUNCTION, got {item!r}")
        extra.append((dataset, folder))
    check_output_path(args.out)

    from remix_jax import runtime

    runtime.configure()
    import jax
    import numpy as np

    from remix_jax import components, data, provenance, result_files
    from remix_jax.pretrained import protected_classifier

    runs = [(d, components.checkpoint_dir(d, "classifier")) for d in args.datasets] + extra
    rows = []
    for dataset, classifier in runs:
        try:
            *_, logits_fn, _ = protected_classifier(dataset, classifier)
            images, labels = data.load(dataset, "test", args.data_dir)
        except (FileNotFoundError, ValueError) as e:
            sys.exit(f"error: {e}")
        logits = np.asarray(jax.jit(logits_fn)(data.to_float(images[: args.limit])))
        top2, margin = gaps(logits, labels[: args.limit])
        right = margin > 0
        rows.append(
            {
                "dataset": dataset,
                "classifier": os.path.relpath(classifier)
                if os.path.isdir(classifier)
                else classifier,
                "images": len(top2),
                # 4 decimals: the float32 logits differ in the 6th digit between CPUs,
                # so a rerun elsewhere reproduces the committed file
                "accuracy": round(float(right.mean() * 100), 4),
                **{f"top2_gap_p{q}": round(float(np.percentile(top2, q)), 4) for q in (10, 50, 90)},
                "top2_gap_max": round(float(top2.max()), 4),
                "true_margin_median_if_right": round(float(np.median(margin[right])), 4),
            }
        )
    result = {"rows": rows, **provenance.stamp()}
    lines = [
        "# Logit gaps of the classifiers",
        "",
        f"`{result['command']}` on {result['machine']} (commit "
        f"{result['git_commit'][:10]}). Gap = top-1 minus top-2 logit on the first "
        f"test images; CW/EAD's kappa is such a margin.",
        "",
        "| dataset | classifier | images | accuracy (%) | gap p10 | gap median | gap p90 "
        "| gap max |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['dataset']} | {r['classifier']} | {r['images']} | "
            f"{r['accuracy']:.1f} | {r['top2_gap_p10']:.2f} | {r['top2_gap_p50']:.2f} | "
            f"{r['top2_gap_p90']:.2f} | {r['top2_gap_max']:.2f} |"
        )
    print("\n".join(lines))

    def write(out, result):  # each file atomically
        result_files.write_json(out + ".json", result)
        result_files.write_text(out + ".md", "\n".join(lines) + "\n")

    provenance.write_unless_reproduced(args.out, result, write)  # a rerun keeps the files


if __name__ == "__main__":
    main()
