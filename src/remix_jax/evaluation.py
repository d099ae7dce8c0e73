"""Scoring classifiers behind defenses: batched accuracy, mean and spread over keys."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from remix_jax import magnet as magnet_lib
from remix_jax import sharding
from remix_jax._checks import check_images, check_int, check_key, check_logits_shape
from remix_jax.attacks.common import is_success
from remix_jax.defense import RemixParams, autoencoder_fn, check_defense_inputs, defend
from remix_jax.keys import evaluation_keys, image_keys

LogitsFn = Callable[[jax.Array], jax.Array]


# logits_fn is static: compiled once per classifier function and batch shape, not once
# per call (a sweep calls predict for every defense, key and kappa)
@functools.partial(jax.jit, static_argnums=0)
def _argmax(logits_fn: LogitsFn, xb: jax.Array) -> jax.Array:
    return jnp.argmax(_logits(logits_fn, xb), axis=-1)


def _logits(logits_fn: LogitsFn, xb: jax.Array) -> jax.Array:
    """``logits_fn(xb)``, checked at trace time to be (B, K >= 2): the argmax of a (B,)
    output would be one scalar, of a (B, 1) output always 0."""
    logits = logits_fn(xb)
    check_logits_shape(logits.shape, xb.shape[0])
    return logits


def predict(logits_fn: LogitsFn, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Argmax predictions (N,) of ``logits_fn`` over (N, H, W, C) images, in batches.

    Args:
      logits_fn: ``fn(x (B, H, W, C)) -> logits (B, K)``.
      x: (N, H, W, C) float images, in whatever range ``logits_fn`` takes; N may be 0.
      batch_size: images per jitted call.

    Returns:
      (N,) int32 labels.

    Raises:
      TypeError / ValueError: for images that are not (N, H, W, C) floats without NaN
        or inf (a NaN image would be labelled 0 silently), or a bad batch size.
    """
    check_images("x", x, low=-np.inf, high=np.inf)  # the range is the classifier's business
    batch_size = check_int("batch_size", batch_size, low=1)
    return _predict(logits_fn, x, batch_size)


def _predict(logits_fn: LogitsFn, x, batch_size: int) -> np.ndarray:
    """:func:`predict` without the checks (for images the library made itself). Each
    batch is split over the devices when there are several (sharding.map_batches)."""
    parts = sharding.map_batches(lambda xb: _argmax(logits_fn, xb), (x,), batch_size)
    return np.concatenate(parts) if parts else np.zeros(0, np.int32)


@functools.partial(jax.jit, static_argnums=(0, 3))
def _success(logits_fn: LogitsFn, xb, labels, targeted: bool, kappa) -> jax.Array:
    return is_success(_logits(logits_fn, xb), labels, targeted, kappa)


def recheck_success(
    logits_fn: LogitsFn,
    adversarial: np.ndarray,
    labels: np.ndarray,
    targeted: bool,
    kappa: float,
    batch_size: int = 1000,
) -> np.ndarray:
    """(N,) bool: each example (N, H, W, C) meets its goal at ``kappa`` on this machine.

    The attack's own success flags come from the machine that crafted it; scoring
    re-checks them with its own arithmetic (a margin at kappa can flip with the
    float order of another backend).
    """
    return np.concatenate(
        [
            np.asarray(
                _success(
                    logits_fn,
                    adversarial[i : i + batch_size],
                    labels[i : i + batch_size],
                    targeted,
                    kappa,
                )
            )
            for i in range(0, len(labels), batch_size)
        ]
    )


