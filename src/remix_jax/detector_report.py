"""A detector run assembled and rendered: positives, spreads over keys, JSON, Markdown, plot.

``result`` is what ``python -m eval.detector`` writes
(``results/<dataset>/detector-<attack>[-<preset>][-misclassified].json``): settings,
provenance, the detectors and their unions, each detector's validation thresholds
and clean rejection per drop rate, and one row per kappa with the positives, each
detector's ROC AUC and its detection rate per drop rate (mean and spread over keys).
The rendering functions only read it, so any result renders again without
recomputing (``eval.detector --render-only``). The per-key evaluation itself is
:func:`remix_jax.detector.evaluate_run`.

Importing this module does not start JAX: the functions that need it import it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from remix_jax import adversarial_cache, result_files

VARIANTS = {"REMIX": "reformer + mask-inpaint", "REMIX MI": "mask-inpaint only"}
POSITIVES = {
    "verified": "cached examples whose success (margin >= kappa, wrong argmax) holds when "
    "re-checked here in full float32, as eval.sweep scores them",
    "misclassified": "every cached example that the bare classifier misclassifies here "
    "(whatever its margin)",
}
# plot: one colour per score, one line style per defense
COLORS = {
    "inpaint-L2": "tab:blue",
    "copies-JSD": "tab:orange",
    "copies-disagree": "tab:green",
    "output-JSD": "tab:red",
    "I-L2": "tab:purple",
    "II-L1": "tab:brown",
    "JSD-T10": "tab:pink",
    "JSD-T40": "tab:gray",
    "I-L1": "tab:olive",
}
STYLES = {"REMIX": "-", "REMIX MI": "--", "MagNet": ":"}


def default_out(dataset: str, attack: str, preset: str, positives: str = "verified") -> str:
    """results/<dataset>/detector-<attack>[-<preset>][-misclassified]."""
    name = f"detector-{attack}" + ("" if preset == "paper" else f"-{preset}")
    return os.path.join(
        "results", dataset, name + ("" if positives == "verified" else "-" + positives)
    )


def rate_key(rate: float) -> str:
    """A drop rate as the result's keys spell it (``0.001``, ``0.01``)."""
    return f"{rate:g}"


def spread(values: Sequence[float]) -> dict:
    """Mean, sample std, min, max and count of per-key values (as given, not in %)."""
    from remix_jax.evaluation import summarize

    return summarize(values, scale=1.0)


def remix_variants(remix, names: Sequence[str]) -> dict:
    """The REMIX variants named (keys of :data:`VARIANTS`): name -> RemixParams.

    "REMIX" is ``remix`` itself, "REMIX MI" the same without its reformer.
    """
    every = {"REMIX": remix, "REMIX MI": remix.without_reformer()}
    return {v: every[v] for v in names}


def union_detectors(
    variants: Sequence[str], official: Sequence[str], scores: Sequence[str]
) -> dict:
    """The union detectors: label -> members; a union fires when any member does.

    Args:
      variants: the REMIX variants scored (e.g. "REMIX", "REMIX MI").
      official: MagNet's official detectors of the dataset, "MagNet <name>".
      scores: the REMIX score names (:data:`remix_jax.detector.SCORES`).

    Returns:
      "<variant> (any score)" -> its "<variant> <score>" for every variant, then
      "MagNet (<a> or <b> ...)" -> ``official``.
    """
    out = {f"{v} (any score)": [f"{v} {s}" for s in scores] for v in variants}
    out[f"MagNet ({' or '.join(n[len('MagNet ') :] for n in official)})"] = list(official)
    return out


def run_settings(
    num_keys: int,
    drop_rates: Sequence[float],
    temperature: float,
    variants: Sequence[str],
    n_masks: int,
) -> dict:
    """The result's "settings": keys, drop rates (as :func:`rate_key`), T, variants
    (name -> description, from :data:`VARIANTS`), REMIX's n and the score names."""
    from remix_jax.detector import SCORES

    return {
        "num_keys": num_keys,
        "drop_rates": [rate_key(r) for r in drop_rates],
        "temperature": temperature,
        "variants": {v: VARIANTS[v] for v in variants},
        "n_masks": n_masks,
        "scores": list(SCORES),
    }


