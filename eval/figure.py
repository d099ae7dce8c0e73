"""The paper's Fig. 2 from the committed sweeps: ``python -m eval.figure``.

One panel per (dataset, attack) whose sweep result exists under --root
(``<root>/<dataset>/<attack>.json``, written by ``python -m eval.sweep``): rows are
datasets, columns attacks, as in the paper; each panel is the accuracy on all
crafted examples against kappa, one line per defense (mean +- std over the keys of
the randomized defenses). Missing sweeps are named and left out; with none at all
the command fails. Writes --out (PNG, and PDF beside it), atomically.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from remix_jax import result_files
from remix_jax.cli import HelpFormatter, add_dataset_flag, check_output_path


def find_panels(root: str, datasets: list[str], attacks: list[str]) -> tuple[list, list]:
    """(dataset, attack, result) for each sweep found, and the paths that were missing."""
    found, missing = [], []
    for dataset in datasets:
        for attack in attacks:
            path = os.path.join(root, dataset, f"{attack}.json")
            if os.path.isfile(path):
                with open(path) as f:
                    found.append((dataset, attack, json.load(f)))
            else:
                missing.append(path)
    return found, missing


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=HelpFormatter)
    p.add_argument("--root", default="results", help="folder holding <dataset>/<attack>.json")
    add_dataset_flag(p, many=True)
    p.add_argument("--attacks", nargs="+", default=["cw", "ead"])
    p.add_argument("--out", default=None, help="PNG path (default <root>/fig2.png)")
    args = p.parse_args(argv)
    out = args.out or os.path.join(args.root, "fig2.png")
    check_output_path(out)

    found, missing = find_panels(args.root, args.datasets, args.attacks)
    for path in missing:
        print(f"not found, left out: {path}", file=sys.stderr)
    if not found:
        sys.exit("error: no sweep results found; run python -m eval.sweep first")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from remix_jax.sweep_report import LEGEND, defenses_of, plot_panel

    datasets = [d for d in args.datasets if any(f[0] == d for f in found)]
    attacks = [a for a in args.attacks if any(f[1] == a for f in found)]
    fig, axes = plt.subplots(
        len(datasets),
        len(attacks),
        squeeze=False,
        figsize=(4.6 * len(attacks), 3.4 * len(datasets) + 0.8),
    )
    panels = {(d, a): r for d, a, r in found}
    labels = {}
    for i, dataset in enumerate(datasets):
        for j, attack in enumerate(attacks):
            ax = axes[i][j]
            if (dataset, attack) not in panels:
                ax.set_axis_off()
                ax.text(0.5, 0.5, f"{dataset}, {attack}: not run yet", ha="center")
                continue
            result = panels[dataset, attack]
            plot_panel(ax, result)
            for d in defenses_of(result):
                labels.setdefault(LEGEND.get(d, d), None)
    handles = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    fig.legend(
        [handles[k] for k in labels],
        list(labels),
        loc="lower center",
        ncol=min(4, len(labels)),
        fontsize=8,
        frameon=False,
    )
    fig.tight_layout(rect=(0, 0.12 if len(labels) > 4 else 0.07, 1, 1))
    stem, _ = os.path.splitext(out)
    drawn = {"layout": [datasets, attacks], "panels": found}  # what the figure shows
    written = [
        result_files.save_figure(fig, path, data=drawn, close=False, dpi=150)
        for path in (out, stem + ".pdf")
    ]
    plt.close(fig)
    kept = "" if any(written) else ": the same sweeps drew it, kept as it was"
    print(f"-> {out} ({len(found)} panel(s)){kept}")


if __name__ == "__main__":
    main()
