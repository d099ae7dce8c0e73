"""A REMIX detector: the one the paper proposes in its conclusion (Sec. V).

"The distributional difference in x_hat^1, ..., x_hat^n could be used to detect
adversarial examples by measuring their distances or divergences from the input
images." REMIX already makes n inpainted copies of every input (Eq. 2); each copy
restores from its neighbours the pixels its mask hid, and an adversarial
perturbation, unlike natural image structure, is hard to predict from neighbours.
Scores (higher = more suspicious), all differentiable w.r.t. the input so that an
adaptive attacker can add them to its loss:

- "inpaint-L2": mean over copies of the squared error between the copy and the
  input on the pixels that copy hid (normalised by the number of hidden elements);
- "copies-JSD": mean over copies of the Jensen-Shannon divergence between the
  classifier's softmax at temperature T on the input and on the copy;
- "copies-disagree": mean pairwise JSD among the copies' softmaxes (n >= 2);
- "output-JSD": JSD between the softmaxes on the input and on REMIX's output (the
  combined copies): MagNet's JSD detector with REMIX in place of its autoencoder.

With a reformer the copies are inpainted from the reformed input, as REMIX does, but
every score compares them with the raw input: the reformer itself removes much of
the perturbation, and measuring against its output would hide what it removed.

Thresholds follow MagNet (:func:`remix_jax.magnet.threshold`): an input is rejected
when its score is >= the threshold set on clean validation images at a drop rate.

A detector run (``eval.detector``) scores named image sets, "val" (clean validation
images, for the thresholds), "clean" (the negatives) and each kappa (its positives):
:func:`remix_run` under one key per run, :func:`magnet_run` once (deterministic),
then :func:`evaluate_run` gives each run's thresholds, rejections and ROC AUCs.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from remix_jax import sharding
from remix_jax._checks import check_images, check_int, check_key, check_logits_shape, check_real
from remix_jax.defense import RemixParams, autoencoder_fn, check_defense_inputs, inpaint_copies
from remix_jax.magnet import MagNetParams, jensen_shannon, threshold
from remix_jax.magnet import detector_scores as magnet_detector_scores
from remix_jax.masking import num_positions

LogitsFn = Callable[[jax.Array], jax.Array]
InpaintFn = Callable[[jax.Array, jax.Array], jax.Array]
SCORES = ("inpaint-L2", "copies-JSD", "copies-disagree", "output-JSD")


def _check(params: RemixParams, key, x) -> None:
    check_key("key", key)
    check_defense_inputs(params, x)


def _check_temperature(temperature) -> None:
    # a traced temperature passes (jit); a concrete one must be a finite number > 0
    check_real("temperature", temperature, above=0.0)


def _copies_each(inpaint_fn, keys, x, n, per_channel):
    """:func:`mask_inpaint_copies` with one key per image, keys (B,)."""
    restored, masks = inpaint_copies(inpaint_fn, keys, x, n, per_channel)
    return masks * x[None] + (1 - masks) * restored, masks


def mask_inpaint_copies(
    inpaint_fn: InpaintFn, key: jax.Array, x: jax.Array, n: int, *, per_channel: bool = False
) -> tuple[jax.Array, jax.Array]:
    """The n inpainted copies behind :func:`remix_jax.mask_inpaint` (same key, same masks).

    Copy i keeps the visible pixels and takes the hidden ones from the inpainter,
    m_i * x + (1 - m_i) * inpaint_fn(m_i * x, m_i) (the inpainter is trained on
    hidden pixels only), so ``mask_inpaint(inpaint_fn, key, x, n)`` is
    ``sum_i copies[i] * (1 - masks[i])``.

    Args:
      inpaint_fn: ``fn(masked (B, H, W, C), masks (B, H, W, 1|C)) -> (B, H, W, C)``.
      key: PRNG key; ``jax.random.split(key, B)`` gives each image its masks.
      x: (B, H, W, C) float images in [0, 1].
      n: number of complementary masks, >= 1.
      per_channel: partition the H*W*C elements instead of the H*W pixels.

    Returns:
      copies (n, B, H, W, C) and masks (n, B, H, W, 1) (or (n, B, H, W, C) with
      ``per_channel``), 0 on the positions each copy hid.
    """
    check_key("key", key)
    check_images("x", x)
    n = check_int("n", n, low=1, high=num_positions(x.shape[1:], per_channel))
    x = jnp.asarray(x, jnp.float32)  # copies mix x with the inpainter's float32 output
    return _copies_each(inpaint_fn, jax.random.split(key, x.shape[0]), x, n, per_channel)


def _remix_copies_each(params, keys, x):
    inputs = x = jnp.asarray(x, jnp.float32)  # the networks' dtype, whatever x's float
    if params.reformer is not None:
        inputs = autoencoder_fn(params.reformer_config, params.reformer)(x)
    inpaint = autoencoder_fn(params.inpainter_config, params.inpainter)
    return _copies_each(inpaint, keys, inputs, params.n_masks, params.per_channel)


def inpainted_copies(
    params: RemixParams, key: jax.Array, x: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """The n inpainted copies one REMIX round makes of ``x``: the reformer (if any),
    then :func:`mask_inpaint_copies` of the reformed images with ``params.n_masks``.

    The combined copies are ``mask_inpaint`` of the reformed images for the same key,
    i.e. ``defend(params, k, x, iterations=1, chunk=None)`` for ``key =
    jax.random.fold_in(k, 0)``.

    Args:
      params: :class:`RemixParams` with ``n_masks >= 2``.
      key: PRNG key.
      x: (B, H, W, C) float images in [0, 1].

    Returns:
      copies (n, B, H, W, C) and masks (n, B, H, W, 1|C), as :func:`mask_inpaint_copies`.
    """
    _check(params, key, x)
    return _remix_copies_each(params, jax.random.split(key, x.shape[0]), x)


def scores_of_copies(
    logits_fn: LogitsFn,
    x: jax.Array,
    copies: jax.Array,
    masks: jax.Array,
    *,
    temperature: float = 10.0,
) -> dict[str, jax.Array]:
    """The detector scores of inputs given their inpainted copies (no randomness).

    Args:
      logits_fn: the protected classifier, ``(B, H, W, C) -> (B, K)``; it sees x, the
        combined copies and the copies in one batch of (n + 2) * B.
      x: (B, H, W, C) reference images (the raw inputs).
      copies: (n, B, H, W, C) inpainted copies of x, n >= 2.
      masks: (n, B, H, W, 1|C) their complementary masks (0 = hidden).
      temperature: softmax temperature T of the JSD scores.

    Returns:
      score name (:data:`SCORES`) -> (B,) float32.
    """
    check_images("x", x)
    shape, mask_shape = getattr(copies, "shape", None), getattr(masks, "shape", None)
    if shape is None or len(shape) != 5 or shape[1:] != x.shape or shape[0] < 2:
        raise ValueError(f"copies must have shape (n >= 2, *{x.shape}), got {shape}")
    if mask_shape is None or mask_shape[:-1] != shape[:-1] or mask_shape[-1] not in (1, shape[-1]):
        raise ValueError(f"masks must have shape {shape[:-1]} + (1|C,), got {mask_shape}")
    _check_temperature(temperature)
    x = jnp.asarray(x, copies.dtype)  # compared with the copies: another float dtype is cast
    n, b = shape[:2]
    hidden = jnp.broadcast_to(1 - masks, copies.shape)
    error = jnp.sum((copies - x[None]) ** 2 * hidden, axis=(2, 3, 4))
    per_copy = error / jnp.sum(hidden, axis=(2, 3, 4))  # (n, B)
    combined = jnp.sum(copies * (1 - masks), axis=0)
    logits = logits_fn(jnp.concatenate([x, combined, copies.reshape(n * b, *x.shape[1:])]))
    check_logits_shape(logits.shape, (n + 2) * b)
    # in the logits' dtype: a numpy integer temperature would otherwise promote them
    probs = jax.nn.softmax(logits / jnp.asarray(temperature, logits.dtype), axis=-1)
    # the class count spelled out: reshape's -1 divides by zero on an empty batch
    p_copies = probs[2 * b :].reshape(n, b, probs.shape[-1])
    p_input, p_output = probs[:b], probs[b : 2 * b]
    pairs = itertools.combinations(range(n), 2)
    disagree = jnp.stack([jensen_shannon(p_copies[i], p_copies[j]) for i, j in pairs])
    scores = {
        "inpaint-L2": jnp.mean(per_copy, axis=0),
        "copies-JSD": jnp.mean(jensen_shannon(p_input[None], p_copies), axis=0),
        "copies-disagree": jnp.mean(disagree, axis=0),
        "output-JSD": jensen_shannon(p_input, p_output),
    }
    return {k: v.astype(jnp.float32) for k, v in scores.items()}


def _scores_each(params, logits_fn, keys, x, temperature):
    copies, masks = _remix_copies_each(params, keys, x)
    return scores_of_copies(logits_fn, x, copies, masks, temperature=temperature)


def detector_scores(
    params: RemixParams,
    logits_fn: LogitsFn,
    key: jax.Array,
    x: jax.Array,
    *,
    temperature: float = 10.0,
) -> dict[str, jax.Array]:
    """Every REMIX detector score of every input (higher = more suspicious).

    :func:`inpainted_copies` then :func:`scores_of_copies`. Jittable and
    differentiable w.r.t. ``x`` (the masks depend on ``key`` only).

    Args:
      params: :class:`RemixParams` with ``n_masks >= 2``.
      logits_fn: the protected classifier, ``(B, H, W, C) -> (B, K)``.
      key: PRNG key; the masks are those of :func:`inpainted_copies`.
      x: (B, H, W, C) float images in [0, 1].
      temperature: softmax temperature T of the JSD scores (MagNet's: 10 and 40).

    Returns:
      score name (:data:`SCORES`) -> (B,) float32.
    """
    _check(params, key, x)
    _check_temperature(temperature)
    return _scores_each(params, logits_fn, jax.random.split(key, x.shape[0]), x, temperature)


# logits_fn and the temperature are static: one compilation per classifier and T
@functools.partial(jax.jit, static_argnums=(1, 4))
def _scores_jit(params, logits_fn, keys, x, temperature):
    return _scores_each(params, logits_fn, keys, x, temperature)


def batched_scores(
    params: RemixParams,
    logits_fn: LogitsFn,
    key: jax.Array,
    x: np.ndarray,
    *,
    temperature: float = 10.0,
    batch_size: int = 250,
) -> dict[str, np.ndarray]:
    """:func:`detector_scores` of (N, H, W, C) images, in jitted batches.

    Image i's masks come from ``jax.random.split(key, N)[i]`` whatever the batch
    size, so the scores equal ``detector_scores(params, logits_fn, key, x)`` (up to
    float rounding).

    Returns:
      score name -> (N,) float32 numpy array.
    """
    _check(params, key, x)
    _check_temperature(temperature)
    batch_size = check_int("batch_size", batch_size, low=1)
    keys = jax.random.split(key, len(x))
    parts = sharding.map_batches(
        lambda kb, xb: _scores_jit(params, logits_fn, kb, xb, float(temperature)),
        (keys, x),
        batch_size,
    )  # each batch split over the devices when there are several
    return {k: np.concatenate([p[k] for p in parts]) for k in SCORES}


def calibrate(
    params: RemixParams,
    logits_fn: LogitsFn,
    key: jax.Array,
    x_val: np.ndarray,
    drop_rates: Mapping[str, float],
    *,
    temperature: float = 10.0,
    batch_size: int = 250,
) -> dict[str, float]:
    """MagNet's thresholds for the REMIX scores, set on clean validation images.

    Args:
      params, logits_fn, key, temperature, batch_size: as :func:`batched_scores`.
      x_val: (N, H, W, C) clean validation images in [0, 1], none of them evaluated.
      drop_rates: score name -> fraction of ``x_val`` to reject, in (0, 1).

    Returns:
      score name -> threshold: floor(N * rate) validation images (ties aside) score
      >= it under the masks of ``key``.
    """
    unknown = set(drop_rates) - set(SCORES)
    if unknown:
        raise ValueError(f"drop_rates names unknown scores {sorted(unknown)}; known: {SCORES}")
    for name, rate in drop_rates.items():
        if not 0.0 < rate < 1.0:
            raise ValueError(f"drop_rates[{name!r}] must be in (0, 1), got {rate}")
    scores = batched_scores(
        params, logits_fn, key, x_val, temperature=temperature, batch_size=batch_size
    )
    return {name: threshold(scores[name], rate) for name, rate in drop_rates.items()}


def roc_auc(clean_scores: np.ndarray, adversarial_scores: np.ndarray) -> float:
    """Area under the ROC curve of "adversarial inputs score higher" (Mann-Whitney U).

    The probability that a random adversarial score exceeds a random clean one, ties
    counted 1/2: 1.0 separates perfectly, 0.5 is chance.

    Args:
      clean_scores: (N0,) finite scores of clean inputs (the negatives).
      adversarial_scores: (N1,) finite scores of adversarial inputs (the positives).
    """
    neg = np.asarray(clean_scores, np.float64).ravel()
    pos = np.asarray(adversarial_scores, np.float64).ravel()
    for name, a in (("clean_scores", neg), ("adversarial_scores", pos)):
        if a.size == 0 or not np.all(np.isfinite(a)):
            raise ValueError(f"{name} must be non-empty and finite, got {a.size} values")
    _, group, counts = np.unique(
        np.concatenate([neg, pos]), return_inverse=True, return_counts=True
    )
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[group]  # 1-based, ties averaged
    u = ranks[neg.size :].sum() - pos.size * (pos.size + 1) / 2.0
    return float(u / (neg.size * pos.size))


def set_salt(where: str | float) -> int:
    """What a detector run folds into its key for the masks of one image set.

    0 for the validation images ("val"), 1 for the clean test images ("clean") and
    100 + round(10 kappa) for the adversarial examples of a kappa: each set draws its
    own masks, and a kappa's masks do not depend on which other kappas are scored.
    """
    if where == "val":
        return 0
    if where == "clean":
        return 1
    return 100 + round(where * 10)


def remix_run(
    key: jax.Array,
    variants: Mapping[str, RemixParams],
    logits_fn: LogitsFn,
    sets: Mapping[str | float, np.ndarray],
    *,
    temperature: float = 10.0,
    batch_size: int = 250,
    on_set: Callable[[], object] | None = None,
) -> dict:
    """Every REMIX variant's detector scores of every image set, under one key.

    Set ``where`` draws its masks from ``fold_in(key, set_salt(where))``, the same
    masks for every variant, whatever the other sets.

    Args:
      key: PRNG key of the run.
      variants: name -> :class:`RemixParams` with ``n_masks >= 2`` (e.g. REMIX with
        and without its reformer).
      logits_fn: the protected classifier, ``(B, H, W, C) -> (B, K)``.
      sets: where ("val", "clean" or a kappa) -> (N, H, W, C) images in [0, 1]; N may
        be 0 (nothing fooled the classifier at that kappa).
      temperature, batch_size: as :func:`batched_scores`.
      on_set: called after each (variant, set), e.g. to advance a progress bar.

    Returns:
      where -> "<variant> <score>" -> (N,) float32 scores; {} for an empty set.
    """
    check_key("key", key)
    run = {where: {} for where in sets}
    for v, params in variants.items():
        for where, x in sets.items():
            if len(x):
                scores = batched_scores(
                    params,
                    logits_fn,
                    jax.random.fold_in(key, set_salt(where)),
                    x,
                    temperature=temperature,
                    batch_size=batch_size,
                )
                run[where].update({f"{v} {k}": val for k, val in scores.items()})
            if on_set is not None:
                on_set()
    return run


def magnet_run(
    magnet: MagNetParams,
    logits_fn: LogitsFn,
    sets: Mapping[str | float, np.ndarray],
    *,
    batch_size: int = 250,
) -> dict:
    """MagNet's detector scores of every image set (deterministic: no key).

    Args:
      magnet: the MagNet whose detectors score (thresholds not used).
      logits_fn: the protected classifier (its JSD detectors').
      sets: where -> (N, H, W, C) images in [0, 1], as :func:`remix_run`.
      batch_size: images per jitted call.

    Returns:
      where -> "MagNet <detector>" -> (N,) float32 scores; {} for an empty set.
    """
    # the weights are closed over (constants of the compiled function), as the
    # committed runs computed them: passed as arguments they may compile to other
    # float rounding
    fn = jax.jit(lambda x: magnet_detector_scores(magnet, logits_fn, x))

    def scores(x):
        if not len(x):
            return {}
        parts = [fn(x[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        return {f"MagNet {k}": np.concatenate([np.asarray(p[k]) for p in parts]) for k in parts[0]}

    return {where: scores(x) for where, x in sets.items()}


def evaluate_run(
    run: Mapping, names: Sequence[str], unions: Mapping, drop_rates: Sequence[float], kappas
) -> dict:
    """AUC, thresholds, clean rejection and detection (%) of one run's scores.

    Args:
      run: "val" / "clean" / each kappa -> detector name -> (N,) scores (a kappa's
        dict is empty when nothing fooled the classifier), as :func:`remix_run`.
      names: the detectors to evaluate.
      unions: label -> member detectors: a union fires when any member does (at the
        members' thresholds for the same drop rate); only those within ``names``.
      drop_rates: validation rejection rates that set the thresholds.
      kappas: the kappas in ``run``.

    Returns:
      "auc" {(name, kappa)}, "threshold" {(name, rate)}, "clean_rejected"
      {(name, rate)} and "detected" {(name, rate, kappa)}.
    """
    out = {"auc": {}, "threshold": {}, "clean_rejected": {}, "detected": {}}
    fires = {}  # (name, rate) -> {where: (N,) bool}
    for n in names:
        for r in drop_rates:
            t = threshold(run["val"][n], r)
            out["threshold"][(n, r)] = t
            fires[(n, r)] = {w: run[w][n] >= t for w in run if n in run[w]}
    for label, members in unions.items():
        if set(members) <= set(names):
            for r in drop_rates:
                fires[(label, r)] = {
                    w: np.any([fires[(m, r)][w] for m in members], axis=0)
                    for w in fires[(members[0], r)]
                }
    for (n, r), f in fires.items():
        out["clean_rejected"][(n, r)] = float(f["clean"].mean() * 100)
        for kappa in kappas:
            if kappa in f:
                out["detected"][(n, r, kappa)] = float(f[kappa].mean() * 100)
    for n in names:
        for kappa in kappas:
            if n in run.get(kappa, {}):
                out["auc"][(n, kappa)] = roc_auc(run["clean"][n], run[kappa][n])
    return out