def describe_images(
    positives: str,
    num_examples: int,
    clean_right: float,
    validation_images: int,
    validation_source: str,
) -> dict:
    """The result's "positives", "negatives" and "validation": what each image set is.

    Args:
      positives: a key of :data:`POSITIVES`.
      num_examples: N, the clean test images the attack started from.
      clean_right: the bare classifier's accuracy on them, in %.
      validation_images: how many training images (the last ones) set the thresholds.
      validation_source: where the training split was loaded from.
    """
    return {
        "positives": POSITIVES[positives],
        "negatives": f"the {num_examples} clean test images the attack started from "
        f"(classifier right on {clean_right:.1f}%)",
        "validation": {
            "images": validation_images,
            "split": f"last {validation_images} training images (MagNet's validation)",
            "source": validation_source,
        },
    }


def read_crafted(caches: Mapping[float, str]) -> tuple[dict, list[int], dict]:
    """The cached adversarial examples of every kappa, all for the same test images.

    Args:
      caches: kappa -> finished cache file (:func:`remix_jax.adversarial_cache.finished`).

    Returns:
      crafted (kappa -> "adversarial" (N, H, W, C), "success" (N,) bool), the N
      test-set indices and the attack settings (without indices and confidence).

    Raises:
      ValueError: a file was crafted from other test images than the first.
    """
    crafted, indices, settings = {}, None, None
    for kappa, path in caches.items():
        arrays, stored = adversarial_cache.read(path)
        crafted[kappa] = {"adversarial": arrays["adversarial"], "success": arrays["success"]}
        if indices is None:
            indices = stored["indices"]
            settings = {k: v for k, v in stored.items() if k not in ("indices", "confidence")}
        if stored["indices"] != indices or len(crafted[kappa]["success"]) != len(indices):
            raise ValueError(
                f"{path} was crafted from other test images than {next(iter(caches.values()))}"
            )
    return crafted, indices, settings


def check_positives(
    logits_fn: Callable,
    crafted: Mapping[float, dict],
    labels: np.ndarray,
    num_classes: int,
    targeted: bool,
    positives: str,
) -> tuple[dict[float, np.ndarray], list[dict]]:
    """Which cached examples count as adversarial here, and the counts per kappa.

    Success is re-checked in this process's arithmetic, as eval.sweep does: examples
    crafted elsewhere (e.g. at TF32) may pass the test there and not here.

    Args:
      logits_fn: the bare classifier, ``(B, H, W, C) -> (B, K)``.
      crafted: :func:`read_crafted`'s kappa -> "adversarial", "success".
      labels: (N,) true labels of the images.
      num_classes: K, for a targeted attack's targets
        (:func:`remix_jax.adversarial_cache.attack_labels`).
      targeted: whether the attack was targeted (it was given random wrong targets).
      positives: a key of :data:`POSITIVES`: "verified" (success where crafted and
        here) or "misclassified" (the classifier is wrong here).

    Returns:
      kappa -> (N,) bool positives, and one row per kappa: confidence, images,
      success_where_crafted (%), fooled (positives), verified, misclassified.
    """
    from remix_jax import evaluation

    attack_labels = adversarial_cache.attack_labels(labels, num_classes, targeted)
    positive, rows = {}, []
    for kappa, c in crafted.items():
        here = evaluation.recheck_success(
            logits_fn, c["adversarial"], attack_labels, targeted, kappa
        )
        wrong = evaluation.predict(logits_fn, c["adversarial"]) != labels
        positive[kappa] = c["success"] & here if positives == "verified" else wrong
        rows.append(
            {
                "confidence": kappa,
                "images": len(labels),
                "success_where_crafted": float(c["success"].mean() * 100),
                "fooled": int(positive[kappa].sum()),
                "verified": int((c["success"] & here).sum()),
                "misclassified": int(wrong.sum()),
            }
        )
    return positive, rows


