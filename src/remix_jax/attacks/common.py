"""What CW-L2 and EAD share: the margin loss, success, the binary search on c, results.

Both attacks follow Carlini & Wagner's reference search (nn_robust_attacks,
``l2_attack.py``), made per-example and batched: each image has its own constant c,
its own early abort and its own best example, so a batch gives the same answers
as running the images one at a time (the reference's batch size 1).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from remix_jax._checks import check_images, check_int, check_real

LogitsFn = Callable[[jax.Array], jax.Array]
# Carlini's sentinel for "no successful example yet" and the "no upper bound" value.
NO_SUCCESS = 1e10
NO_UPPER_BOUND = 1e10


@struct.dataclass
class AttackResult:
    """Outcome of an attack on a batch of B images.

    Attributes:
      adversarial: (B, H, W, C) best adversarial images; the original image where
        the attack failed.
      success: (B,) bool, the logit margin of ``adversarial`` reaches kappa.
      l0, l1, l2, linf: (B,) distortion of ``adversarial - x`` (0 where failed);
        l0 counts changed pixel values, l2 is the Euclidean norm (not squared).
      const: (B,) the constant c of the binary search when it ended.
    """

    adversarial: jax.Array
    success: jax.Array
    l0: jax.Array
    l1: jax.Array
    l2: jax.Array
    linf: jax.Array
    const: jax.Array


def margin(logits: jax.Array, labels: jax.Array, targeted: bool) -> jax.Array:
    """How far the attack has gone, in logit units (>= kappa means success).

    Untargeted: max_{i != y} Z_i - Z_y (y the true label). Targeted: Z_t - max_{i != t} Z_i
    (t the target label). Shapes: logits (B, K), labels (B,) -> (B,).
    """
    one_hot = jax.nn.one_hot(labels, logits.shape[-1], dtype=bool)
    label_logit = jnp.sum(jnp.where(one_hot, logits, 0.0), axis=-1)
    best_other = jnp.max(jnp.where(one_hot, -jnp.inf, logits), axis=-1)
    return label_logit - best_other if targeted else best_other - label_logit


def is_success(
    logits: jax.Array, labels: jax.Array, targeted: bool, confidence: jax.Array
) -> jax.Array:
    """Margin >= kappa, and the argmax is wrong (untargeted) / the target (targeted).

    The argmax condition only matters at kappa = 0, where it rules out exact ties.
    """
    predicted = jnp.argmax(logits, axis=-1)
    label_ok = predicted == labels if targeted else predicted != labels
    return (margin(logits, labels, targeted) >= confidence) & label_ok


def margin_loss(
    logits: jax.Array, labels: jax.Array, targeted: bool, confidence: jax.Array
) -> jax.Array:
    """Carlini & Wagner's f_6: max(-margin, -kappa) shifted to max(kappa - margin, 0). (B,)."""
    return jnp.maximum(confidence - margin(logits, labels, targeted), 0.0)


def update_const(const, lower, upper, succeeded):
    """One per-example binary-search update of c (reference ``l2_attack.py``).

    Success in this outer step lowers the upper bound; failure raises the lower one
    and multiplies c by 10 until some upper bound exists, then bisects.
    """
    upper = jnp.where(succeeded, jnp.minimum(upper, const), upper)
    lower = jnp.where(succeeded, lower, jnp.maximum(lower, const))
    has_upper = upper < 1e9
    bisect = (lower + upper) / 2
    const = jnp.where(has_upper, bisect, jnp.where(succeeded, const, const * 10))
    return const, lower, upper


# ``initial_const="linear"``: each example's first c from its linearised margin.
LINEAR_CONST = "linear"
# The range a linear estimate of c is clipped to: the reference's 1e-3 start and the
# bound under which the search counts an upper bound as found.
LINEAR_CONST_RANGE = (1e-3, 1e8)


def linear_initial_const(logits_fn: LogitsFn, x, labels, targeted: bool, confidence):
    """Each example's first c, from the margin linearised at ``x``. (B,) float32.

    With the margin loss h(x') = max(kappa - margin(x'), 0) and its input gradient g
    at x, the linear model of ||d||^2 + c * h(x + d) has its minimum on the decision
    boundary (||d|| = h / ||g||) once c >= 2 h / ||g||^2: the smallest c that can
    succeed if the model were linear. Starting the search there instead of at 1e-3
    spends no search steps on constants far too small (MNIST's CNN needs c ~ 0.1-10,
    three or four tenfold steps from 1e-3); the x10 / bisection search then goes on
    as usual. Clipped to :data:`LINEAR_CONST_RANGE` (a zero gradient gives the upper
    end). Measured in bench/NOTES.md row 27 (a large gain for EAD's short budgets).
    """

    def loss(images):
        per_example = margin_loss(logits_fn(images), labels, targeted, confidence)
        return jnp.sum(per_example), per_example

    grads, h = jax.grad(loss, has_aux=True)(x)
    squared_norm = jnp.sum(grads.reshape(grads.shape[0], -1) ** 2, axis=-1)
    low, high = LINEAR_CONST_RANGE
    const = jnp.where(squared_norm > 0, 2 * h / jnp.maximum(squared_norm, 1e-30), high)
    return jnp.clip(const, low, high).astype(jnp.float32)


