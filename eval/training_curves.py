"""Validation curves of a dataset's shipped models: ``python -m eval.training_curves``.

Reads the per-epoch validation metrics every training run stores in its checkpoint's
``meta.json`` (``checkpoints/<dataset>/<component>/``: classifier, reformer,
inpainter, MagNet's autoencoders) and draws one panel per component: the curves
that show whether a run had converged when it stopped. Nothing is recomputed.
Writes ``results/<dataset>/training.png`` and ``training.md`` (final metrics, epochs,
training time, machine), atomically.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys

from remix_jax import result_files
from remix_jax.cli import (
    CHECKPOINT_ROOT_HELP,
    HelpFormatter,
    add_dataset_flag,
    check_output_path,
    existing_folder,
)

# what each panel plots from a history entry
PANEL_METRICS = {
    "classifier": ("accuracy",),
    "reformer": ("mse_noisy", "mse_clean"),
    "inpainter": ("mse_hidden",),
}
MAGNET_METRICS = ("mse_noisy", "mse_clean")


def find_runs(root: str) -> list[tuple[str, dict]]:
    """(component name, meta.json) of every training run under ``root`` that has a history."""
    from remix_jax import checkpoints

    runs = []
    folders = [os.path.join(root, c) for c in PANEL_METRICS]
    folders += sorted(glob.glob(os.path.join(root, "magnet", "*")))
    for folder in folders:
        try:
            meta = checkpoints.read_metadata(folder)
        except FileNotFoundError:
            continue
        if meta.get("history"):
            name = os.path.relpath(folder, root).replace(os.sep, " ")
            runs.append((name, meta))
    return runs


def table(dataset: str, runs: list[tuple[str, dict]]) -> str:
    lines = [
        f"# Training runs of the shipped {dataset} models",
        "",
        "`python -m eval.training_curves --dataset " + dataset + "` (from each "
        "checkpoint's meta.json; validation = held-out training images, test = the "
        "test split).",
        "",
        "| component | command | epochs done/planned | train time | machine "
        "| last validation | test |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, meta in runs:
        last = {k: v for k, v in meta["history"][-1].items() if k not in ("epoch", "step")}
        test = {k: v for k, v in meta.get("test", {}).items() if k != "images"}
        fmt = ", ".join
        minutes = meta.get("train_seconds", float("nan")) / 60
        lines.append(
            f"| {name} | `{meta.get('command', '?')}` | {meta['history'][-1]['epoch']}"
            f"/{meta.get('train', {}).get('epochs', '?')} | "
            f"{minutes:.1f} min | {meta.get('machine', '?')} | "
            f"{fmt(f'{k} {v:.4g}' for k, v in last.items())} | "
            f"{fmt(f'{k} {v:.4g}' for k, v in test.items())} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    add_dataset_flag(p)
    p.add_argument(
        "--checkpoint-root", type=existing_folder, default=None, help=CHECKPOINT_ROOT_HELP
    )
    p.add_argument("--out", default=None, help="default: results/<dataset>/training")
    args = p.parse_args(argv)
    out = args.out or os.path.join("results", args.dataset, "training")
    check_output_path(out)

    from remix_jax import components

    root = components.checkpoint_dir(args.dataset, "", args.checkpoint_root).rstrip(os.sep)
    runs = find_runs(root)
    if not runs:
        sys.exit(f"error: no trained model with a history under {root}")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(runs), figsize=(3.6 * len(runs), 3.2), squeeze=False)
    for ax, (name, meta) in zip(axes[0], runs, strict=True):
        metrics = PANEL_METRICS.get(name, MAGNET_METRICS)
        epochs = [h["epoch"] for h in meta["history"]]
        for metric in metrics:
            ax.plot(
                epochs,
                [h.get(metric, float("nan")) for h in meta["history"]],
                marker=".",
                label=metric,
            )
        if name != "classifier":
            ax.set_yscale("log")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("validation metric")
    fig.tight_layout()
    drawn = [[name, meta["history"]] for name, meta in runs]  # what the curves show
    drew = result_files.save_figure(fig, out + ".png", data=drawn, dpi=130)
    result_files.write_text(out + ".md", table(args.dataset, runs))
    kept = "" if drew else " (the png already showed these histories: kept)"
    print(f"{len(runs)} runs -> {out}.png, {out}.md{kept}")


if __name__ == "__main__":
    main()
