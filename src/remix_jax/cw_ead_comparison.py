"""Our CW-L2 / EAD against reference implementations at equal settings: result and report.

``python -m bench.reference_attacks`` runs ours (``ours-cw``, ``ours-ead``, smaller
budgets as ``ours-cw@5x500``) and each reference (``foolbox-cw``, ``advertorch-ead``,
...) at each kappa and judges every returned image alike
(:func:`remix_jax.attack_quality.judge`). A result (``<out>.json``) holds the settings,
the run names, the torch port's check, one summary row per run and kappa
(:func:`result_row`), the paired comparisons, the time-to-quality table, package
versions, every run's per-example verdict (numbers rounded to 5 decimals), the labels
and provenance (:func:`result`). The tables (:func:`markdown`) follow from the
per-example verdicts alone, so a stored result renders again without attacking
(:func:`rerender`). The judging and comparing are :mod:`remix_jax.attack_quality`'s;
the wording is this report's. Imports no JAX.
"""

from __future__ import annotations

import json

from remix_jax import attack_quality, datasets, provenance, result_files


def attack_of(implementation: str) -> str:
    """The attack a run name names: ``"ours-cw@5x500"`` -> ``"cw"``."""
    return implementation.split("-")[1].split("@")[0]


def run_key(implementation: str, kappa: float) -> str:
    """The key of a run's per-example verdict in a result: ``"foolbox-ead@10"``."""
    return f"{implementation}@{kappa:g}"


def result_row(implementation: str, kappa: float, verdict: dict, beta: float, seconds) -> dict:
    """One run's row.

    Args:
      implementation: the run's name, ``<who>-<attack>[@<budget>]``.
      kappa: the confidence it attacked at.
      verdict: its :func:`~remix_jax.attack_quality.judge` verdict, arrays (N,).
      beta: EAD's L1 weight in the EN distance.
      seconds: its wall seconds.

    Returns:
      implementation, attack, confidence, :func:`~remix_jax.attack_quality.summarise`'s
      numbers and seconds.
    """
    return {
        "implementation": implementation,
        "attack": attack_of(implementation),
        "confidence": kappa,
        **attack_quality.summarise(verdict, beta),
        "seconds": seconds,
    }


def summaries(verdicts: dict, seconds: dict, settings: dict) -> dict:
    """A result's tables from its runs' verdicts: rows, paired, to_quality.

    Args:
      verdicts: {(run name, kappa): :func:`~remix_jax.attack_quality.judge` verdict,
        arrays (N,)}, in the order the runs ran.
      seconds: {(run name, kappa): the run's wall seconds}.
      settings: the result's settings (beta and decision_rule are read).

    Returns:
      ``rows`` (one :func:`result_row` per run), ``paired``
      (:func:`~remix_jax.attack_quality.pair_with_ours`) and ``to_quality``
      (:func:`~remix_jax.attack_quality.to_quality`).
    """
    beta = settings["beta"]
    rows = [result_row(i, k, v, beta, seconds[(i, k)]) for (i, k), v in verdicts.items()]
    return {
        "rows": rows,
        "paired": attack_quality.pair_with_ours(verdicts, beta),
        "to_quality": attack_quality.to_quality(rows, settings["decision_rule"]),
    }


def result(header: dict, verdicts: dict, seconds: dict, labels, versions: dict) -> dict:
    """A result file's content.

    Args:
      header: settings, implementations, torch_port.
      verdicts: {(run name, kappa): :func:`~remix_jax.attack_quality.judge` verdict,
        arrays (N,)}, in the order the runs ran.
      seconds: {(run name, kappa): the run's wall seconds}.
      labels: (N,) numpy array of the true labels.
      versions: {package: version} of the interpreter that ran it.

    Returns:
      The header, :func:`summaries`' tables, versions, the per-example verdicts
      ({:func:`run_key`: :func:`~remix_jax.attack_quality.verdict_to_lists`}), labels
      and provenance.
    """
    return {
        **header,
        **summaries(verdicts, seconds, header["settings"]),
        "versions": versions,
        "per_example": {
            run_key(i, k): attack_quality.verdict_to_lists(v) for (i, k), v in verdicts.items()
        },
        "labels": labels.tolist(),
        **provenance.stamp(),
    }