def summarize_runs(
    remix: Sequence[dict],
    magnet: dict,
    detectors: Sequence[str],
    unions: Mapping[str, Sequence[str]],
    drop_rates: Sequence[float],
    rows: Sequence[dict],
) -> dict:
    """Mean and spread over keys of every evaluated quantity, keyed as the result is.

    Args:
      remix: :func:`remix_jax.detector.evaluate_run` of each key's REMIX scores.
      magnet: the same of MagNet's scores (deterministic: one run); a detector or
        union whose name starts with "MagNet" is read from here.
      detectors: every detector evaluated, REMIX's then MagNet's.
      unions: label -> members; those whose members are all in ``detectors`` count.
      drop_rates: the validation rejection rates.
      rows: one per kappa, with "confidence" (as :func:`check_positives`).

    Returns:
      "detectors", "unions" (those kept), "thresholds" {detector: {rate: spread}},
      "clean_rejected" {label: {rate: spread}} and "rows": each row with "auc"
      {detector: spread} and "detected" {label: {rate: spread}} added; a spread is
      None where no key evaluated it (no positives at that kappa).
    """

    def collect(field, key):
        source = [magnet] if key[0].startswith("MagNet") else remix
        values = [e[field][key] for e in source if key in e[field]]
        return spread(values) if values else None

    detectors = list(detectors)
    labels = detectors + [u for u in unions if set(unions[u]) <= set(detectors)]

    def per_rate(field, name, *kappa):
        return {rate_key(r): collect(field, (name, r, *kappa)) for r in drop_rates}

    return {
        "detectors": detectors,
        "unions": {u: m for u, m in unions.items() if u in labels},
        "thresholds": {n: per_rate("threshold", n) for n in detectors},
        "clean_rejected": {n: per_rate("clean_rejected", n) for n in labels},
        "rows": [
            {
                **row,
                "auc": {n: collect("auc", (n, row["confidence"])) for n in detectors},
                "detected": {n: per_rate("detected", n, row["confidence"]) for n in labels},
            }
            for row in rows
        ],
    }


