"""MagNet (Meng and Chen, "MagNet: a Two-Pronged Defense against Adversarial
Examples", CCS 2017): the baseline the REMIX paper compares with.

Two prongs, both built from small denoising autoencoders
(:mod:`remix_jax.models.magnet`) trained on clean images:

- detectors reject an input whose score exceeds a threshold set on clean validation
  images: the reconstruction error mean(|AE(x) - x|^p) (p = 1 or 2), or the
  Jensen-Shannon divergence between the classifier's softmax at temperature T on x
  and on AE(x);
- the reformer replaces the input by AE(x) before classification.

Thresholds follow MagNet's ``worker.py``: with N validation scores sorted ascending
and r the detector's drop rate, the threshold is the (floor(N * r))-th largest score
and an input passes when its score is strictly below it, so exactly floor(N * r)
validation images are rejected (ties aside).

Scoring (MagNet's and the REMIX paper's): an adversarial input is defended when some
detector rejects it or the classifier gets the reformed input right; a clean input
counts as correct only when it passes every detector and is then classified right.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from remix_jax import sharding
from remix_jax.datasets import DetectorSpec
from remix_jax.models.magnet import MagNetAEConfig, MagNetAutoencoder

LogitsFn = Callable[[jax.Array], jax.Array]
# beside the autoencoders' folders: detector specs, thresholds and clean rates
DETECTORS_FILE = "detectors.json"


@struct.dataclass
class MagNetParams:
    """A ready MagNet: autoencoder weights and thresholds as leaves, the rest static.

    Attributes:
      autoencoders: name -> Flax params of a :class:`MagNetAutoencoder`.
      thresholds: detector name -> threshold (scalar); empty before :func:`calibrate`.
      configs: ((name, MagNetAEConfig), ...) architectures.
      detectors: the :class:`DetectorSpec` s.
      reformer: name of the autoencoder used as the reformer.
    """

    autoencoders: dict[str, Any]
    thresholds: dict[str, Any]
    configs: tuple[tuple[str, MagNetAEConfig], ...] = struct.field(pytree_node=False)
    detectors: tuple[DetectorSpec, ...] = struct.field(pytree_node=False)
    reformer: str = struct.field(pytree_node=False, default="I")

    def autoencoder(self, name: str) -> Callable[[jax.Array], jax.Array]:
        """``fn(x (B, H, W, C)) -> AE(x)`` for the named autoencoder."""
        config = dict(self.configs)[name]
        params = self.autoencoders[name]
        return lambda x: MagNetAutoencoder(config).apply({"params": params}, x)

    def select(self, names: Sequence[str]) -> MagNetParams:
        """The same MagNet with only the named detectors."""
        unknown = set(names) - {d.name for d in self.detectors}
        if unknown:
            raise ValueError(f"unknown detectors {sorted(unknown)}")
        return self.replace(
            detectors=tuple(d for d in self.detectors if d.name in names),
            thresholds={k: v for k, v in self.thresholds.items() if k in names},
        )


def reform(magnet: MagNetParams, x: jax.Array) -> jax.Array:
    """MagNet's reformer: (B, H, W, C) -> AE(x), same shape."""
    return magnet.autoencoder(magnet.reformer)(x)


def jensen_shannon(p: jax.Array, q: jax.Array) -> jax.Array:
    """JSD between probability vectors along the last axis (natural log). (B, K) -> (B,)."""
    m = 0.5 * (p + q)

    def kl(a, b):
        # 0 * log 0 = 0; a tiny floor keeps log finite when the softmax underflows
        return jnp.sum(
            jnp.where(a > 0, a * (jnp.log(a) - jnp.log(jnp.maximum(b, 1e-30))), 0.0), axis=-1
        )

    return 0.5 * kl(p, m) + 0.5 * kl(q, m)


def detector_scores(magnet: MagNetParams, logits_fn: LogitsFn, x: jax.Array) -> dict:
    """Every detector's score of every input (higher = more suspicious).

    Args:
      magnet: the defense.
      logits_fn: the protected classifier (used by JSD detectors).
      x: (B, H, W, C) images in [0, 1].

    Returns:
      detector name -> (B,) float32 scores.
    """
    reconstructions = {}
    scores = {}
    for d in magnet.detectors:
        if d.autoencoder not in reconstructions:
            reconstructions[d.autoencoder] = magnet.autoencoder(d.autoencoder)(x)
        r = reconstructions[d.autoencoder]
        if d.kind == "JSD":
            p = jax.nn.softmax(logits_fn(x) / d.temperature)
            q = jax.nn.softmax(logits_fn(r) / d.temperature)
            scores[d.name] = jensen_shannon(p, q)
        else:
            power = 1 if d.kind == "L1" else 2
            scores[d.name] = jnp.mean(jnp.abs(r - x) ** power, axis=(1, 2, 3))
    return scores


def detections(magnet: MagNetParams, logits_fn: LogitsFn, x: jax.Array) -> dict:
    """Detector name -> (B,) bool: that detector rejects the input (score >= threshold)."""
    if set(magnet.thresholds) != {d.name for d in magnet.detectors}:
        raise ValueError("MagNet is not calibrated: call magnet.calibrate first")
    scores = detector_scores(magnet, logits_fn, x)
    return {name: s >= magnet.thresholds[name] for name, s in scores.items()}


