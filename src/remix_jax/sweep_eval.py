"""The Fig. 2 sweep scored: every defense on the examples crafted at each kappa.

``eval.sweep`` crafts (through :class:`remix_jax.adversarial_cache.AdversarialCache`)
and calls this module to score; :mod:`remix_jax.sweep_report` renders the result.
Scoring keeps every finished piece in a :class:`remix_jax.progress.ProgressFile`, so a
killed scoring resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np

from remix_jax import adversarial_cache, evaluation, progress, sharding
from remix_jax.evaluation import Defense


def craft_kappa(
    cache: adversarial_cache.AdversarialCache,
    attack: Callable,
    logits_fn: Callable,
    x: np.ndarray,
    labels: np.ndarray,
    kappa: float,
    settings: Mapping,
    batch_size: int,
    *,
    machine: str,
    on_step: Callable[[int, int, int], None] = lambda start, end, done: None,
    on_batch: Callable[[int, dict, bool], None] | None = None,
) -> dict[str, np.ndarray]:
    """The examples of one kappa, crafted batch by batch into ``cache`` (or read from it).

    Each finished batch is kept on disk, so a killed run resumes mid-kappa, even with
    another ``batch_size``.

    Args:
      cache: the attack's cache for these images and settings.
      attack: a registered confidence attack, ``attack(logits_fn, x, labels,
        confidence=, on_step=, **settings)``.
      x, labels: (N, H, W, C) images and (N,) attack labels (targets if targeted).
      machine: recorded with each batch's time.
      on_step: ``(start, end, search steps done)`` while a batch is crafted.
      on_batch: ``(start, part, crafted_now)`` after each batch (see ``cache.craft``).

    Raises:
      adversarial_cache.SettingsMismatch: the cache holds other settings' examples.
    """

    def attack_batch(sl: slice) -> dict:
        start, end = sl.start, sl.start + len(x[sl])
        on_step(start, end, 0)
        xb, yb = sharding.split_if_divisible((x[sl], labels[sl]))  # over all devices
        result = attack(
            logits_fn,
            xb,
            yb,
            confidence=kappa,
            on_step=lambda done: on_step(start, end, done),
            **settings,
        )
        return {k: getattr(result, k) for k in adversarial_cache.FIELDS}

    return cache.craft(kappa, attack_batch, batch_size, machine=machine, on_batch=on_batch)


def craft_sweep(
    cache: adversarial_cache.AdversarialCache,
    attack: Callable,
    logits_fn: Callable,
    x: np.ndarray,
    labels: np.ndarray,
    kappas: Iterable[float],
    settings: Mapping,
    batch_size: int,
    *,
    machine: str,
    name: str,
) -> dict[float, dict]:
    """Every kappa crafted (or read from ``cache``) with its success re-checked here,
    with progress bars (per kappa: images done and the batch's search step).

    Args:
      name: the attack's name in the progress lines (e.g. "cw-targeted").
      others: as :func:`craft_kappa`; ``settings["targeted"]`` picks the success test.

    Returns:
      kappa -> the re-checked arrays (:func:`recheck`).
    """
    from tqdm import tqdm

    crafted = {}
    for kappa in tqdm(list(kappas), desc=f"{name} sweep"):
        arrays = _craft_with_progress(
            cache, attack, logits_fn, x, labels, kappa, settings, batch_size, machine, name
        )
        crafted[kappa] = recheck(logits_fn, arrays, labels, settings["targeted"], kappa)
        ok = crafted[kappa]["success"]
        mean_l2 = f"mean L2 {crafted[kappa]['l2'][ok].mean():.3f}" if ok.any() else "no success"
        tqdm.write(f"{name} kappa={kappa:g}: success {ok.mean():.1%}, {mean_l2}")
    return crafted


def _craft_with_progress(
    cache, attack, logits_fn, x, labels, kappa, settings, batch_size, machine, name
):
    """:func:`craft_kappa` under a progress bar of its images and search steps."""
    from tqdm import tqdm

    bar = tqdm(total=len(x), desc=f"{name} kappa={kappa:g}", unit="img", leave=False)
    steps = settings["binary_search_steps"]

    def on_step(start, end, done):  # one batch is tens of minutes on a CPU
        bar.set_postfix_str(f"images {start}-{end}: search step {done}/{steps} done")

    def on_batch(start, part, crafted_now):
        if crafted_now:
            tqdm.write(
                f"{name} kappa={kappa:g} images {start}-{start + len(part['success'])}"
                f": {part['seconds']:.0f} s wall, {part['cpu_seconds']:.0f} s CPU"
            )
        bar.update(len(part["success"]))

    try:
        return craft_kappa(
            cache, attack, logits_fn, x, labels, kappa, settings, batch_size,
            machine=machine, on_step=on_step, on_batch=on_batch,
        )  # fmt: skip
    finally:
        bar.close()


def scoring_identity(settings, indices, num_keys, defenses, remix, weights, seed=0) -> dict:
    """What a sweep's scores depend on: its progress file resumes only a run with all of
    it equal (the attack settings, the images, the keys, the defenses and their weights).

    Args:
      remix: the scored :class:`~remix_jax.defense.RemixParams`.
      weights: :func:`remix_jax.progress.fingerprint` of every scored network.
    """
    return {
        "settings": settings,
        "indices": indices,
        "num_keys": num_keys,
        "seed": seed,
        "keys": "per image",  # remix_jax.keys; scores drawn before it never resume
        "defenses": list(defenses),
        "remix": {
            "n_masks": remix.n_masks,
            "per_channel": remix.per_channel,
            "inpainter": remix.inpainter_config.to_dict(),
        },
        "weights": weights,
    }


def recheck(logits_fn, crafted: dict, labels: np.ndarray, targeted: bool, kappa: float) -> dict:
    """The cached kappa with ``success`` re-checked here (``success_crafted``: as cached).

    Args:
      logits_fn: the bare classifier the examples were crafted on.
      crafted: the cache's arrays of one kappa (``adversarial``, ``success``, ...).
      labels: (N,) the attack's labels (targets when ``targeted``).
    """
    here = evaluation.recheck_success(logits_fn, crafted["adversarial"], labels, targeted, kappa)
    return {**crafted, "success_crafted": crafted["success"], "success": crafted["success"] & here}


def attack_row(kappa: float, crafted: dict) -> dict:
    """What the attack did at ``kappa``: success, distortions of the successes, time;
    and, where the re-check here fails examples the attack counted as successes (a
    margin within float rounding of kappa on another machine), their indices
    (``failed_recheck``, left out when there are none)."""
    ok = crafted["success"]
    timing = adversarial_cache.crafting_time(crafted)
    failed = np.flatnonzero(crafted["success_crafted"] & ~ok)
    return {
        "confidence": kappa,
        "attack_success": float(ok.mean() * 100),
        "attack_success_where_crafted": float(crafted["success_crafted"].mean() * 100),
        "fooled": int(ok.sum()),
        "images": len(ok),
        **{
            f"mean_{n}": float(crafted[n][ok].mean()) if ok.any() else None
            for n in ("l1", "l2", "linf")
        },
        "craft_seconds": timing["seconds"],
        "craft_cpu_seconds": timing["cpu_seconds"],
        "craft_images_timed": timing["images_timed"],
        "craft_machines": timing["machines"],
        **({"failed_recheck": failed.tolist()} if len(failed) else {}),
    }


def score_clean(
    defenses: Mapping[str, Defense], x: np.ndarray, y: np.ndarray, num_keys: int, seed: int = 0
) -> dict:
    """Clean accuracy of every defense, under the evaluation keys of ``seed`` (the same
    keys as the adversarial rows: clean and adversarial scores are paired)."""
    rows = {}
    for name, defense in defenses.items():
        right = defense.correct_over_keys(x, y, False, num_keys, seed)
        rows[name] = evaluation.summarize([np.mean(r) for r in right])
    return rows


def score_kappa(
    defenses: Mapping[str, Defense],
    kappa: float,
    crafted: dict,
    y: np.ndarray,
    num_keys: int,
    seed: int = 0,
) -> dict:
    """One row of the figure: the attack, then every defense on all N examples ("all":
    failed attacks left as the clean image) and on those that fooled the bare
    classifier ("fooled")."""
    ok = crafted["success"]
    row = attack_row(kappa, crafted)
    for name, defense in defenses.items():
        right = defense.correct_over_keys(crafted["adversarial"], y, True, num_keys, seed)
        row[f"{name} | all"] = evaluation.summarize([r.mean() for r in right])
        row[f"{name} | fooled"] = (
            evaluation.summarize([r[ok].mean() for r in right]) if ok.any() else None
        )
    return row


def score_sweep(
    defenses: Mapping[str, Defense],
    x: np.ndarray,
    y: np.ndarray,
    crafted: Mapping[float, dict],
    num_keys: int,
    scoring: progress.ProgressFile,
    kappas: Callable[[Iterable[float]], Iterable[float]] = iter,
    seed: int = 0,
) -> tuple[dict, list[dict]]:
    """(clean rows, one row per kappa), resuming from and saving to ``scoring``.

    Args:
      defenses: name -> :class:`Defense`, in table order.
      x, y: the N clean images (N, H, W, C) and their labels.
      crafted: kappa -> the re-checked cache arrays (:func:`recheck`).
      num_keys: evaluation keys per randomized defense.
      scoring: the run's progress file (its identity must name everything scored).
      kappas: wraps the kappas' iteration (e.g. a progress bar).
      seed: the evaluation keys' seed (:func:`remix_jax.keys.evaluation_keys`).
    """
    clean = scoring.get("clean") or {}
    if not clean:
        clean = score_clean(defenses, x, y, num_keys, seed)
        scoring.put("clean", clean)
    rows = []
    for kappa in kappas(list(crafted)):
        row = scoring.get(f"kappa {kappa:g}")
        if row is None:
            row = score_kappa(defenses, kappa, crafted[kappa], y, num_keys, seed)
            scoring.put(f"kappa {kappa:g}", row)
        rows.append(row)
    return clean, rows