def write(out: str, payload: dict) -> None:
    """Writes a result as ``<out>.json`` and its tables (:func:`markdown`) as
    ``<out>.md``, each atomically."""
    result_files.write_json(out + ".json", payload)
    result_files.write_text(out + ".md", markdown(payload))


def rerender(path: str) -> dict:
    """Recomputes the summaries of the stored result ``<path>.json`` from its per-example
    numbers (no attack runs) and rewrites ``<path>.json`` / ``.md``; the run's own
    provenance is kept, the rendering's added as ``rendered``. Returns the result."""
    with open(path + ".json") as f:
        payload = json.load(f)
    verdicts, seconds = {}, {}
    for row in payload["rows"]:
        run = (row["implementation"], row["confidence"])
        lists = payload["per_example"][run_key(*run)]
        verdicts[run] = attack_quality.verdict_from_lists(lists)
        seconds[run] = row["seconds"]
    payload.update(summaries(verdicts, seconds, payload["settings"]))
    payload["rendered"] = provenance.stamp()
    write(path, payload)
    return payload


def fmt(v, digits=3) -> str:
    """A number with ``digits`` decimals, or "-" for None."""
    return "-" if v is None else f"{v:.{digits}f}"


def markdown(payload: dict) -> str:
    """The Markdown tables of a :func:`result`: one row per run, paired, time to
    quality."""
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
        lines += _paired_table(payload["paired"])
    if payload.get("to_quality"):
        lines += _to_quality_table(payload["to_quality"], s["decision_rule"])
    return "\n".join(lines) + "\n"


def _paired_table(paired: list) -> list[str]:
    """:func:`markdown`'s lines of each reference against ours on the examples both
    broke."""
    lines = [
        "",
        "Paired, on the examples both broke (ours <= ref counted with 0.1% tolerance):",
        "",
        "| attack | kappa | reference | both | ours only | ref only | ours L2 | ref L2 "
        "| ours<=ref L2 | ours L1 | ref L1 | ours<=ref L1 | ours EN | ref EN | ours<=ref EN |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for q in paired:
        lines.append(
            f"| {q['attack']} | {q['confidence']:g} | {q['reference']} | {q['both']} | "
            f"{q['ours_only']} | {q['ref_only']} | {fmt(q['ours_mean_l2'])} | "
            f"{fmt(q['ref_mean_l2'])} | {q['ours_le_ref_l2']}/{q['both']} | "
            f"{fmt(q['ours_mean_l1'])} | {fmt(q['ref_mean_l1'])} | "
            f"{q['ours_le_ref_l1']}/{q['both']} | {fmt(q.get('ours_mean_en'))} | "
            f"{fmt(q.get('ref_mean_en'))} | {q.get('ours_le_ref_en', '-')}/{q['both']} |"
        )
    return lines


def _to_quality_table(to_quality: list, decision_rule: str) -> list[str]:
    """:func:`markdown`'s lines of the time each reference's result took ours."""
    lines = [
        "",
        "Time to each reference's result: the fastest run of ours with at least its "
        "successes and a mean objective (CW: L2, EAD: "
        f"{'EN' if decision_rule == 'EN' else 'L1'}) no larger, no tolerance "
        "(6 digits shown):",
        "",
        "| attack | kappa | reference | ref seconds | ref mean | ours | ours seconds "
        "| ours mean | ref / ours time |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for q in to_quality:
        ours = (
            f"{q['ours']} | {q['ours_seconds']:.1f} | {q['ours_value']:.6f} | {q['speedup']:.2f}x"
            if q["ours"]
            else "none matches | - | - | -"
        )
        lines.append(
            f"| {q['attack']} | {q['confidence']:g} | {q['reference']} | "
            f"{q['ref_seconds']:.1f} | {q['ref_value']:.6f} | {ours} |"
        )
    return lines
