"""The result of :mod:`bench.reference_attacks`: its rows, files and Markdown tables.

A result (``<out>.json``) holds the settings, the run names, the torch port's check,
one summary row per run and kappa, the paired comparisons, the time-to-quality table,
package versions, every run's per-example verdict (numbers rounded to 5 decimals),
the labels and provenance. The tables follow from the per-example verdicts alone, so a
stored result renders again without attacking (:func:`render_only`). The judging is
the library's (:mod:`remix_jax.attack_quality`); the wording here is this bench's.
"""

from __future__ import annotations

import os

from remix_jax import attack_quality, datasets


def result_row(implementation: str, attack: str, kappa: float, verdict, beta, seconds) -> dict:
    """One run's row: its name, attack, kappa, :func:`attack_quality.summarise`, seconds."""
    return {
        "implementation": implementation,
        "attack": attack,
        "confidence": kappa,
        **attack_quality.summarise(verdict, beta),
        "seconds": seconds,
    }


def settings(args, num_examples: int) -> dict:
    """The settings a result records, from the flags and the number of images."""
    from bench.reference_runs import search_settings

    return {
        **search_settings(args),
        "beta": args.beta,
        "decision_rule": args.decision_rule,
        "abort_early": args.abort_early,
        "targeted": False,
        "dataset": args.dataset,
        "ours_warm": args.warm,
        "num_examples": num_examples,
        "confidences": args.confidences,
    }


def result(header, rows, verdicts, per_example, labels, beta, decision_rule) -> dict:
    """A result file's content: ``header`` (settings, implementations, torch_port), the
    rows, their comparisons, versions, per-example verdicts, (N,) labels, provenance."""
    from bench.reference_runs import versions
    from remix_jax import provenance

    return {
        **header,
        "rows": rows,
        "paired": attack_quality.pair_with_ours(verdicts, beta),
        "to_quality": attack_quality.to_quality(rows, decision_rule),
        "versions": versions(),
        "per_example": per_example,
        "labels": labels.tolist(),
        **provenance.stamp(),
    }


def write(out: str, payload: dict) -> None:
    """Writes a result as ``<out>.json`` and its tables as ``<out>.md``, each atomically
    (a temporary file, then a rename)."""
    from bench.common import write_json

    write_json(out + ".json", payload)  # makes the folder
    with open(out + ".md.tmp", "w") as f:
        f.write(markdown(payload))
    os.replace(out + ".md.tmp", out + ".md")


def render_only(path: str) -> None:
    """Recomputes the summaries of a stored run from its per-example numbers (no attack
    runs) and rewrites <path>.json / .md; the run's own provenance is kept."""
    import json

    from remix_jax import provenance

    with open(path + ".json") as f:
        payload = json.load(f)
    beta = payload["settings"]["beta"]
    verdicts, rows = {}, []
    for old in payload["rows"]:
        key = f"{old['implementation']}@{old['confidence']:g}"
        v = attack_quality.verdict_from_lists(payload["per_example"][key])
        verdicts[(old["implementation"], old["confidence"])] = v
        rows.append(
            result_row(
                old["implementation"], old["attack"], old["confidence"], v, beta, old["seconds"]
            )
        )
    payload["rows"] = rows
    payload["paired"] = attack_quality.pair_with_ours(verdicts, beta)
    payload["to_quality"] = attack_quality.to_quality(rows, payload["settings"]["decision_rule"])
    payload["rendered"] = provenance.stamp()
    write(path, payload)
    print(markdown(payload))


def fmt(v, digits=3) -> str:
    """A number with ``digits`` decimals, or "-" for None."""
    return "-" if v is None else f"{v:.{digits}f}"


def markdown(payload: dict) -> str:
    """The Markdown tables of a result: one row per run, paired, time to quality."""
    s = payload["settings"]
    lines = [
        "# Our CW-L2 / EAD vs reference implementations "
        f"({datasets.get(s.get('dataset', datasets.default())).display_name}, untargeted)",
        "",
        f"{s['num_examples']} first correctly classified test images; "
        f"{s['binary_search_steps']} search steps x {s['max_iterations']} iterations, "
        f"lr {s['learning_rate']:g}, initial c {s['initial_const']:g}, "
        f"abort early {'on' if s['abort_early'] else 'off'}; "
        f"EAD beta {s['beta']:g}, decision rule {s['decision_rule']}. "
        "Success judged identically for all (margin >= kappa, argmax wrong, in box); "
        "distortions averaged over successes only. Seconds include compilation"
        + (
            " (ours: not; each of our attacks ran once before it was timed)."
            if s.get("ours_warm")
            else "."
        ),
        "",
        "| attack | kappa | implementation | success | mean L2 | median L2 | mean L1 "
        "| mean L0 | mean Linf | mean EN | seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in payload["rows"]:
        lines.append(
            f"| {r['attack']} | {r['confidence']:g} | {r['implementation']} | "
            f"{r['successes']}/{r['n']} | {fmt(r['mean_l2'])} | {fmt(r['median_l2'])} | "
            f"{fmt(r['mean_l1'])} | {fmt(r['mean_l0'], 1)} | {fmt(r['mean_linf'])} | "
            f"{fmt(r.get('mean_en'))} | {r['seconds']:.1f} |"
        )
    if payload.get("paired"):
        lines += [
            "",
            "Paired, on the examples both broke (ours <= ref counted with 0.1% tolerance):",
            "",
            "| attack | kappa | reference | both | ours only | ref only | ours L2 | ref L2 "
            "| ours<=ref L2 | ours L1 | ref L1 | ours<=ref L1 | ours EN | ref EN | ours<=ref EN |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for q in payload["paired"]:
            lines.append(
                f"| {q['attack']} | {q['confidence']:g} | {q['reference']} | {q['both']} | "
                f"{q['ours_only']} | {q['ref_only']} | {fmt(q['ours_mean_l2'])} | "
                f"{fmt(q['ref_mean_l2'])} | {q['ours_le_ref_l2']}/{q['both']} | "
                f"{fmt(q['ours_mean_l1'])} | {fmt(q['ref_mean_l1'])} | "
                f"{q['ours_le_ref_l1']}/{q['both']} | {fmt(q.get('ours_mean_en'))} | "
                f"{fmt(q.get('ref_mean_en'))} | {q.get('ours_le_ref_en', '-')}/{q['both']} |"
            )
    if payload.get("to_quality"):
        lines += [
            "",
            "Time to each reference's result: the fastest run of ours with at least its "
            "successes and a mean objective (CW: L2, EAD: "
            f"{'EN' if s['decision_rule'] == 'EN' else 'L1'}) no larger, no tolerance "
            "(6 digits shown):",
            "",
            "| attack | kappa | reference | ref seconds | ref mean | ours | ours seconds "
            "| ours mean | ref / ours time |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for q in payload["to_quality"]:
            ours = (
                f"{q['ours']} | {q['ours_seconds']:.1f} | {q['ours_value']:.6f} | "
                f"{q['speedup']:.2f}x"
                if q["ours"]
                else "none matches | - | - | -"
            )
            lines.append(
                f"| {q['attack']} | {q['confidence']:g} | {q['reference']} | "
                f"{q['ref_seconds']:.1f} | {q['ref_value']:.6f} | {ours} |"
            )
    return "\n".join(lines) + "\n"