def last_step_const(const, upper):
    """With >= 10 search steps, the reference retries the upper bound in the last step.

    Deviation: the reference sets c to the upper bound even when none was found
    (c = 1e10); here c is then left as it is.
    """
    return jnp.where(upper < 1e9, upper, const)


def distortions(delta: jax.Array) -> dict[str, jax.Array]:
    """L0 / L1 / L2 / Linf of (B, H, W, C) perturbations -> dict of (B,)."""
    flat = delta.reshape(delta.shape[0], -1)
    return {
        "l0": jnp.sum(jnp.abs(flat) > 1e-7, axis=-1).astype(jnp.float32),
        "l1": jnp.sum(jnp.abs(flat), axis=-1),
        "l2": jnp.sqrt(jnp.sum(flat**2, axis=-1)),
        "linf": jnp.max(jnp.abs(flat), axis=-1),
    }


def finish(logits_fn: LogitsFn, x, labels, best_adv, found, const, targeted, confidence):
    """Builds the :class:`AttackResult`: re-checks success on the returned images."""
    found = found & is_success(logits_fn(best_adv), labels, targeted, confidence)
    adversarial = jnp.where(found[:, None, None, None], best_adv, x)
    stats = distortions(adversarial - x)
    return AttackResult(adversarial=adversarial, success=found, const=const, **stats)


# The most iterations per search step an attack accepts (the reference uses 10,000).
MAX_ITERATIONS = 1_000_000
# The most binary-search steps on c (the reference uses 9; see validate()).
MAX_SEARCH_STEPS = 100


def check_start(start, x, low: float = -np.inf, high: float = np.inf) -> None:
    """A start point (B, H, W, C), if given: finite (a NaN would survive any projection
    and make every iterate NaN), in [low, high], of the shape of ``x``."""
    if start is not None:
        check_images("start", start, low=low, high=high)
        if start.shape != x.shape:
            raise ValueError(f"start must have the shape of x {x.shape}, got {start.shape}")


def validate(
    x,
    labels,
    *,
    confidence,
    binary_search_steps,
    max_iterations,
    learning_rate,
    initial_const,
    clip_min,
    clip_max,
) -> None:
    """Checks the attack arguments; raises ValueError/TypeError naming the bad one."""
    # an infinite box breaks CW's tanh change of variables (every step NaN, no success)
    check_real("clip_min", clip_min)
    check_real("clip_max", clip_max)
    if not clip_min < clip_max:
        raise ValueError(f"clip_min must be < clip_max, got {clip_min} and {clip_max}")
    check_images("x", x, low=clip_min, high=clip_max)
    if x.shape[0] == 0:
        raise ValueError("x must hold at least one image, got an empty batch")
    if not hasattr(labels, "shape") or labels.shape != (x.shape[0],):
        got = getattr(labels, "shape", type(labels).__name__)
        raise ValueError(f"labels must have shape ({x.shape[0]},), got {got}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be integers, got dtype {labels.dtype}")
    # c grows tenfold per failed step, past float32 after ~40 from 1e-3, and bisection
    # reaches float32 resolution in fewer: more steps change nothing but the run time
    check_int("binary_search_steps", binary_search_steps, low=1, high=MAX_SEARCH_STEPS)
    # a bound, not a budget anyone runs: 10**9 iterations would run for years unasked
    check_int("max_iterations", max_iterations, low=1, high=MAX_ITERATIONS)
    check_real("confidence", confidence, low=0.0)
    check_real("learning_rate", learning_rate, above=0.0)
    if not isinstance(initial_const, str):
        check_real("initial_const", initial_const, above=0.0)
    elif initial_const != LINEAR_CONST:  # a TypeError, as for any other non-number
        raise TypeError(
            f"initial_const must be a real number, got str {initial_const!r:.40} "
            f"(or the string {LINEAR_CONST!r})"
        )


def check_label_range(labels, num_classes: int) -> None:
    """Labels must index the classifier's outputs (checked on concrete labels only)."""
    if isinstance(labels, jax.core.Tracer):
        return
    values = np.asarray(labels)
    if values.size and (values.min() < 0 or values.max() >= num_classes):
        raise ValueError(
            f"labels must be in [0, {num_classes}), got values in [{values.min()}, {values.max()}]"
        )
