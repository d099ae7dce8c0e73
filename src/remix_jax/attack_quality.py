"""Judging attacks' results alike: success at kappa, distortions, summaries, comparisons.

Every returned image is judged by the same function (:func:`judge`), never by the
implementation's own flags: success iff it lies in [0, 1], its best-other-minus-true
logit margin (recomputed with the classifier) is >= kappa and its argmax is wrong.
Distortions are averaged over successes only (:func:`summarise`). Runs compare by
:func:`paired` (on the examples both broke) and :func:`to_quality` (the fastest run of
ours matching a reference's result); a run is named ``<who>-<attack>[@<budget>]``
(``ours-cw``, ``foolbox-ead``, ``ours-cw@5x500``), ours starting with ``ours``. Only
:func:`judge` imports JAX, so stored results summarise again without it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# a verdict's per-example arrays, in the order they are stored
VERDICT_KEYS = ("success", "zero_sentinel", "margin", "l0", "l1", "l2", "linf")


def judge(logits_fn: Callable, x, y, adv, kappa: float, batch: int = 500) -> dict:
    """The same verdict for every implementation's adversarial images.

    Args:
      logits_fn: the classifier, (b, H, W, C) images -> (b, K) logits.
      x: (N, H, W, C) clean images, numpy float32.
      y: (N,) true labels, numpy int.
      adv: (N, H, W, C) the attack's returned images (any array).
      kappa: the confidence a success needs (margin >= kappa).
      batch: images per ``logits_fn`` call.

    Returns:
      Per-example numpy arrays, each (N,): ``success`` and ``zero_sentinel`` (bool),
      ``margin`` (float32), ``l0`` / ``l1`` / ``l2`` / ``linf`` of adv - x (float64).
    """
    from remix_jax.attacks import common

    adv = np.asarray(adv, np.float32)
    in_box = (adv.reshape(len(adv), -1).min(1) >= -1e-6) & (
        adv.reshape(len(adv), -1).max(1) <= 1 + 1e-6
    )
    margins, wrong = [], []
    for s in range(0, len(adv), batch):
        logits = np.asarray(logits_fn(adv[s : s + batch]))
        lab = y[s : s + batch]
        margins.append(np.asarray(common.margin(logits, lab, False)))
        wrong.append(logits.argmax(-1) != lab)
    margin = np.concatenate(margins)
    # Foolbox's "nothing found" value is an all-zero image (its best_advs start at 0),
    # which the classifier may well misclassify; it is not an attack result (ours and
    # advertorch return x instead).
    flat = adv.reshape(len(adv), -1)
    sentinel = ~flat.any(1) & (x.reshape(len(x), -1).any(1))
    success = in_box & ~sentinel & (margin >= kappa) & np.concatenate(wrong)
    delta = (adv - x).reshape(len(adv), -1).astype(np.float64)
    return {
        "success": success,
        "zero_sentinel": sentinel,
        "margin": margin,
        "l0": (np.abs(delta) > 1e-7).sum(1).astype(np.float64),
        "l1": np.abs(delta).sum(1),
        "l2": np.sqrt((delta**2).sum(1)),
        "linf": np.abs(delta).max(1),
    }


def verdict_to_lists(verdict: dict) -> dict:
    """A verdict as JSON lists: booleans as they are, numbers rounded to 5 decimals."""
    return {
        k: verdict[k].tolist()
        if verdict[k].dtype == bool
        else [round(float(a), 5) for a in verdict[k]]
        for k in VERDICT_KEYS
    }


def verdict_from_lists(lists: dict) -> dict:
    """The inverse of :func:`verdict_to_lists` (numbers come back as float64)."""
    return {
        k: np.asarray(a, bool if k in VERDICT_KEYS[:2] else np.float64) for k, a in lists.items()
    }


def summarise(verdict: dict, beta: float) -> dict:
    """Success rate and mean / median distortions over the successes.

    Args:
      verdict: a :func:`judge` verdict, arrays (N,).
      beta: EAD's L1 weight in ``mean_en``, the elastic-net distance L2^2 + beta * L1
        (what EAD's EN decision rule minimises), reported for CW too.

    Returns:
      n, successes, success_rate, zero_sentinel_returned, mean_l0 / l1 / l2 / linf,
      median_l2, median_l1, mean_en (means and medians None without successes).
    """
    ok = verdict["success"]
    row = {
        "n": int(len(ok)),
        "successes": int(ok.sum()),
        "success_rate": float(ok.mean()),
        "zero_sentinel_returned": int(verdict["zero_sentinel"].sum()),
    }
    for k in ("l0", "l1", "l2", "linf"):
        row[f"mean_{k}"] = float(verdict[k][ok].mean()) if ok.any() else None
    row["median_l2"] = float(np.median(verdict["l2"][ok])) if ok.any() else None
    row["median_l1"] = float(np.median(verdict["l1"][ok])) if ok.any() else None
    en = verdict["l2"] ** 2 + beta * verdict["l1"]
    row["mean_en"] = float(en[ok].mean()) if ok.any() else None
    return row


def paired(ours: dict, ref: dict, beta: float, rtol: float = 1e-3) -> dict:
    """Ours vs a reference on the examples both broke (and who broke what alone).

    Args:
      ours: our run's :func:`judge` verdict, arrays (N,).
      ref: the reference's verdict on the same N examples.
      beta: EAD's L1 weight in the EN distance.
      rtol: the tolerance of "ours <= ref" (ours may exceed ref by this fraction).

    Returns:
      both, ours_only, ref_only, and for each of l2, l1, en: ours_mean_*, ref_mean_*,
      mean_ratio_* (of ours / ref; None when no example was broken by both) and
      ours_le_ref_* (a count of examples).
    """
    both = ours["success"] & ref["success"]
    out = {
        "both": int(both.sum()),
        "ours_only": int((ours["success"] & ~ref["success"]).sum()),
        "ref_only": int((~ours["success"] & ref["success"]).sum()),
    }
    for k in ("l2", "l1", "en"):
        if k == "en":
            a, b = (v["l2"][both] ** 2 + beta * v["l1"][both] for v in (ours, ref))
        else:
            a, b = ours[k][both], ref[k][both]
        out[f"ours_mean_{k}"] = float(a.mean()) if both.any() else None
        out[f"ref_mean_{k}"] = float(b.mean()) if both.any() else None
        out[f"ours_le_ref_{k}"] = int((a <= b * (1 + rtol)).sum())
        out[f"mean_ratio_{k}"] = float((a / np.maximum(b, 1e-12)).mean()) if both.any() else None
    return out


def pair_with_ours(verdicts: dict, beta: float) -> list[dict]:
    """:func:`paired` for every reference run that has a run of ours beside it.

    ``verdicts``: {(run name, kappa): verdict}; a reference ``<who>-<attack>`` pairs
    with ``ours-<attack>`` at the same kappa (budget variants of ours are not used).
    Returns one dict per pair, in the order of ``verdicts``: attack, confidence,
    reference and :func:`paired`'s numbers.
    """
    pairs = []
    for (impl, kappa), v in verdicts.items():
        if impl.startswith("ours"):
            continue
        family = impl.split("-")[1]
        mine = verdicts.get((f"ours-{family}", kappa))
        if mine is not None:
            pairs.append(
                {"attack": family, "confidence": kappa, "reference": impl, **paired(mine, v, beta)}
            )
    return pairs


def to_quality(rows: list, decision_rule: str = "EN") -> list:
    """For each reference run, the fastest of our runs that matches its result.

    "Matches" is strict: at least as many successes and a mean of the attack's own
    objective no larger, with no tolerance (CW: L2; EAD: the EN score, or L1 under the
    L1 decision rule). Our runs include the smaller budgets (``ours-cw@5x500``), which is
    how "wall time to the same quality" is measured.

    Args:
      rows: the run's rows (implementation, attack, confidence, successes, mean_*,
        seconds).
      decision_rule: EAD's rule, which names its objective.

    Returns:
      One dict per reference row: attack, confidence, reference, ref_seconds, metric,
      ref_value, and ours / ours_seconds / ours_value / speedup (None when no run of
      ours matches).
    """
    metric = {"cw": "mean_l2", "ead": "mean_en" if decision_rule == "EN" else "mean_l1"}
    out = []
    for ref in rows:
        if ref["implementation"].startswith("ours") or ref.get(metric[ref["attack"]]) is None:
            continue
        key = metric[ref["attack"]]
        matching = [
            r
            for r in rows
            if r["implementation"].startswith("ours")
            and r["attack"] == ref["attack"]
            and r["confidence"] == ref["confidence"]
            and r["successes"] >= ref["successes"]
            and r.get(key) is not None
            and r[key] <= ref[key]
        ]
        best = min(matching, key=lambda r: r["seconds"], default=None)
        out.append(
            {
                "attack": ref["attack"],
                "confidence": ref["confidence"],
                "reference": ref["implementation"],
                "ref_seconds": ref["seconds"],
                "metric": key,
                "ref_value": ref[key],
                "ours": best and best["implementation"],
                "ours_seconds": best and best["seconds"],
                "ours_value": best and best[key],
                "speedup": best and round(ref["seconds"] / best["seconds"], 2),
            }
        )
    return out


def judge_in_ball(
    logits_fn: Callable,
    x,
    y,
    adv,
    epsilon: float,
    norm: str = "linf",
    tolerance: float = 1e-6,
    batch: int = 500,
) -> dict:
    """Which images stay correctly classified after an attack in the ``norm`` ball.

    The returned image is projected onto the ball of radius ``epsilon`` around x
    (L-inf: clipped per pixel; L2: scaled down to the radius), then clipped to [0, 1]
    (which shrinks every pixel's change, so the point stays in the ball), and judged
    there; so the verdict never credits an attack with a point outside its budget.

    Args:
      logits_fn: the classifier, (b, H, W, C) images -> (b, K) logits.
      x: (N, H, W, C) clean images in [0, 1].
      y: (N,) true labels.
      adv: (N, H, W, C) the attack's returned images (any array).
      epsilon: the budget's radius (> 0).
      norm: "linf" or "l2".
      tolerance: how far outside the ball or the box a returned image may lie (float
        rounding) before ``outside`` counts it.
      batch: images per ``logits_fn`` call.

    Returns:
      Per-example numpy arrays, each (N,): ``robust`` (bool: the projected image's
      argmax is the label), ``outside`` (bool: the returned image lay more than
      ``tolerance`` outside the ball or the box), ``excess`` (float64: by how much, 0
      when inside), ``distance`` (float64: the ``norm`` distance of the returned image
      from x).
    """
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    x = np.asarray(x, np.float32)
    adv = np.asarray(adv, np.float32)
    y = np.asarray(y)
    if adv.shape != x.shape or y.shape != x.shape[:1]:
        raise ValueError(f"shapes differ: x {x.shape}, adv {adv.shape}, y {y.shape}")
    flat = (adv - x).reshape(len(x), -1).astype(np.float64)
    if norm == "linf":
        distance = np.abs(flat).max(1)
        delta = np.clip(adv - x, -epsilon, epsilon)
    else:
        distance = np.sqrt((flat**2).sum(1))
        scale = np.minimum(1.0, epsilon / np.maximum(distance, 1e-12)).astype(np.float32)
        delta = (adv - x) * scale.reshape(-1, *([1] * (x.ndim - 1)))
    box = np.maximum(adv - 1.0, -adv).reshape(len(x), -1).max(1).astype(np.float64)
    excess = np.maximum(np.maximum(distance - epsilon, box), 0.0)
    inside = np.clip(x + delta, 0.0, 1.0)
    robust = np.concatenate(
        [
            np.asarray(logits_fn(inside[s : s + batch])).argmax(-1) == y[s : s + batch]
            for s in range(0, len(x), batch)
        ]
        or [np.zeros(0, bool)]
    )
    return {
        "robust": robust,
        "outside": excess > tolerance,
        "excess": excess,
        "distance": distance,
    }


def summarise_in_ball(verdict: dict) -> dict:
    """A :func:`judge_in_ball` verdict in numbers: n, robust, robust_accuracy (in %),
    outside (images returned outside the ball or the box) and max_excess."""
    n = int(len(verdict["robust"]))
    return {
        "n": n,
        "robust": int(verdict["robust"].sum()),
        "robust_accuracy": 100.0 * float(verdict["robust"].mean()) if n else None,
        "outside": int(verdict["outside"].sum()),
        "max_excess": float(verdict["excess"].max()) if n else 0.0,
    }
