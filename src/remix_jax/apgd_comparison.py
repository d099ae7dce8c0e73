"""Our APGD against reference implementations at equal settings: comparison and report.

``python -m bench.apgd_reference`` attacks the same images with ours (``ours-ce``,
``ours-dlr``) and each reference (``torchattacks-ce``, ``art-dlr``, ...; a run is named
``<who>-<loss>``), judges every returned image alike
(:func:`remix_jax.attack_quality.judge_in_ball`) and stores one row per run with the
per-image verdicts. Here: the settings and rows a result records, the comparison of
ours with each reference on the same loss (:func:`compare`: ours may lie at most
:data:`TOLERANCE` points above), the result file (:func:`result`, :func:`write`;
:func:`rerender` redoes a stored result's comparison), its Markdown (:func:`markdown`)
and RESULTS.md's table (:func:`summary_table`). Every number in the tables comes from
the result, so a stored result renders again without attacking. Imports no JAX.
"""

from __future__ import annotations

import json

from remix_jax import attack_quality, provenance, result_files

TOLERANCE = 1.0  # points of robust accuracy ours may lie above a reference's


def settings(
    dataset: str, num_examples: int, epsilon: float, steps: int, seed: int, warmup_steps: int
) -> dict:
    """The settings a result records: the flags and the protocol every run shares.

    Args:
      dataset: the dataset's registry name.
      num_examples: N, the first test images attacked (right or wrong).
      epsilon: the L-inf budget.
      steps: APGD steps of the timed call (one restart, rho 0.75, no EOT).
      seed: every implementation's seed.
      warmup_steps: steps of the warm-up call before each timed one.

    Returns:
      The ``settings`` dict of a result (ART's step size is 2 * epsilon, its batch N).
    """
    return {
        "dataset": dataset,
        "num_examples": num_examples,
        "images": f"the first {num_examples} test images",
        "norm": "linf",
        "epsilon": epsilon,
        "steps": steps,
        "restarts": 1,
        "rho": 0.75,
        "eot_draws": 1,
        "seed": seed,
        "warmup_steps": warmup_steps,
        "art_eps_step": 2 * epsilon,
        "art_batch_size": num_examples,
    }


def run_row(
    implementation: str,
    verdict: dict,
    own_robust,
    seconds: float,
    warmup_seconds: float,
    load_before: float,
    load_after: float,
) -> dict:
    """One run's row: its verdict in numbers, its own verdict, its times and the load.

    Args:
      implementation: the run's name, ``<who>-<loss>``.
      verdict: its :func:`~remix_jax.attack_quality.judge_in_ball` verdict, arrays (N,).
      own_robust: (N,) bool, whether the implementation's own network still classified
        each returned image correctly.
      seconds: the timed call's wall seconds.
      warmup_seconds: the warm-up call's.
      load_before: the 1-minute load average before the warm-up call.
      load_after: the same after judging.

    Returns:
      implementation, loss, :func:`~remix_jax.attack_quality.summarise_in_ball`'s
      numbers, own_robust_accuracy (%), seconds, warmup_seconds, load_before, load_after
      (times and loads rounded to 2 decimals).
    """
    return {
        "implementation": implementation,
        "loss": implementation.split("-")[1],
        **attack_quality.summarise_in_ball(verdict),
        "own_robust_accuracy": 100.0 * float(own_robust.mean()),
        "seconds": round(seconds, 2),
        "warmup_seconds": round(warmup_seconds, 2),
        "load_before": round(load_before, 2),
        "load_after": round(load_after, 2),
    }


def per_image(verdict: dict, own_robust) -> dict:
    """A run's per-image verdicts as JSON lists (each of length N): robust, outside (of
    the :func:`~remix_jax.attack_quality.judge_in_ball` ``verdict``) and the (N,)
    ``own_robust``."""
    return {
        "robust": verdict["robust"].tolist(),
        "outside": verdict["outside"].tolist(),
        "own_robust": own_robust.tolist(),
    }


def compare(rows: list, per_example: dict) -> list:
    """Per loss and reference: ours vs the reference's robust accuracy and time.

    Args:
      rows: the result's rows (implementation, loss, robust_accuracy, seconds).
      per_example: {implementation: {"robust": N booleans, ...}}.

    Returns:
      One dict per reference row with a run of ours on the same loss: loss, reference,
      ours / theirs (robust accuracy, %), difference (ours - reference, points), within
      (ours <= reference + :data:`TOLERANCE`), broken_by_ours_only /
      broken_by_reference_only (images robust to one and not the other), and speedup
      (the reference's seconds / ours).
    """
    out = []
    by_name = {r["implementation"]: r for r in rows}
    for ref in rows:
        ours = by_name.get(f"ours-{ref['loss']}")
        if ref["implementation"].startswith("ours") or ours is None:
            continue
        mine = per_example[ours["implementation"]]["robust"]
        theirs = per_example[ref["implementation"]]["robust"]
        out.append(
            {
                "loss": ref["loss"],
                "reference": ref["implementation"],
                "ours": ours["robust_accuracy"],
                "theirs": ref["robust_accuracy"],
                "difference": round(ours["robust_accuracy"] - ref["robust_accuracy"], 6),
                "within": ours["robust_accuracy"] <= ref["robust_accuracy"] + TOLERANCE,
                "broken_by_ours_only": sum(t and not m for m, t in zip(mine, theirs, strict=True)),
                "broken_by_reference_only": sum(
                    m and not t for m, t in zip(mine, theirs, strict=True)
                ),
                "speedup": round(ref["seconds"] / ours["seconds"], 2),
            }
        )
    return out


