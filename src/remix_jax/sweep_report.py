"""The Fig. 2 sweep's result rendered: JSON, CSV, Markdown tables and the plot.

``result`` is what ``python -m eval.sweep`` writes (``results/<dataset>/<attack>.json``):
settings, provenance, the clean accuracy per defense and one row per kappa with the
attack's success and each defense's accuracy (mean and spread over keys) on the
fooled and on all images. These functions only read it, so any result renders again
without recomputing (``eval.sweep --render-only``, ``eval.figure``).
"""

from __future__ import annotations

import json

from remix_jax import result_files

# plot labels that say whose component a row is
LEGEND = {
    "none": "no defense",
    "reformer": "REMIX reformer",
    "MagNet": "MagNet (detectors + reformer)",
}
# one colour per defense in every plot, whichever defenses a sweep scored
COLORS = {
    "none": "tab:gray",
    "reformer": "tab:orange",
    "MagNet reformer": "tab:green",
    "MagNet": "tab:red",
    "MagNet + JSD": "tab:purple",
    "mask-inpaint K=1": "tab:brown",
    "reformer + mask-inpaint K=1": "tab:pink",
    "mask-inpaint K=2": "tab:olive",
    "reformer + mask-inpaint K=2": "tab:cyan",
    "mask-inpaint K=3": "tab:blue",
    "reformer + mask-inpaint K=3": "black",
}


def write_outputs(out: str, result: dict, defenses: list[str]) -> None:
    """JSON, CSV (mean accuracy on fooled examples per defense), Markdown tables and the
    Fig. 2 plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    result_files.write_json(out + ".json", result, newline=False)
    header = ["confidence", "attack_success", "fooled", "mean_l2"]
    header += [f"{d} | fooled" for d in defenses] + [f"{d} | all" for d in defenses]
    lines = [",".join(f'"{h}"' for h in header)]
    for row in result["rows"]:
        cells = []
        for h in header:
            v = row[h]
            cells.append(
                "" if v is None else f"{v['mean']:.2f}" if isinstance(v, dict) else f"{v:.4g}"
            )
        lines.append(",".join(cells))
    result_files.write_text(out + ".csv", "\n".join(lines) + "\n")
    result_files.write_text(out + ".md", markdown(result, defenses))
    fig, ax = plt.subplots(figsize=(7.2, 3.6))
    plot_panel(ax, result, defenses)
    result_files.legend_beside(ax)
    fig.tight_layout()
    result_files.save_figure(fig, out + ".png", dpi=150)


def render_again(out: str) -> None:
    """Rewrites ``<out>``'s CSV, Markdown and plot from its JSON (after a change to the
    rendering; the numbers are not touched).

    Raises:
      FileNotFoundError: there is no ``<out>.json``.
    """
    with open(out + ".json") as f:
        result = json.load(f)
    write_outputs(out, result, defenses_of(result))


def markdown(result: dict, defenses: list[str] | None = None) -> str:
    """The result as Markdown tables: accuracy (mean +- std over keys) per kappa."""
    defenses = defenses or defenses_of(result)

    def cell(v):
        if v is None:
            return "-"
        return f"{v['mean']:.1f}" + (f" +- {v['std']:.1f}" if v.get("runs", 1) > 1 else "")

    settings = ", ".join(f"{k} {v}" for k, v in result["settings"].items())
    lines = [
        f"# {result['dataset']}, {result['attack']}: accuracy (%) vs confidence",
        "",
        f"`{result['command']}` on {result['machine']} (commit {result['git_commit'][:10]}, "
        f"{result['date']}, {result['wall_seconds']:.0f} s); data: {result['data_source']}; "
        f"{result['num_examples']} images; {settings}; randomized defenses over "
        f"{result['num_keys']} keys.",
        "",
        "Accuracy on all crafted examples, each scored as the attack returned it (also "
        "where it missed kappa); a MagNet rejection counts as defended. Attack success is "
        "re-checked here in full float32 (margin >= kappa, wrong argmax):",
        "",
    ]
    # examples crafted elsewhere may pass the success test there and not here
    elsewhere = any(
        r["attack_success_where_crafted"] != r["attack_success"] for r in result["rows"]
    )
    extra = ["success where crafted"] if elsewhere else []
    header = ["kappa", "attack success", *extra, "mean L2", *(LEGEND.get(d, d) for d in defenses)]
    lines += [
        "| " + " | ".join(header) + " |",
        "|---" * len(header) + "|",
        "| clean | - | "
        + "- | " * len(extra)
        + "- | "
        + " | ".join(cell(result["clean"][d]) for d in defenses)
        + " |",
    ]
    for row in result["rows"]:
        l2 = "-" if row["mean_l2"] is None else f"{row['mean_l2']:.3f}"
        crafted = [f"{row['attack_success_where_crafted']:.1f}"] if elsewhere else []
        lines.append(
            "| "
            + " | ".join(
                [
                    f"{row['confidence']:g}",
                    f"{row['attack_success']:.1f}",
                    *crafted,
                    l2,
                    *(cell(row[f"{d} | all"]) for d in defenses),
                ]
            )
            + " |"
        )
    timed = [r for r in result["rows"] if r.get("craft_seconds")]
    if timed:
        lines += [
            "",
            "Crafting time per kappa: "
            + "; ".join(
                f"{r['confidence']:g}: {r['craft_seconds'] / 60:.0f} min "
                f"({r['craft_images_timed']} images timed)"
                for r in timed
            )
            + ".",
        ]
    return "\n".join(lines) + "\n"


def defenses_of(result: dict) -> list[str]:
    """The defenses a sweep result scored, in its column order."""
    return [k[: -len(" | all")] for k in result["rows"][0] if k.endswith(" | all")]


def plot_panel(ax, result: dict, defenses: list[str] | None = None) -> None:
    """Accuracy on all crafted examples vs kappa, one line per defense (mean +- std)."""
    kappas = [r["confidence"] for r in result["rows"]]
    for d in defenses or defenses_of(result):
        means = [r[f"{d} | all"]["mean"] for r in result["rows"]]
        stds = [r[f"{d} | all"]["std"] for r in result["rows"]]
        ax.errorbar(
            kappas,
            means,
            yerr=stds,
            marker="o",
            ms=3,
            capsize=2,
            label=LEGEND.get(d, d),
            color=COLORS.get(d),
        )
    ax.set_xlabel("confidence $\\kappa$")
    ax.set_ylabel("accuracy on adversarial examples (%)")
    result_files.accuracy_axes(
        ax,
        f"{result['dataset']}, {result['attack']}: all {result['num_examples']} crafted examples",
    )