def first_correct(
    logits_fn: LogitsFn, x: np.ndarray, labels: np.ndarray, n: int, batch_size: int = 1000
) -> np.ndarray:
    """Indices (<= n,) of the first ``n`` images (N, H, W, C) the classifier gets right:
    the images every oblivious and adaptive evaluation attacks.

    Predicts batch after batch only until ``n`` are found (the first batch holds them
    for any n up to about the classifier's accuracy times ``batch_size``), not the
    whole split: the same batches as :func:`predict`'s, so the same labels.
    """
    check_images("x", x, low=-np.inf, high=np.inf)
    batch_size = check_int("batch_size", batch_size, low=1)
    found = np.zeros(0, np.int64)
    for start in range(0, len(x), batch_size):
        if len(found) >= n:
            break
        batch = slice(start, start + batch_size)
        right = _predict(logits_fn, x[batch], batch_size) == labels[batch]
        found = np.concatenate([found, start + np.flatnonzero(right)])
    return found[:n]


def remix_predict(
    logits_fn: LogitsFn,
    params: RemixParams,
    key: jax.Array,
    x: np.ndarray,
    *,
    iterations: int | None = None,
    batch_size: int = 1000,
) -> np.ndarray:
    """Predictions (N,) on REMIX-defended images; image i uses ``fold_in(key, i)``.

    Every image draws its masks from its own key (:func:`remix_jax.keys.image_keys`),
    so the predictions do not depend on ``batch_size``.

    Args:
      logits_fn: ``fn(x (B, H, W, C)) -> logits (B, K)``.
      params: as :func:`remix_jax.defend`.
      key: PRNG key (``jax.random.key(seed)``).
      x: (N, H, W, C) float images in [0, 1]; N may be 0.
      iterations: as :func:`remix_jax.defend`.
      batch_size: images per call of ``defend``.

    Returns:
      (N,) int32 labels.

    Raises:
      TypeError / ValueError: as :func:`remix_jax.defend`, or for a bad batch size.
    """
    check_key("key", key)  # before fold_in, whose own error names no argument
    check_defense_inputs(params, x)  # all of x, an empty batch too, before the first batch
    batch_size = check_int("batch_size", batch_size, low=1)
    # each batch split over the devices when there are several (a padded row repeats
    # the last image and its key; its label is dropped)
    parts = sharding.map_batches(
        lambda kb, xb: _argmax(logits_fn, defend(params, kb, xb, iterations=iterations)),
        (image_keys(key, 0, len(x)), x),
        batch_size,
    )  # defend checks the images
    return np.concatenate(parts) if parts else np.zeros(0, np.int32)


def summarize(accuracies: list[float], scale: float = 100.0) -> dict:
    """Mean, sample standard deviation, min and max of per-key accuracies (in % by
    default; ``scale=1`` keeps the values as given, e.g. ROC AUCs)."""
    a = np.asarray(accuracies, np.float64) * scale
    return {
        "mean": float(a.mean()),
        "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
        "min": float(a.min()),
        "max": float(a.max()),
        "runs": len(a),
    }


def handled(right: np.ndarray, rejected: np.ndarray, adversarial: bool) -> np.ndarray:
    """(N,) bool: inputs a defense with a detector handles correctly. A rejected input
    counts as handled when ``adversarial`` and as an error when clean (MagNet's and the
    paper's rule); a passed one when classified right."""
    return rejected | right if adversarial else ~rejected & right


@dataclasses.dataclass(frozen=True)
class Defense:
    """A defense as every evaluation scores it: a prediction and, optionally, a rejection.

    Attributes:
      randomized: its output depends on the key (score it over several keys).
      predict: ``predict(key, x (N, H, W, C)) -> (N,)`` the defended classifier's labels.
      reject: ``reject(key, x) -> (N,) bool``, inputs a detector turns away; None for a
        defense without one.
    """

    randomized: bool
    predict: Callable[[jax.Array, np.ndarray], np.ndarray]
    reject: Callable[[jax.Array, np.ndarray], np.ndarray] | None = None

    def correct(self, key, x: np.ndarray, labels: np.ndarray, adversarial: bool) -> np.ndarray:
        """(N,) bool: each input handled correctly. A rejected input counts as handled
        when ``adversarial`` and as an error when clean (MagNet's and the paper's rule)."""
        right = self.predict(key, x) == labels
        if self.reject is None:
            return right
        return handled(right, self.reject(key, x), adversarial)

    def keys(self, num_keys: int, seed: int = 0) -> list[jax.Array]:
        """The evaluation keys (:func:`remix_jax.keys.evaluation_keys` of ``seed``):
        ``num_keys`` of them, one if not randomized."""
        return evaluation_keys(seed, num_keys if self.randomized else 1)

    def correct_over_keys(
        self, x, labels, adversarial: bool, num_keys: int, seed: int = 0
    ) -> list[np.ndarray]:
        """:meth:`correct` under each of :meth:`keys`."""
        return [self.correct(k, x, labels, adversarial) for k in self.keys(num_keys, seed)]


