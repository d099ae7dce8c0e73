"""An adaptive evaluation's result rendered: Markdown table and accuracy-vs-budget plot.

The result is the dict ``eval.adaptive`` writes as JSON (built from
:mod:`remix_jax.adaptive_eval`'s rows); rendering it again from the JSON gives the
same files. JAX-free; matplotlib is imported only to draw.
"""

from __future__ import annotations

from remix_jax import result_files


def _epsilon(result: dict) -> bool:
    """Whether the result's attack is bounded to a norm ball (its settings name the norm)
    rather than swept over the confidence kappa."""
    return "norm" in result["settings"]


def label(defense: str, threat: str) -> str:
    """The legend / table name of a defense under a threat."""
    if defense == "none":
        return "no defense" if threat == "oblivious" else "no defense (on these examples)"
    return {
        "oblivious": f"{defense}: oblivious (crafted on the bare classifier)",
        "eot": f"{defense}: adaptive, EOT + exact gradients",
        "bpda": f"{defense}: adaptive, EOT + BPDA",
        "eot-warm": f"{defense}: adaptive, EOT from the oblivious example",
        "fixed": f"{defense}: one fixed mask draw, fresh keys",
    }[threat]


def curves(result: dict) -> dict[str, list[tuple[float, dict]]]:
    """Accuracy vs budget per line label, from the "curve" rows (clean at budget 0)."""
    lines: dict[str, list] = {}
    for row in result["rows"]:
        if row["group"] != "curve":
            continue
        for defense, acc in row["accuracy"].items():
            if defense == "none" and row["threat"] != "oblivious":
                continue
            lines.setdefault(label(defense, row["threat"]), []).append((row["budget"], acc))
    for w in result.get("worst_case", []):
        if len([v for v in result["worst_case"] if v["defense"] == w["defense"]]) > 1:
            lines.setdefault(f"{w['defense']}: worst case over every attack", []).append(
                (w["budget"], w["accuracy"])
            )
    if _epsilon(result):
        for name, points in lines.items():
            defense = "none" if name == "no defense" else name.split(":")[0]
            points.insert(0, (0.0, result["clean"][defense]))
    return lines