def result(header: dict, rows: list, per_example: dict, labels, versions: dict) -> dict:
    """A result file's content.

    Args:
      header: settings, implementations, clean_accuracy, torch_port, official.
      rows: one :func:`run_row` per run so far.
      per_example: {implementation: :func:`per_image`}.
      labels: (N,) true labels.
      versions: {package: version} of the interpreter that ran it.

    Returns:
      The header, rows, :func:`compare`'s comparisons, versions, per-image verdicts,
      labels and provenance.
    """
    return {
        **header,
        "rows": rows,
        "comparisons": compare(rows, per_example),
        "versions": versions,
        "per_example": per_example,
        "labels": [int(v) for v in labels],
        **provenance.stamp(),
    }


def _percent(v) -> str:
    return "-" if v is None else f"{v:.1f}%"


def markdown(payload: dict) -> str:
    """The result's tables (every number from the :func:`result` ``payload``)."""
    s = payload["settings"]
    lines = [
        "# APGD against the reference implementations",
        "",
        f"{s['dataset']}, {s['images']} (clean accuracy {payload['clean_accuracy']:.1f}%), "
        f"L-inf epsilon {s['epsilon']:.6g}, {s['steps']} steps, {s['restarts']} restart, "
        f"rho {s['rho']}, no EOT, seed {s['seed']}, the whole batch at once. Robust: the "
        "returned image, projected into the ball and [0, 1], still classified correctly "
        "by our JAX classifier. Seconds: the timed call, after a warm-up call of "
        f"{s['warmup_steps']} steps (shown apart; ours compiles there).",
        "",
        "| implementation | robust accuracy | own network's verdict | returned outside "
        "the ball | seconds | warm-up seconds | load average (1 min) before / after |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in payload["rows"]:
        lines.append(
            f"| {r['implementation']} | {_percent(r['robust_accuracy'])} | "
            f"{_percent(r['own_robust_accuracy'])} | {r['outside']} | {r['seconds']:.1f} | "
            f"{r['warmup_seconds']:.1f} | {r['load_before']:.1f} / {r['load_after']:.1f} |"
        )
    if payload["comparisons"]:
        lines += _comparison_table(payload["comparisons"])
    return "\n".join(lines + _provenance_lines(payload))


def _comparison_table(comparisons: list) -> list[str]:
    """:func:`markdown`'s lines of ours against each reference."""
    lines = [
        "",
        f"Ours against each reference (within: ours at most {TOLERANCE:g} point above):",
        "",
        "| loss | reference | ours | reference | ours - reference | within | broken by "
        "ours only | by the reference only | time: reference / ours |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for c in comparisons:
        lines.append(
            f"| {c['loss']} | {c['reference']} | {_percent(c['ours'])} | "
            f"{_percent(c['theirs'])} | {c['difference']:+.1f} | "
            f"{'yes' if c['within'] else 'NO'} | {c['broken_by_ours_only']} | "
            f"{c['broken_by_reference_only']} | {c['speedup']:.2f}x |"
        )
    return lines


def _provenance_lines(payload: dict) -> list[str]:
    """:func:`markdown`'s closing lines: versions, the torch port's check, the official
    code's hash, command, machine, commit and date."""
    port = payload.get("torch_port")
    v = payload["versions"]
    lines = ["", "Versions: " + ", ".join(f"{k} {v[k]}" for k in sorted(v) if k != "executable")]
    if port:
        lines.append(
            f"Torch port: max |logit difference| {port['max_abs_logit_diff']:.1e} on "
            f"{port['images_checked']} images; torch threads {port['torch_threads']}."
        )
    if payload.get("official"):
        lines.append(
            "Official code: fra31/auto-attack, autopgd_base.py SHA-256 "
            f"{payload['official']['autopgd_base_sha256'][:16]}..."
        )
    return lines + [
        "",
        f"Command: `{payload['command']}`  ",
        f"Machine: {payload['machine']}; commit {payload['git_commit']}; {payload['date']}",
        "",
    ]


def summary_table(payloads: list) -> str:
    """RESULTS.md's table: per dataset, loss and reference, robust accuracies and times
    (every number from the :func:`result` files ``payloads``)."""
    lines = [
        "| dataset, epsilon | loss | ours | reference | reference's robust accuracy "
        "| ours - reference | seconds: ours / reference | reference / ours |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for payload in payloads:
        s = payload["settings"]
        seconds = {r["implementation"]: r["seconds"] for r in payload["rows"]}
        for c in payload["comparisons"]:
            lines.append(
                f"| {s['dataset']}, {s['epsilon']:.4g} | {c['loss']} | {_percent(c['ours'])} | "
                f"{c['reference']} | {_percent(c['theirs'])} | {c['difference']:+.1f} | "
                f"{seconds['ours-' + c['loss']]:.1f} / {seconds[c['reference']]:.1f} | "
                f"{c['speedup']:.2f}x |"
            )
    return "\n".join(lines) + "\n"


def write(out: str, payload: dict) -> None:
    """``<out>.json`` and ``<out>.md`` (:func:`markdown`), each atomically."""
    result_files.write_json(out + ".json", payload)
    result_files.write_text(out + ".md", markdown(payload))


def rerender(out: str) -> dict:
    """Recomputes the comparisons of the stored result ``<out>.json`` from its rows and
    per-image verdicts and rewrites ``<out>.json`` / ``.md``; the run's own provenance is
    kept. Returns the result rewritten."""
    with open(out + ".json") as f:
        payload = json.load(f)
    payload["comparisons"] = compare(payload["rows"], payload["per_example"])
    write(out, payload)
    return payload
