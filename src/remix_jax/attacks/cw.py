"""Carlini & Wagner's L2 attack (arXiv 1608.04644), batched and fully jitted.

minimise ||x' - x||_2^2 + c * max(kappa - margin(x'), 0) over
x' = (tanh(w) * 0.999999 + 1) / 2 * (max - min) + min, i.e. in the box by construction,
with Adam, for each c of a per-example binary search.

Follows the reference implementation (carlini/nn_robust_attacks ``l2_attack.py``):
Adam (lr 1e-2) restarted from the original image at every binary-search step; c
starts at 1e-3, x10 until the first success, then bisection; abort early when the
loss has not dropped by 0.01% over max_iterations/10 steps; the smallest-L2
successful example over all steps is returned. The tanh scaling 0.999999 is kept:
it keeps pixels at exactly 0 or 1 (most of MNIST) nearly frozen, as in the reference.

Deviations from the reference code, each deliberate:
  * Success means the best-other-minus-true logit margin reaches kappa (and the
    argmax is wrong). The widely copied ``l2_attack.py`` also subtracted kappa from
    the true class when untargeted, so its "success" could include correctly
    classified images.
  * Early abort is per example (the reference aborts on the loss summed over the
    batch; its batch size 1 makes the two the same). Aborted examples stop moving.
  * The search runs on the device, as one XLA computation or (on CPU, where that
    is slower) as jitted chunks of iterations (see :mod:`remix_jax.attacks.search`),
    never with a host round-trip per step.
  * The image is computed as sigmoid(2w) from the nearer end of the box, equal to
    the reference's tanh form in exact arithmetic; in float32 it keeps pixels near
    0 or 1 (where XLA's tanh rounds to +-1 from |w| = 8 on) movable (``_to_image``).
  * Adam is optax's: epsilon is added to the bias-corrected second moment (Adam
    paper); TensorFlow adds it to the uncorrected one, a negligible difference.
  * With >= 10 search steps the last step retries the upper bound only if one exists.
  * Success is re-checked on the returned images; a failure returns the original.
  * Options, off by default: ``start`` (begin the optimisation at another image, e.g.
    an APGD example, for an adaptive minimum-distortion attack), ``warm_start``
    (begin each search step at the best example found so far, as ART's L0 attack
    can; the search then no longer explores from ``x``) and
    ``initial_const="linear"`` (each example's first c from its linearised margin).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from remix_jax.attacks import common
from remix_jax.attacks.common import AttackResult, LogitsFn
from remix_jax.attacks.search import Algorithm, Step, launch, search_arguments

TANH_SCALE = 0.999999


def _to_image(w, hyper):
    """(tanh(w) + 1) / 2 * (max - min) + min, computed as sigmoid(2w) from the nearer
    end of the box.

    The same function, in float32 arithmetic that keeps its precision at the box's
    ends: XLA's tanh rounds to exactly -1 from w = -8 on (true 1 + tanh(-8) = 2.3e-7),
    so a pixel at 0 (w = -7.25 at the start, most of MNIST) that the attack pushes
    darker for ~75 Adam steps loses its gradient for good; sigmoid(2w) and its
    gradient stay exact down to ~1e-38. Measured (bench/NOTES.md row 26): MNIST CW,
    100 images, 5 x 1000, kappa 0: mean L2 1.339 with tanh, 1.330 with this.
    """
    span = hyper.clip_max - hyper.clip_min
    # each branch's sigmoid is small where it is selected: no cancellation near 0 or 1
    return jnp.where(
        w < 0,
        hyper.clip_min + span * jax.nn.sigmoid(2 * w),
        hyper.clip_max - span * jax.nn.sigmoid(-2 * w),
    )


def _reset(x, hyper):
    """Every search step restarts from ``x`` (the original image unless a start is
    given) with a fresh Adam."""
    half_range = (hyper.clip_max - hyper.clip_min) / 2
    middle = (hyper.clip_max + hyper.clip_min) / 2
    w = jnp.arctanh((x - middle) / half_range * TANH_SCALE)
    return {"w": w, "adam": optax.adam(hyper.learning_rate).init(w)}


def _iterate(logits_fn, spec, hyper, x, labels, variables, const, i):
    del i

    def loss(w):
        adv = _to_image(w, hyper)
        logits = logits_fn(adv)
        l2sq = jnp.sum((adv - x) ** 2, axis=(1, 2, 3))
        per_example = l2sq + const * common.margin_loss(
            logits, labels, spec.targeted, hyper.confidence
        )
        return jnp.sum(per_example), (per_example, l2sq, logits, adv)

    grads, (per_example, l2sq, logits, adv) = jax.grad(loss, has_aux=True)(variables["w"])
    # optax's bias correction raises a Python float to an int32 count: standard promotion
    with jax.numpy_dtype_promotion("standard"):
        updates, adam = optax.adam(hyper.learning_rate).update(grads, variables["adam"])
    success = common.is_success(logits, labels, spec.targeted, hyper.confidence)
    # the candidate is the image before the update, the one the logits and loss belong to
    return Step({"w": variables["w"] + updates, "adam": adam}, adv, l2sq, success, per_example)


CW_L2 = Algorithm(_reset, _iterate)


def cw_l2(
    logits_fn: LogitsFn,
    x: jax.Array,
    labels: jax.Array,
    *,
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
    """Carlini-Wagner L2 attack on a batch (see the module docstring).

    Compiled once per ``logits_fn`` and loop settings: new images, labels,
    confidences, learning rates or constants reuse it. Pass the same
    ``logits_fn`` object to avoid retracing.

    Args:
      logits_fn: ``fn(x (B, H, W, C)) -> logits (B, K)``.
      x: (B, H, W, C) float images in [clip_min, clip_max].
      labels: (B,) int true labels (untargeted) or target labels (``targeted``).
      targeted: aim for ``labels`` instead of away from them.
      confidence: kappa, the logit margin a success must reach (>= 0).
      binary_search_steps: outer steps of the search on c.
      max_iterations: Adam steps per outer step.
      learning_rate: Adam's learning rate.
      initial_const: first c; ``"linear"``: each example's own, the smallest c that
        would succeed on the margin linearised at ``x``
        (:func:`~remix_jax.attacks.common.linear_initial_const`); not the
        reference's 1e-3, for fewer search steps at the same distortion.
      abort_early: stop an example's inner loop when its loss stalls.
      clip_min: the box's lower bound.
      clip_max: the box's upper bound.
      loop: "device" (one XLA computation), "host" (jitted chunks of iterations,
        faster on CPU) or None (host on CPU, device elsewhere); see
        :mod:`remix_jax.attacks.search`.
      compact: in the host loop, batch only the examples the early abort has not
        stopped yet (same result, less work).
      key: None for a deterministic ``logits_fn(x)``; a PRNG key for a randomized
        ``logits_fn(x, key)``, e.g. an expectation over REMIX's masks
        (:func:`remix_jax.attacks.adaptive.defended_logits`): iteration t of search
        step s calls it with ``fold_in(fold_in(key, s), t)``.
      on_step: called with the number of finished search steps (after each one in
        the host loop, once at the end in the device loop), e.g. to show progress.
      start: (B, H, W, C) images in the box where each search step's optimisation
        begins instead of ``x`` (e.g. an adversarial example of another attack);
        distances are still measured to ``x``. Where the search's best example fails
        the final success check (on a randomized model, the smallest example found is
        often adversarial only under the draws that judged it) and the start passes
        it, the start is returned.
      warm_start: begin each search step at the best successful example found so far
        (at ``start`` until there is one) instead of restarting; not the reference's
        algorithm (it restarts from ``x``), off by default.

    Returns:
      :class:`AttackResult`.
    """
    return launch(CW_L2, logits_fn, x, labels, **search_arguments(locals()))
