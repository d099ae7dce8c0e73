"""EAD: elastic-net attack (Chen, Sharma, Zhang, Yi, Hsieh; arXiv 1709.04114), jitted.

minimise c * max(kappa - margin(x'), 0) + ||x' - x||_2^2 + beta * ||x' - x||_1,
x' in the box, by (F)ISTA: a gradient step on the smooth part at the slack point
y_k, then the elastic-net shrinkage-thresholding S_beta projected onto the box,

    x_k+1 = S_beta(y_k - a_k * grad g(y_k)),
    y_k+1 = x_k+1 + k / (k + 3) * (x_k+1 - x_k)      (FISTA; ISTA: y_k+1 = x_k+1),

with a_k = lr * (1 - k / max_iterations)^0.5 (square-root decay). The same per-example
binary search on c as CW. Among the successful iterates, the best is the one with the
smallest beta * L1 + L2^2 ("EN" rule) or the smallest L1 ("L1" rule).

Follows the authors' code (``en_attack.py``): learning rate 1e-2, c from 1e-3,
abort early on the elastic-net loss every max_iterations/10 steps, iterates and
slack restarted at x for every search step. Deviations, each deliberate:
  * Success means the logit margin reaches kappa and the argmax is wrong (see
    :mod:`remix_jax.attacks.cw`).
  * Early abort and the best example are per example (batched form of batch size 1).
  * The success test and the decision rule are evaluated on the iterate x_k
    (the candidate returned), with the classifier run on it; the reference fetched
    them in the same session run as the update.
  * Success is re-checked on the returned images; a failure returns the original.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from remix_jax._checks import check_real
from remix_jax.attacks import common
from remix_jax.attacks.common import AttackResult, LogitsFn
from remix_jax.attacks.search import Algorithm, Step, launch, search_arguments

DECISION_RULES = ("EN", "L1")


def shrink(z, x, beta, clip_min, clip_max):
    """Elastic-net shrinkage-thresholding S_beta(z) around x, projected onto the box."""
    diff = z - x
    return jnp.where(
        diff > beta,
        jnp.minimum(z - beta, clip_max),
        jnp.where(diff < -beta, jnp.maximum(z + beta, clip_min), x),
    )


@dataclasses.dataclass(frozen=True)
class EADOptions:
    """EAD's static settings (``Spec.options``): the decision rule and FISTA vs ISTA."""

    decision_rule: str = "EN"
    fista: bool = True


def _reset(x, hyper):
    """Iterate and slack restart at ``x`` (the original image unless a start is given)
    every search step."""
    del hyper
    return {"adv": x, "slack": x}


def _iterate(logits_fn, spec, hyper, x, labels, variables, const, k):
    adv, slack = variables["adv"], variables["slack"]
    axes = (1, 2, 3)
    # judge the current iterate x_k
    logits = logits_fn(adv)
    delta = adv - x
    l1 = jnp.sum(jnp.abs(delta), axis=axes)
    l2sq = jnp.sum(delta**2, axis=axes)
    margin_loss = common.margin_loss(logits, labels, spec.targeted, hyper.confidence)
    beta, options = hyper.extra["beta"], spec.options
    en_loss = const * margin_loss + l2sq + beta * l1
    score = l2sq + beta * l1 if options.decision_rule == "EN" else l1
    success = common.is_success(logits, labels, spec.targeted, hyper.confidence)

    def smooth_loss(y):
        # c * f(y) + ||y - x||^2: the differentiable part, stepped at the slack point
        per_example = const * common.margin_loss(
            logits_fn(y), labels, spec.targeted, hyper.confidence
        ) + jnp.sum((y - x) ** 2, axis=axes)
        return jnp.sum(per_example)

    rate = hyper.learning_rate * jnp.sqrt(1.0 - k / spec.max_iterations)
    new_adv = shrink(
        slack - rate * jax.grad(smooth_loss)(slack), x, beta, hyper.clip_min, hyper.clip_max
    )
    momentum = k / (k + 3.0) if options.fista else 0.0
    new_slack = new_adv + momentum * (new_adv - adv)
    return Step({"adv": new_adv, "slack": new_slack}, adv, score, success, en_loss)


EAD = Algorithm(_reset, _iterate)


def ead(
    logits_fn: LogitsFn,
    x: jax.Array,
    labels: jax.Array,
    *,
    beta: float = 1e-2,
    decision_rule: str = "EN",
    fista: bool = True,
    targeted: bool = False,
    confidence: float = 0.0,
    binary_search_steps: int = 9,
    max_iterations: int = 10_000,
    learning_rate: float = 1e-2,
    initial_const: float | str = 1e-3,
    abort_early: bool = True,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
    loop: str | None = None,
    compact: bool = True,
    key: jax.Array | None = None,
    on_step: Callable[[int], None] | None = None,
    start: jax.Array | None = None,
    warm_start: bool = False,
) -> AttackResult:
    """Elastic-net attack on a batch (see the module docstring).

    Args:
      logits_fn: ``fn(x (B, H, W, C)) -> logits (B, K)``.
      x: (B, H, W, C) float images in [clip_min, clip_max].
      labels: (B,) int true labels (untargeted) or targets (``targeted``).
      beta: L1 weight (the REMIX paper uses 0.1).
      decision_rule: "EN" (smallest beta*L1 + L2^2) or "L1" (smallest L1).
      fista: FISTA (True, the paper's choice) or plain ISTA.
      targeted: as in :func:`remix_jax.attacks.cw_l2`.
      confidence: as in :func:`remix_jax.attacks.cw_l2`.
      binary_search_steps: as in :func:`remix_jax.attacks.cw_l2`.
      max_iterations: as in :func:`remix_jax.attacks.cw_l2`.
      learning_rate: as in :func:`remix_jax.attacks.cw_l2`.
      initial_const: as in :func:`remix_jax.attacks.cw_l2`.
      abort_early: as in :func:`remix_jax.attacks.cw_l2`.
      clip_min: as in :func:`remix_jax.attacks.cw_l2`.
      clip_max: as in :func:`remix_jax.attacks.cw_l2`.
      loop: as in :func:`remix_jax.attacks.cw_l2`.
      compact: as in :func:`remix_jax.attacks.cw_l2`.
      key: as in :func:`remix_jax.attacks.cw_l2`.
      on_step: as in :func:`remix_jax.attacks.cw_l2`.
      start: as in :func:`remix_jax.attacks.cw_l2`.
      warm_start: as in :func:`remix_jax.attacks.cw_l2`.

    Returns:
      :class:`AttackResult`.
    """
    if decision_rule not in DECISION_RULES:
        raise ValueError(f"decision_rule must be one of {DECISION_RULES}, got {decision_rule!r}")
    check_real("beta", beta, low=0.0)
    return launch(
        EAD,
        logits_fn,
        x,
        labels,
        extra={"beta": beta},
        options=EADOptions(decision_rule=decision_rule, fista=fista),
        **search_arguments(locals()),
    )