def markdown(result: dict) -> str:
    """The result as a Markdown table (accuracy: mean +- std over evaluation keys)."""
    norm = result["settings"].get("norm", "")
    budget = f"epsilon ({norm})" if _epsilon(result) else "kappa"
    settings = ", ".join(f"{k} {v}" for k, v in result["settings"].items() if v is not None)
    lines = [
        f"# {result['dataset']}: REMIX under adaptive {result['attack'].upper()}",
        "",
        f"`{result['command']}` on {result['machine']} (commit "
        f"{result['git_commit'][:10]}, {result['date']}, {result['wall_seconds']:.0f} s); "
        f"data: {result['data_source']}; {result['num_examples']} images; {settings}; "
        f"robust accuracy over {result['num_keys']} evaluation keys the attacker never "
        "saw (mean +- std).",
        "",
        "Clean accuracy on these images: "
        + ", ".join(f"{d} {a['mean']:.1f}" for d, a in result["clean"].items())
        + ".",
        "",
    ]
    detector = result.get("detector")
    extra = []
    if detector:
        lines += [
            f"Detector: REMIX {detector['score']}, threshold at drop rate "
            f"{detector['drop_rate']} of the {detector['validation']}; on these clean "
            "images it rejects "
            + ", ".join(f"{d} {v['rejected']['mean']:.1f}%" for d, v in detector["clean"].items())
            + " (accuracy with it: "
            + ", ".join(f"{d} {v['accuracy']['mean']:.1f}" for d, v in detector["clean"].items())
            + "). Detector-aware runs pay weight x max(score / threshold - 1/2, 0).",
            "",
        ]
        extra = ["weight", "rejected by the detector", "accuracy with the detector"]
    header = [
        "check",
        "defense attacked",
        "threat",
        budget,
        "R",
        "steps",
        *extra[:1],
        "attacker success",
        "mean L2",
        "mean Linf",
        "accuracy, no defense",
        "accuracy behind REMIX",
        *extra[1:],
    ]
    lines += ["| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
    for row in result["rows"]:
        behind = "; ".join(
            f"{d}: {a['mean']:.1f} +- {a['std']:.1f}"
            for d, a in row["accuracy"].items()
            if d != "none"
        )
        if "accuracy_attacker_key" in row:
            behind += f" (attacker's own draw: {row['accuracy_attacker_key']:.1f})"
        weight = [f"{row['detector_weight']:g}" if "detector_weight" in row else "-"]
        detected = []
        if detector:
            detected = [
                "; ".join(
                    f"{d}: {v[k]['mean']:.1f} +- {v[k]['std']:.1f}"
                    for d, v in row["with_detector"].items()
                )
                for k in ("rejected", "accuracy")
            ]
        lines.append(
            "| "
            + " | ".join(
                [
                    row["group"],
                    row["defense"],
                    row["threat"],
                    f"{row['budget']:g}",
                    str(row["samples"]),
                    "-" if row["steps"] is None else str(row["steps"]),
                    *(weight if detector else []),
                    f"{row['attacker_success']:.1f}",
                    f"{row['mean_l2']:.3f}",
                    f"{row['mean_linf']:.3f}",
                    f"{row['accuracy']['none']['mean']:.1f}",
                    behind,
                    *detected,
                ]
            )
            + " |"
        )
    distortions = [r for r in result["rows"] if r.get("l2_successful")]
    if distortions:
        lines += [
            "",
            "L2 distortion of the examples the attacker reports successful (its own "
            "check; oblivious rows: on the bare classifier), median [25th, 75th percentile]:",
            "",
            f"| check | defense attacked | threat | {budget} | successful | L2 |",
            "|---|---|---|---|---|---|",
        ]
        for r in distortions:
            q = r["l2_successful"]
            lines.append(
                f"| {r['group']} | {r['defense']} | {r['threat']} | {r['budget']:g} | "
                f"{q['count']} | {q['median']:.3f} [{q['q25']:.3f}, {q['q75']:.3f}] |"
            )
    if result.get("worst_case"):
        lines += [
            "",
            "Worst case over every attack run at a budget (an image counts as "
            "defended under an evaluation key only if it survives all of them):",
            "",
            f"| {budget} | defense | attacks | accuracy |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {w['budget']:g} | {w['defense']} | {w['attacks']} | "
            f"{w['accuracy']['mean']:.1f} +- {w['accuracy']['std']:.1f} |"
            for w in result["worst_case"]
        ]
    return "\n".join(lines) + "\n"


def write_outputs(out: str, result: dict) -> None:
    """<out>.json, <out>.md and <out>.png (accuracy vs budget), each written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    result_files.write_json(out + ".json", result)
    result_files.write_text(out + ".md", markdown(result))
    fig, ax = plt.subplots(figsize=(9.6, 3.8))
    for name, points in curves(result).items():
        result_files.accuracy_curve(
            ax,
            points,
            label=name,
            linestyle="--" if "oblivious" in name else "-",
            **({"color": "black", "linewidth": 2} if "worst case" in name else {}),
        )
    norm = result["settings"].get("norm", "")
    ax.set_xlabel(
        {"linf": "$L_\\infty$ budget $\\epsilon$", "l2": "$L_2$ budget $\\epsilon$"}.get(
            norm, "confidence $\\kappa$"
        )
    )
    ax.set_ylabel("accuracy (%)")
    result_files.accuracy_axes(
        ax,
        f"{result['dataset']}: {result['attack'].upper()} {norm}, {result['num_examples']} images",
    )
    result_files.legend_beside(ax)
    fig.tight_layout()
    result_files.save_figure(fig, out + ".png", dpi=150)
