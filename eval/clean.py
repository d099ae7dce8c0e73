"""Clean test accuracy of the classifier behind each defense: ``python -m eval.clean``.

Rows: classifier alone; + REMIX's reformer; + MagNet's reformer; MagNet (detectors +
reformer: a rejected clean image counts as an error; its rejection rate is reported);
APE-GAN and Defense-GAN with --apegan / --defensegan; REMIX mask-inpaint (K = 1, 2,
3), without and with the reformer. Randomized rows (REMIX, Defense-GAN): mean
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

from remix_jax import cli, datasets


def parse(argv) -> argparse.Namespace:
    p = cli.parser(__doc__)
    cli.add_dataset_flag(p)
    p.add_argument(
        "--inpainter",
        type=cli.existing_folder,
        default=None,
        help="use this inpainter checkpoint folder instead of the shipped one",
    )
    p.add_argument("--num-keys", type=cli.positive_int, default=5, help="keys per randomized row")
    cli.add_seed_flag(p)
    p.add_argument(
        "--iterations",
        type=cli.rounds,
        nargs="+",
        default=[1, 2, 3],
        help="mask-inpaint rounds K to score (one row each)",
    )
    p.add_argument(
        "--num-masks",
        type=cli.mask_count,
        default=None,
        help="masks per round (default: what the inpainter was trained with)",
    )
    p.add_argument("--limit", type=cli.positive_int, default=None, help="first N test images only")
    cli.add_baseline_flags(p)
    cli.add_output_flags(p, out="results/<dataset>/clean", cache=None)
    args = p.parse_args(argv)
    cli.require_with_classifier(p, args, "--out")
    return args


def score(suite: dict, x, y, num_keys: int, n_masks: int, seed: int = 0) -> list[dict]:
    """One row per defense: accuracy (%) on (x, y), mean and spread over ``num_keys``
    evaluation keys of ``seed`` for a randomized one, and the share rejected for a
    detector."""
    import numpy as np
    from tqdm import tqdm

    from remix_jax import evaluation

    rows = []
    for name, defense in tqdm(suite.items(), desc="defenses"):
        accs = [float(np.mean(r)) for r in defense.correct_over_keys(x, y, False, num_keys, seed)]
        name = name.replace("mask-inpaint", f"mask-inpaint n={n_masks}")
        row = (
            {"defense": name, **evaluation.summarize(accs)}
            if defense.randomized
            else {"defense": name, "accuracy": accs[0] * 100}
        )
        if defense.reject is not None:
            row["rejected"] = float(defense.reject(None, x).mean() * 100)
        rows.append(row)
    return rows


def main(argv=None) -> None:
    args = parse(argv)
    cli.check_output_path(args.out or os.path.join("results", args.dataset, "clean"))
    from remix_jax import runtime

    runtime.configure()
    from remix_jax import data, eval_inputs, progress, provenance
    from remix_jax.masking import num_positions
    from remix_jax.pretrained import load_pretrained

    with cli.exit_on_load_errors():
        split = data.load_split(args.dataset, "test", args.data_dir)
        pre = load_pretrained(
            args.dataset, args.checkpoint_root, inpainter=args.inpainter, classifier=args.classifier
        )
    trained_masks = pre.remix.n_masks
    if args.num_masks is not None:
        positions = num_positions(datasets.get(args.dataset).image_shape, pre.remix.per_channel)
        if args.num_masks > positions:  # checked before minutes of scoring, not after
            sys.exit(f"error: --num-masks must be <= {positions} (the image's positions)")
        pre = pre._replace(remix=pre.remix.replace(n_masks=args.num_masks))
    x = data.to_float(split.images[: args.limit])
    y = split.labels[: args.limit]
    started = time.time()
    baselines = cli.load_baselines(args)
    suite = eval_inputs.defense_suite(args.dataset, pre, baselines, args.iterations)
    rows = score(suite, x, y, args.num_keys, pre.remix.n_masks, args.seed)
    inpainter_dir = os.path.abspath(args.inpainter) if args.inpainter else None
    result = {
        "dataset": args.dataset,
        "images": len(x),
        "seed": args.seed,
        "rows": rows,
        **pre.classifier_entry(),
        "inpainter_checkpoint": inpainter_dir,
        "inpainter_config": pre.remix.inpainter_config.__dict__,
        # which weights made the numbers (a test ties the committed table to the shipped ones)
        "inpainter_weights": progress.fingerprint(pre.remix.inpainter),
        "reformer_weights": progress.fingerprint(pre.remix.reformer),
        "inpainter_trained_masks": trained_masks,
        "num_masks": pre.remix.n_masks,
        **baselines.settings(),
        "data_source": split.source,
        **provenance.finished(started),
    }
    out = args.out or os.path.join("results", args.dataset, "clean")
    provenance.publish(out, result, markdown, write_outputs)


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
