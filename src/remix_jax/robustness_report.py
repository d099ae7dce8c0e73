"""A robustness evaluation rendered: Markdown tables and robust accuracy vs budget.

The result is the dict ``eval.robustness`` writes as JSON (built by
:func:`remix_jax.robustness_eval.evaluate`); rendering it again from the JSON gives
the same files. JAX-free; matplotlib is imported only to draw.
"""

from __future__ import annotations

from remix_jax import datasets, result_files

NAMES = {"none": "bare classifier"}


def _value(v) -> str:
    """A setting as the table shows it: sequences space-separated (a tuple in the run,
    a list in its JSON render the same)."""
    if isinstance(v, list | tuple):
        return " ".join(datasets.format_epsilon(x) if isinstance(x, float) else str(x) for x in v)
    return str(v)


def _accuracy(a: dict | None) -> str:
    if a is None:
        return "-"
    return f"{a['mean']:.1f}" + (f" +- {a['std']:.1f}" if a["runs"] > 1 else "")


def markdown(result: dict) -> str:
    """The result as Markdown: clean accuracy, worst case per budget, every attack, and
    the sanity checks (accuracy: mean +- std over evaluation keys)."""
    s, defense = result["settings"], result["defense"]
    norm = {"linf": "L-inf", "l2": "L2"}[s["norm"]]
    judged = ["none"] + ([defense] if defense != "none" else [])
    clean = result["clean"]
    lines = [
        f"# {result['dataset']}: robustness of {NAMES.get(defense, defense)} ({norm})",
        "",
        f"{result['num_examples']} test images the bare classifier gets right; accuracy over "
        f"{result['num_keys']} evaluation keys the attacker never used (mean +- std). "
        "An image counts as robust at a budget under a key only if it survives every "
        "attack of the worst case there (the bare classifier: those crafted on it).",
        *(
            [f"{NAMES.get(defense, defense)} is deterministic: judged once, without keys."]
            if defense != "none" and "varies_between_keys" not in result["clean"]
            else []
        ),
        "",
        "Settings: " + ", ".join(f"{k} {_value(v)}" for k, v in s.items() if v is not None),
        "",
        "Clean: " + "; ".join(f"{NAMES.get(d, d)} {_accuracy(clean[d])}%" for d in judged),
    ]
    if "varies_between_keys" in clean:
        lines.append(
            f"(the defense's prediction differs between keys on "
            f"{100 * clean['varies_between_keys']:.1f}% of the clean images)"
        )
    header = " | ".join(NAMES.get(d, d) for d in judged)
    lines += ["", "## Worst case", "", f"| epsilon | {header} |", "|---" * (len(judged) + 1) + "|"]
    for budget in sorted({w["budget"] for w in result["worst_case"]}):
        cells = {w["model"]: w for w in result["worst_case"] if w["budget"] == budget}
        lines.append(
            f"| {datasets.format_epsilon(budget)} | "
            + " | ".join(_accuracy(cells[d]["accuracy"]) if d in cells else "-" for d in judged)
            + " |"
        )
    lines += [
        "",
        "## Every attack",
        "",
        "| epsilon | attack | part | EOT draws | steps | "
        + header
        + " | attacker success | mean L-inf | mean L2 | craft s |",
        "|---" * (len(judged) + 9) + "|",
    ]
    for r in result["rows"]:
        accuracy = [
            _accuracy(r["accuracy"].get(d)) if d != "none" or r["threat"] == "oblivious" else "-"
            for d in judged
        ]
        lines.append(
            f"| {datasets.format_epsilon(r['budget'])} | {r['label']} | {r['group']} | "
            f"{r['eot_draws']} | {r['settings']['steps']} | " + " | ".join(accuracy) + " | "
            f"{r['attacker_success']:.1f} | {r['mean_linf']:.4f} | {r['mean_l2']:.3f} | "
            f"{r['craft_seconds']:.0f} |"
        )
    lines += ["", "## Sanity checks (Carlini et al. 2019)", "", "| check | | numbers |"]
    lines.append("|---|---|---|")
    lines += [
        f"| {c['check']} | {'pass' if c['passed'] else '**FAIL**'} | {c['detail']} |"
        for c in result["sanity"]
    ]
    lines += ["", f"Command: `{result['command']}`", "", f"Machine: {result['machine']}"]
    return "\n".join(lines) + "\n"


def write_outputs(out: str, result: dict) -> None:
    """<out>.json, <out>.md and <out>.png (robust accuracy vs budget), atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    result_files.write_json(out + ".json", result)
    result_files.write_text(out + ".md", markdown(result))
    defense = result["defense"]
    fig, ax = plt.subplots(figsize=(9.6, 3.8))
    lines: dict[str, list] = {}
    for r in result["rows"]:
        if r["group"] in ("rand", "standard", "portfolio") and defense in r["accuracy"]:
            lines.setdefault(r["label"], []).append((r["budget"], r["accuracy"][defense]))
    for name, points in lines.items():
        _curve(ax, points, result["clean"][defense], label=name, linewidth=1)
    for model in ["none"] + ([defense] if defense != "none" else []):
        points = [(w["budget"], w["accuracy"]) for w in result["worst_case"] if w["model"] == model]
        style = {"color": "black", "linewidth": 2, "linestyle": "--" if model == "none" else "-"}
        name = f"{NAMES.get(model, model)}: worst case"
        _curve(ax, points, result["clean"][model], label=name, **style)
    ball = {"linf": r"$L_\infty$", "l2": "$L_2$"}[result["settings"]["norm"]]
    ax.set_xlabel(ball + r" budget $\epsilon$")
    ax.set_ylabel("robust accuracy (%)")
    result_files.accuracy_axes(
        ax, f"{result['dataset']}: {NAMES.get(defense, defense)}, {result['num_examples']} images"
    )
    result_files.legend_beside(ax)
    fig.tight_layout()
    result_files.save_figure(fig, out + ".png", dpi=150)


def _curve(ax, points: list, clean: dict, **style) -> None:
    """A line from the clean accuracy at budget 0 through ``points``."""
    result_files.accuracy_curve(ax, [(0.0, clean), *points], **style)