def evaluate_detectors(
    keys: Sequence,
    variants: Mapping,
    magnet,
    logits_fn: Callable,
    sets: Mapping,
    rows: Sequence[dict],
    *,
    official: Sequence[str],
    drop_rates: Sequence[float],
    temperature: float = 10.0,
    batch_size: int = 250,
    progress: str | None = None,
    scoring=None,
) -> dict:
    """Every detector scored on ``sets``, evaluated per key and summarized.

    REMIX's scores (:func:`remix_jax.detector.remix_run`) under each key, MagNet's
    (:func:`remix_jax.detector.magnet_run`) once, each run evaluated by
    :func:`remix_jax.detector.evaluate_run` with the unions of
    :func:`union_detectors`, then :func:`summarize_runs`.

    Args:
      keys: one PRNG key per REMIX run (fresh masks for every set).
      variants: REMIX variant name -> :class:`remix_jax.RemixParams` (n_masks >= 2).
      magnet: the :class:`remix_jax.magnet.MagNetParams` to compare with.
      logits_fn: the protected classifier, ``(B, H, W, C) -> (B, K)``.
      sets: "val" (N_val, H, W, C) clean validation images (the thresholds), "clean"
        (N, H, W, C) the negatives, and each kappa -> its positives (P, H, W, C).
      rows: one per kappa, as :func:`check_positives`.
      official: MagNet's official detector names of the dataset (without "MagNet ").
      drop_rates: the validation rejection rates.
      temperature, batch_size: as :func:`remix_jax.detector.remix_run`.
      progress: the description of a progress bar over the REMIX scorings (one per
        key, variant and set); None shows none.
      scoring: keeps each key's evaluated run, so a killed evaluation resumes at its
        first unscored key (its identity must name everything the scores depend on).

    Returns:
      the result's "detectors", "unions", "thresholds", "magnet_thresholds_shipped"
      (the thresholds ``magnet`` carries), "clean_rejected" and "rows", in this order.
    """
    from tqdm import tqdm

    from remix_jax import detector

    remix_names = [f"{v} {s}" for v in variants for s in detector.SCORES]
    official = [f"MagNet {n}" for n in official]
    unions = union_detectors(list(variants), official, detector.SCORES)
    kappas = [k for k in sets if k not in ("val", "clean")]
    magnet_run = detector.magnet_run(magnet, logits_fn, sets, batch_size=batch_size)
    magnet_names = list(magnet_run["val"])
    bar = tqdm(
        total=len(keys) * len(variants) * len(sets),
        desc=progress,
        unit="set",
        disable=progress is None,
    )
    remix = []
    for i, key in enumerate(keys):
        done = scoring.get(f"key {i}") if scoring is not None else None
        if done is not None:  # scored before the run was killed
            remix.append(_evaluated_from_json(done))
            bar.update(len(variants) * len(sets))
            continue
        scores = detector.remix_run(
            key,
            variants,
            logits_fn,
            sets,
            temperature=temperature,
            batch_size=batch_size,
            on_set=bar.update,
        )
        remix.append(detector.evaluate_run(scores, remix_names, unions, drop_rates, kappas))
        if scoring is not None:
            scoring.put(f"key {i}", _evaluated_to_json(remix[-1]))
    bar.close()
    evaluated_magnet = detector.evaluate_run(magnet_run, magnet_names, unions, drop_rates, kappas)
    summary = summarize_runs(
        remix, evaluated_magnet, remix_names + magnet_names, unions, drop_rates, rows
    )
    shipped = {f"MagNet {k}": float(v) for k, v in magnet.thresholds.items()}
    return {
        **{k: summary[k] for k in ("detectors", "unions", "thresholds")},
        "magnet_thresholds_shipped": shipped,
        **{k: summary[k] for k in ("clean_rejected", "rows")},
    }


def _evaluated_to_json(evaluated: dict) -> dict:
    """An :func:`remix_jax.detector.evaluate_run` result with its tuple keys as lists."""
    return {part: [[list(k), v] for k, v in values.items()] for part, values in evaluated.items()}


def _evaluated_from_json(stored: dict) -> dict:
    """The inverse of :func:`_evaluated_to_json` (JSON keeps floats exactly)."""
    return {part: {tuple(k): v for k, v in values} for part, values in stored.items()}


def render_again(out: str) -> None:
    """:func:`write_outputs` of the result stored in ``<out>.json``: its table and plot
    drawn again by the current code, its numbers as stored.

    Raises:
      FileNotFoundError: ``<out>.json`` does not exist.
    """
    with open(out + ".json") as f:
        write_outputs(out, json.load(f))