def defense_suite(
    logits_fn: LogitsFn,
    remix: RemixParams,
    magnet: magnet_lib.MagNetParams | None = None,
    official_detectors: Sequence[str] = (),
    iterations: Sequence[int] = (1,),
    apegan=None,
    defensegan=None,
) -> dict[str, Defense]:
    """The paper's Fig. 2 defenses by name, in plotting order.

    "none"; "reformer" (REMIX's, if ``remix`` has one); with ``magnet``: "MagNet
    reformer", "MagNet" (its ``official_detectors`` + reformer) and, if it has more
    detectors, "MagNet + JSD" (all of them); with ``apegan`` (an
    :class:`~remix_jax.apegan.APEGANParams`): "APE-GAN"; with ``defensegan`` (a
    :class:`~remix_jax.defensegan.DefenseGAN`): "Defense-GAN" (randomized: its
    projection's starts come from the key); then for every K:
    "mask-inpaint K=k" and, with a reformer, "reformer + mask-inpaint K=k".
    """

    def plain(transform=None):
        jitted = None if transform is None else jax.jit(transform)

        def defended_predict(key, x):
            del key
            return predict(logits_fn, x if jitted is None else _batched(jitted, x))

        return Defense(False, defended_predict)

    suite = {"none": plain()}
    if remix.reformer is not None:
        suite["reformer"] = plain(autoencoder_fn(remix.reformer_config, remix.reformer))
    if magnet is not None:
        suite["MagNet reformer"] = plain(lambda xb: magnet_lib.reform(magnet, xb))
        variants = {"MagNet": magnet.select(official_detectors)}
        if len(magnet.detectors) > len(official_detectors):
            variants["MagNet + JSD"] = magnet
        reformed = suite["MagNet reformer"].predict
        for name, m in variants.items():
            suite[name] = Defense(False, reformed, _magnet_reject(logits_fn, m))
    if apegan is not None:
        from remix_jax.apegan import purifier

        suite["APE-GAN"] = plain(purifier(apegan))
    if defensegan is not None:
        from remix_jax.defensegan import reconstruct

        def projected_predict(key, x):
            return predict(logits_fn, reconstruct(defensegan, key, x))

        suite["Defense-GAN"] = Defense(True, projected_predict)
    for k in iterations:
        for with_reformer in (False, True) if remix.reformer is not None else (False,):
            params = remix if with_reformer else remix.without_reformer()

            def defended_predict(key, x, params=params, k=k):
                return remix_predict(logits_fn, params, key, x, iterations=k)

            suite[f"{'reformer + ' if with_reformer else ''}mask-inpaint K={k}"] = Defense(
                True, defended_predict
            )
    return suite


def _magnet_reject(logits_fn: LogitsFn, magnet: magnet_lib.MagNetParams):
    def reject(key, x):
        del key
        return magnet_lib.rejections(magnet, logits_fn, x)

    return reject


def _batched(
    fn: Callable[[jax.Array], jax.Array], x: np.ndarray, batch_size: int = 1000
) -> np.ndarray:
    return np.concatenate(
        [np.asarray(fn(x[i : i + batch_size])) for i in range(0, len(x), batch_size)]
    )
