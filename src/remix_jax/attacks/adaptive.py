"""Adaptive (white-box) attacks on a classifier behind REMIX: EOT, straight gradients, BPDA.

The REMIX paper evaluates only the oblivious setting (examples crafted on the bare
classifier). A randomized preprocessing defense is held to attacks on the whole
pipeline ``classifier(defend(key, x))`` (Athalye et al. 2018, "Obfuscated Gradients";
Carlini et al. 2019, "On Evaluating Adversarial Robustness"; Tramer et al. 2020):

- expectation over transformation (EOT): every step averages the classifier's logits
  over ``samples`` fresh mask draws, so the attack follows the gradient of the
  expected model rather than of one draw;
- straight gradients: REMIX's reformer and inpainter are differentiable networks, so
  by default the gradient flows through them exactly;
- BPDA: any component (``"reformer"``, ``"mask-inpaint"``) can instead be treated as
  the identity in the backward pass (:func:`remix_jax.defense.straight_through`).

The attacks themselves are the library's CW-L2, EAD and PGD, unchanged: they accept a
randomized ``logits_fn(x, key)`` and hand it a fresh key at every iteration.
Averaging logits (rather than losses) keeps the attacks' margin loss and success
test as they are; success then means the margin of the *expected* logits reaches
kappa. The attacker's success is an estimate; robust accuracy must be measured with
keys the attacker never saw (``eval.adaptive`` does).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from remix_jax._checks import check_int
from remix_jax.attacks.common import AttackResult, LogitsFn
from remix_jax.attacks.cw import cw_l2
from remix_jax.attacks.ead import ead
from remix_jax.attacks.pgd import pgd
from remix_jax.defense import RemixParams, defend

RandomLogitsFn = Callable[[jax.Array, jax.Array], jax.Array]
ATTACKS = {"cw": cw_l2, "ead": ead, "pgd": pgd}


MAX_SAMPLES = 1000


def defended_logits(
    logits_fn: LogitsFn,
    params: RemixParams,
    *,
    samples: int = 1,
    iterations: int | None = None,
    bpda: Sequence[str] = (),
    chunk: int | str | None = "auto",
) -> RandomLogitsFn:
    """The classifier behind REMIX as ``fn(x, key) -> logits``, averaged over draws.

    Args:
      logits_fn: the protected classifier, ``fn(x (B, H, W, C)) -> (B, K)``.
      params: the defense (with or without a reformer).
      samples: R, mask draws per call; the logits are averaged over them (EOT). With
        R = 1 the draw uses ``key`` itself: ``fn(x, key) ==
        logits_fn(defend(params, key, x))``.
      iterations: mask-inpaint rounds K (None: ``params.iterations``).
      bpda: components with an identity backward pass (see :func:`remix_jax.defend`).
      chunk: as in :func:`remix_jax.defend`.

    Returns:
      ``fn(x (B, H, W, C), key) -> (B, K)`` mean logits over R draws.
    """
    # R * B images go through the networks at once: more than MAX_SAMPLES draws is a
    # typo that would exhaust memory (10**9 asked for 6 PB) after minutes of tracing
    samples = check_int("samples", samples, low=1, high=MAX_SAMPLES)
    bpda = tuple(bpda)

    def one(key, x):
        return logits_fn(defend(params, key, x, iterations=iterations, chunk=chunk, bpda=bpda))

    def fn(x, key):
        if samples == 1:
            return one(key, x)
        # the R draws as one batch of R * B images: one pass through the networks
        return jnp.mean(jax.vmap(one, in_axes=(0, None))(jax.random.split(key, samples), x), 0)

    return fn


def fixed_masks(random_logits_fn: RandomLogitsFn, key: jax.Array) -> RandomLogitsFn:
    """The same model with its randomness frozen: every call uses ``key``.

    An attack on it sees one fixed set of masks (the "fixed mask" sanity check: it
    must succeed, and an EOT attack with R = 1 on it equals the plain attack on
    ``logits_fn(defend(params, key, .))``).
    """
    return lambda x, _: random_logits_fn(x, key)


def attack_defended(
    attack: str,
    key: jax.Array,
    logits_fn: LogitsFn,
    params: RemixParams,
    x: jax.Array,
    labels: jax.Array,
    *,
    samples: int = 1,
    resample: bool = True,
    iterations: int | None = None,
    bpda: Sequence[str] = (),
    **attack_kwargs,
) -> AttackResult:
    """An adaptive attack on ``logits_fn(defend(params, ., .))``.

    Args:
      attack: "cw" (:func:`remix_jax.attacks.cw_l2`), "ead" or "pgd".
      key: PRNG key of the attacker (mask draws; PGD's random start).
      logits_fn: the protected classifier.
      params: the defense.
      x: (B, H, W, C) images in [0, 1].
      labels: (B,) true labels (or targets with ``targeted=True``).
      samples: R, mask draws averaged per iteration (EOT).
      resample: fresh masks at every iteration (EOT); False attacks one fixed draw.
      iterations: mask-inpaint rounds K.
      bpda: components with an identity backward pass.
      **attack_kwargs: the attack's own settings (confidence, max_iterations,
        epsilon, ...).

    Returns:
      The attack's :class:`AttackResult`.
    """
    if attack not in ATTACKS:
        raise ValueError(f"attack must be one of {sorted(ATTACKS)}, got {attack!r}")
    model = defended_logits(logits_fn, params, samples=samples, iterations=iterations, bpda=bpda)
    if not resample:
        model = fixed_masks(model, key)
    if attack == "pgd":
        return pgd(model, x, labels, key=key, stochastic=True, **attack_kwargs)
    return ATTACKS[attack](model, x, labels, key=key, **attack_kwargs)
