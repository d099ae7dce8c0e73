"""Projected gradient descent (Madry et al., arXiv 1706.06083) in the L-inf and L2 balls.

    x_0     = x + uniform noise in the ball (random start)
    x_{t+1} = clip_[0,1]( proj_ball( x_t + alpha * direction(grad loss(x_t)) ) )

direction = sign(g) for L-inf, g / ||g||_2 for L2; the loss is the cross-entropy of
the true label (or the negated logit margin, ``loss="margin"``), ascended when
untargeted and descended towards the target when targeted. The attack keeps, per
example, the iterate with the largest logit margin it has seen (the final iterate is
judged too), so more steps never return a worse example. An optional per-example
``penalty(x, key)`` is subtracted from the ascended loss and from the margin that
picks the kept iterate: how an attacker also evades a detector (Carlini and Wagner
2017 did this against MagNet).

Randomized models (``stochastic=True``): ``logits_fn(x, key)`` gets a fresh key at
every step; judging the last iterate and the final success check use keys no step
saw. With an expectation over transformations inside
``logits_fn`` (:func:`remix_jax.attacks.adaptive.defended_logits`) this is PGD with
EOT (Athalye et al. 2018). Python drives the steps (each a jitted computation): on
CPU, XLA runs convolutions inside a loop body several times slower (see
:mod:`remix_jax.attacks.search`), and a step through a defense is long enough that
the host round-trip costs nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from remix_jax._checks import (
    check_int,
    check_key,
    check_logits_shape,
    check_real,
)
from remix_jax.attacks import common
from remix_jax.attacks.common import AttackResult

NORMS = ("linf", "l2")
LOSSES = ("ce", "margin")


def _objective(logits, labels, targeted, loss):
    """(B,) what the attack ascends."""
    if loss == "margin":
        return common.margin(logits, labels, targeted)
    ce = -jnp.sum(jax.nn.one_hot(labels, logits.shape[-1]) * jax.nn.log_softmax(logits), -1)
    return -ce if targeted else ce


def _bind(logits_fn, stochastic, key):
    """``fn(x)``: a randomized ``logits_fn(x, key)`` with ``key`` bound, or ``logits_fn``."""
    return (lambda z: logits_fn(z, key)) if stochastic else logits_fn


def _per_example(v, like):
    return v.reshape(v.shape + (1,) * (like.ndim - 1))


def _l2_norm(v):
    return jnp.sqrt(jnp.sum(v**2, axis=(1, 2, 3)))


def _project(delta, epsilon, norm):
    if norm == "linf":
        return jnp.clip(delta, -epsilon, epsilon)
    scale = jnp.minimum(1.0, epsilon / jnp.maximum(_l2_norm(delta), 1e-12))
    return delta * _per_example(scale, delta)


def _random_start(key, x, epsilon, norm):
    if norm == "linf":
        return jax.random.uniform(key, x.shape, x.dtype, -epsilon, epsilon)
    # a uniform direction and a radius uniform in [0, epsilon]
    direction_key, radius_key = jax.random.split(key)
    direction = jax.random.normal(direction_key, x.shape, x.dtype)
    direction = direction / _per_example(jnp.maximum(_l2_norm(direction), 1e-12), x)
    radius = jax.random.uniform(radius_key, (x.shape[0],), x.dtype, 0.0, epsilon)
    return direction * _per_example(radius, x)


def _penalized(penalty, key):
    """(B,) penalty of a batch under ``key``, or 0 without a penalty."""
    if penalty is None:
        return lambda z: jnp.zeros(z.shape[0], z.dtype)
    return lambda z: penalty(z, jax.random.fold_in(key, 1))


@functools.partial(jax.jit, static_argnames=("logits_fn", "settings", "penalty"))
def _step(
    x, labels, adv, best, best_margin, key, epsilon, step_size, *, logits_fn, settings, penalty
):
    """One PGD step from ``adv``; also judges ``adv`` as a candidate for ``best``."""
    norm, loss, targeted, stochastic = settings
    model = _bind(logits_fn, stochastic, key)
    cost = _penalized(penalty, key)

    def objective(z):
        logits, paid = model(z), cost(z)
        return jnp.sum(_objective(logits, labels, targeted, loss) - paid), (logits, paid)

    grad, (logits, paid) = jax.grad(objective, has_aux=True)(adv)
    margin = common.margin(logits, labels, targeted) - paid
    better = margin > best_margin
    best = jnp.where(_per_example(better, x), adv, best)
    best_margin = jnp.where(better, margin, best_margin)
    if norm == "linf":
        direction = jnp.sign(grad)
    else:
        direction = grad / _per_example(jnp.maximum(_l2_norm(grad), 1e-12), grad)
    delta = _project(adv + step_size * direction - x, epsilon, norm)
    return jnp.clip(x + delta, 0.0, 1.0), best, best_margin


@functools.partial(jax.jit, static_argnames=("logits_fn", "settings", "penalty"))
def _finish(x, labels, adv, best, best_margin, key, *, logits_fn, settings, penalty):
    """Judges the last iterate, then re-checks the kept example with a fresh key."""
    _, _, targeted, stochastic = settings
    model = _bind(logits_fn, stochastic, key)
    margin = common.margin(model(adv), labels, targeted) - _penalized(penalty, key)(adv)
    best = jnp.where(_per_example(margin > best_margin, x), adv, best)
    model = _bind(logits_fn, stochastic, jax.random.fold_in(key, 1))
    success = common.is_success(model(best), labels, targeted, jnp.float32(0.0))
    return AttackResult(
        adversarial=best,
        success=success,
        const=jnp.zeros(x.shape[0]),
        **common.distortions(best - x),
    )


def check_ball_attack(key, x, labels, *, steps, norm, loss, losses, epsilon) -> None:
    """The arguments every norm-ball attack (pgd, apgd) shares, checked before any work."""
    check_key("key", key)
    # the attacks' bound, checked here so that the error names steps, not max_iterations
    check_int("steps", steps, low=1, high=common.MAX_ITERATIONS)
    common.validate(
        x,
        labels,
        confidence=0.0,
        binary_search_steps=1,
        max_iterations=steps,
        learning_rate=1.0,
        initial_const=1.0,
        clip_min=0.0,
        clip_max=1.0,
    )
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if loss not in losses:
        raise ValueError(f"loss must be one of {losses}, got {loss!r}")
    check_real("epsilon", epsilon, above=0.0)


def pgd(
    logits_fn: common.LogitsFn,
    x: jax.Array,
    labels: jax.Array,
    *,
    key: jax.Array,
    epsilon: float,
    norm: str = "linf",
    steps: int = 100,
    step_size: float | None = None,
    random_start: bool = True,
    start: jax.Array | None = None,
    loss: str = "ce",
    targeted: bool = False,
    stochastic: bool = False,
    penalty: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
) -> AttackResult:
    """PGD in the ``norm`` ball of radius ``epsilon`` (see the module docstring).

    Args:
      logits_fn: ``fn(x (B, H, W, C)) -> logits (B, K)``, or ``fn(x, key)`` when
        ``stochastic``. Pass the same object to reuse the compiled step.
      x: (B, H, W, C) float images in [0, 1].
      labels: (B,) int true labels (untargeted) or targets (``targeted``).
      key: PRNG key: the random start and, when ``stochastic``, the model's draws.
      epsilon: radius of the ball (> 0).
      norm: "linf" or "l2".
      steps: gradient steps.
      step_size: alpha; default 2.5 * epsilon / steps (Madry et al.).
      random_start: start at a uniformly random point of the ball.
      start: (B, H, W, C) start here instead (projected into the ball and the box;
        ``random_start`` is then ignored): e.g. a transfer attack's example, so
        the adaptive attack begins where the oblivious one ended (it can still
        end elsewhere: the kept iterate is judged under the attack's own keys).
      loss: "ce" (cross-entropy) or "margin" (best-other minus true logit). Prefer
        the margin on confident classifiers: where the float32 softmax saturates
        (logit gaps above ~17), the cross-entropy's gradient is exactly 0.
      targeted: aim for ``labels``.
      stochastic: ``logits_fn`` takes a key (a randomized defense).
      penalty: ``fn(x (B, H, W, C), key) -> (B,)`` subtracted from the loss and the
        margin (e.g. a weighted detector score); it gets a fresh key every step.
        Pass the same object to reuse the compiled step.

    Returns:
      :class:`AttackResult`: per example the largest-margin iterate (returned also
      when it does not succeed, unlike CW/EAD: for a randomized defense the attacker's
      own check is a noisy estimate); ``success``: its margin is >= 0 (wrong argmax)
      under a fresh draw; ``const`` is 0 (PGD has none).
    """
    check_ball_attack(
        key, x, labels, steps=steps, norm=norm, loss=loss, losses=LOSSES, epsilon=epsilon
    )
    step_size = 2.5 * epsilon / steps if step_size is None else step_size
    check_real("step_size", step_size, above=0.0)
    # anywhere: projected into the ball and the box (a NaN would survive it)
    common.check_start(start, x)

    # the steps run in float32 whatever the input's float dtype: probe the model so too
    x = jnp.asarray(x, jnp.float32)
    model = _bind(logits_fn, stochastic, key)
    # the whole batch, traced only (a one-image probe passes a one-row classifier)
    logits_shape = jax.eval_shape(model, x).shape
    common.check_label_range(labels, check_logits_shape(logits_shape, x.shape[0]))
    labels = jnp.asarray(labels, jnp.int32)
    settings = (norm, loss, targeted, stochastic)
    eps, alpha = jnp.float32(epsilon), jnp.float32(step_size)
    start_key, step_key, final_key = jax.random.split(key, 3)
    adv = x
    if start is not None:
        adv = jnp.clip(x + _project(jnp.asarray(start, jnp.float32) - x, eps, norm), 0.0, 1.0)
    elif random_start:
        adv = jnp.clip(x + _random_start(start_key, x, eps, norm), 0.0, 1.0)
    best, best_margin = x, jnp.full(x.shape[0], -jnp.inf, jnp.float32)
    for t in range(steps):
        adv, best, best_margin = _step(
            x,
            labels,
            adv,
            best,
            best_margin,
            jax.random.fold_in(step_key, t),
            eps,
            alpha,
            logits_fn=logits_fn,
            settings=settings,
            penalty=penalty,
        )
    return _finish(
        x,
        labels,
        adv,
        best,
        best_margin,
        final_key,
        logits_fn=logits_fn,
        settings=settings,
        penalty=penalty,
    )