def detect(magnet: MagNetParams, logits_fn: LogitsFn, x: jax.Array) -> jax.Array:
    """(B,) bool: some detector rejects the input (score >= its threshold)."""
    rejected = jnp.zeros(x.shape[0], bool)
    for fired in detections(magnet, logits_fn, x).values():
        rejected = rejected | fired
    return rejected


def threshold(scores: np.ndarray, drop_rate: float) -> float:
    """MagNet's threshold: the floor(N * drop_rate)-th largest of N clean scores."""
    num = int(len(scores) * drop_rate)
    if num < 1:
        raise ValueError(
            f"{len(scores)} validation images reject none at drop rate {drop_rate}; "
            f"need at least {int(np.ceil(1 / drop_rate))}"
        )
    return float(np.sort(np.asarray(scores))[-num])


def calibrate(
    magnet: MagNetParams, logits_fn: LogitsFn, x_validation: np.ndarray, batch_size: int = 1000
) -> MagNetParams:
    """Sets every detector's threshold on clean validation images (N, H, W, C) in [0, 1]."""
    parts = sharding.map_batches(
        lambda xb: _scores_batch(logits_fn, magnet, xb), (x_validation,), batch_size
    )
    thresholds = {}
    for d in magnet.detectors:
        all_scores = np.concatenate([p[d.name] for p in parts])
        thresholds[d.name] = threshold(all_scores, d.drop_rate)
    return magnet.replace(thresholds={k: jnp.float32(v) for k, v in thresholds.items()})


def outcomes(
    magnet: MagNetParams,
    logits_fn: LogitsFn,
    x: np.ndarray,
    labels: np.ndarray,
    batch_size: int = 1000,
) -> dict:
    """Per-input MagNet outcomes, in batches.

    Args:
      magnet: a calibrated MagNet.
      logits_fn: the protected classifier.
      x: (N, H, W, C) images in [0, 1].
      labels: (N,) true labels.

    Returns:
      "rejected" (N,) bool: some detector fired; "reformed_correct" (N,) bool: the
      classifier is right on the reformed input; "rejected_by": detector name -> (N,)
      bool, that detector fired (one pass instead of one per detector).
    """
    parts = sharding.map_batches(
        lambda xb, yb: _outcomes_batch(logits_fn, magnet, xb, yb), (x, labels), batch_size
    )
    by_name = {d.name: np.concatenate([p[0][d.name] for p in parts]) for d in magnet.detectors}
    return {
        "rejected": np.logical_or.reduce(list(by_name.values())),
        "reformed_correct": np.concatenate([p[1] for p in parts]),
        "rejected_by": by_name,
    }


# logits_fn is static: jit caches per classifier function object, not per call
@functools.partial(jax.jit, static_argnums=0)
def _scores_batch(logits_fn, magnet, x):
    return detector_scores(magnet, logits_fn, x)


def rejections(
    magnet: MagNetParams, logits_fn: LogitsFn, x: np.ndarray, batch_size: int = 1000
) -> np.ndarray:
    """(N,) bool: some detector rejects the input, in batches (no reformed pass)."""
    parts = sharding.map_batches(lambda xb: _detect_batch(logits_fn, magnet, xb), (x,), batch_size)
    return np.concatenate(parts)


@functools.partial(jax.jit, static_argnums=0)
def _detect_batch(logits_fn, magnet, x):
    return detect(magnet, logits_fn, x)


@functools.partial(jax.jit, static_argnums=0)
def _outcomes_batch(logits_fn, magnet, x, labels):
    right = jnp.argmax(logits_fn(reform(magnet, x)), axis=-1) == labels
    return detections(magnet, logits_fn, x), right


def save_calibration(folder: str, magnet: MagNetParams, report: dict) -> str:
    """Writes ``<folder>/detectors.json``: the detectors with their thresholds, beside
    ``report`` (clean rates, provenance), unless the file already holds these numbers
    (a rerun keeps a committed calibration byte-identical). Returns the path."""
    import os

    from remix_jax import checkpoints, provenance

    detectors = [
        {**vars(d), "threshold": float(magnet.thresholds[d.name])} for d in magnet.detectors
    ]
    # the order train.magnet always wrote: dataset, reformer, detectors, then the rest
    content = {k: report[k] for k in ("dataset",) if k in report}
    content.update(reformer=magnet.reformer, detectors=detectors)
    content.update(report)
    path = os.path.join(folder, DETECTORS_FILE)
    stem = os.path.splitext(path)[0]
    provenance.write_unless_reproduced(
        stem, content, lambda out, result: checkpoints.write_json(out + ".json", result)
    )
    return path


def load_calibration(folder: str) -> tuple[tuple[DetectorSpec, ...], dict[str, jax.Array]]:
    """The detectors and thresholds :func:`save_calibration` wrote in ``folder``.

    Raises:
      FileNotFoundError: no ``detectors.json`` (the message says how to make it).
    """
    import json
    import os

    path = os.path.join(folder, DETECTORS_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no {DETECTORS_FILE} in {folder}: run python -m train.magnet")
    with open(path) as f:
        stored = json.load(f)["detectors"]
    detectors = tuple(
        DetectorSpec(**{k: v for k, v in d.items() if k != "threshold"}) for d in stored
    )
    return detectors, {d["name"]: jnp.float32(d["threshold"]) for d in stored}