def write_outputs(out: str, result: dict) -> None:
    """JSON, Markdown tables and the AUC-vs-kappa plot, each written atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    result_files.write_json(out + ".json", result)
    result_files.write_text(out + ".md", markdown(result))
    fig, ax = plt.subplots(figsize=(7.2, 3.6))
    plot_panel(ax, result)
    ax.legend(
        fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False, handlelength=3
    )
    fig.tight_layout()
    result_files.save_figure(fig, out + ".png", dpi=150)


def plot_panel(ax, result: dict) -> None:
    """ROC AUC vs kappa, one line per detector (mean +- std over keys)."""
    for n in result["detectors"]:
        points = [(r["confidence"], r["auc"][n]) for r in result["rows"] if r["auc"][n]]
        if points:
            ax.errorbar(
                [k for k, _ in points],
                [a["mean"] for _, a in points],
                yerr=[a["std"] for _, a in points],
                marker="o",
                ms=3,
                capsize=2,
                label=n,
                linestyle=STYLES.get(n.rsplit(" ", 1)[0], "-."),
                color=COLORS.get(n.rsplit(" ", 1)[-1]),
            )
    ax.set_xlabel("confidence $\\kappa$")
    ax.set_ylabel("ROC AUC (clean vs adversarial)")
    ax.set_title(
        f"{result['dataset']}, {result['attack']} ({result['preset']}): detection", fontsize=10
    )
    lowest = min((a["mean"] for r in result["rows"] for a in r["auc"].values() if a), default=1)
    ax.set_ylim(min(0.45, lowest - 0.05), 1.02)
    ax.grid(alpha=0.3)


def _cell(v, digits: int) -> str:
    if v is None:
        return "-"
    return f"{v['mean']:.{digits}f}" + (f" ± {v['std']:.{digits}f}" if v["runs"] > 1 else "")


def markdown(result: dict) -> str:
    """The result as Markdown: AUC per kappa, then detection rates per drop rate."""
    s = result["settings"]
    rows = result["rows"]
    kappas = [f"{r['confidence']:g}" for r in rows]
    lines = [
        f"# {result['dataset']}, {result['attack']} ({result['preset']} preset): "
        "detecting adversarial examples",
        "",
        f"`{result['command']}` on {result['machine']} (commit {result['git_commit'][:10]}, "
        f"{result['date']}, {result['wall_seconds']:.0f} s); data: {result['data_source']}. "
        f"Negatives: {result['negatives']}. Positives: {result['positives']}. Thresholds "
        f"on {result['validation']['split']}. REMIX scores: mean ± std over "
        f"{s['num_keys']} keys (n = {s['n_masks']}, T = {s['temperature']:g}); "
        + "; ".join(f"{v} = {d}" for v, d in s["variants"].items())
        + "; MagNet: deterministic.",
        "",
        "ROC AUC (1 = separates, 0.5 = chance):",
        "",
        "| detector | " + " | ".join(f"κ={k}" for k in kappas) + " |",
        "|---" * (len(kappas) + 1) + "|",
        "| positives / images | " + " | ".join(f"{r['fooled']}/{r['images']}" for r in rows) + " |",
        *_count_lines(rows),
    ]
    lines += [
        f"| {n} | " + " | ".join(_cell(r["auc"][n], 3) for r in rows) + " |"
        for n in result["detectors"]
    ]
    for rate in s["drop_rates"]:
        lines += _detected_lines(result, rate, kappas)
    return "\n".join(lines) + "\n"


def _count_lines(rows: Sequence[dict]) -> list[str]:
    """Table rows for the counts that differ from the positives' in some column."""
    # examples crafted elsewhere (e.g. at TF32) may pass the success test there and not here
    counts = {
        "success where crafted": [
            round(r["success_where_crafted"] * r["images"] / 100)
            if "success_where_crafted" in r
            else None
            for r in rows
        ],
        "success re-checked here": [r.get("verified") for r in rows],
        "misclassified here": [r.get("misclassified") for r in rows],
    }
    return [
        f"| {label} | " + " | ".join(map(str, values)) + " |"
        for label, values in counts.items()
        if any(v is not None and v != r["fooled"] for v, r in zip(values, rows, strict=True))
    ]


def _detected_lines(result: dict, rate: str, kappas: Sequence[str]) -> list[str]:
    """The detection table at one drop rate, after a blank line."""
    lines = [
        "",
        f"Detected (% of fooled examples) at drop rate {rate} (threshold from "
        "validation; column 'clean': % of the clean test images rejected):",
        "",
        "| detector | clean | " + " | ".join(f"κ={k}" for k in kappas) + " |",
        "|---" * (len(kappas) + 2) + "|",
    ]
    return lines + [
        f"| {n} | {_cell(result['clean_rejected'][n][rate], 1)} | "
        + " | ".join(_cell(r["detected"][n][rate], 1) for r in result["rows"])
        + " |"
        for n in result["clean_rejected"]
    ]
