"""APGD, Auto-PGD (Croce & Hein, ICML 2020, arXiv 2003.01690), in the L-inf and L2 balls.

PGD with momentum whose step size adapts per example, so it needs no step-size
tuning. From a start x_0 with step eta = 2 * epsilon, step k is

    z       = P(x_k + eta_k * direction(grad f(x_k)))
    x_{k+1} = P(x_k + a * (z - x_k) + (1 - a) * (x_k - x_{k-1}))

with P the projection onto the ball and the box [0, 1], direction = sign (L-inf) or
g / ||g||_2 (L2), a = 0.75 (1 at the first step, which has no previous one). The
step size may halve only at checkpoints: window j (the steps since the last one)
has max(int(0.22 N) - j * int(0.03 N), int(0.06 N)) steps, each at least 1 (for
N = 100 the checkpoints are the paper's w_j = ceil(p_j N): 22, 41, 57, 70, 80, 87,
93, 99, from p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)).
At a checkpoint an example halves its step size if

  1. its loss went up in at most rho * (window length) of the window's steps
     (rho = 0.75; each step's loss compared with the previous step's), or
  2. it did not halve at the last checkpoint and its best loss has not improved
     since then,

and then restarts from its best point (highest loss so far) with that point's gradient.

Losses (ascended), for logits z, label y, zpi the logits sorted decreasingly:
``"ce"`` cross-entropy; ``"margin"`` max_{i != y} z_i - z_y (the CW loss);
``"dlr"`` -(z_y - max_{i != y} z_i) / (zpi_1 - zpi_3); ``"dlr-targeted"`` (APGD-T)
-(z_y - z_t) / (zpi_1 - (zpi_3 + zpi_4) / 2), run once per target t among the
``target_classes`` classes with the highest clean logits other than y. An image
counts as broken when its argmax is not y (untargeted, for every loss).

Restarts: each run (restart, and target for APGD-T) starts at a random point of
the ball; per example the attack keeps the point that is misclassified, else the one
with the highest loss, over every iterate of every run (among misclassified points,
the one with the highest loss too). The restarts stop once every example is broken.

Randomized models (``stochastic=True``, ``logits_fn(x, key)``): every step calls the
model with R = ``draws`` fresh keys (draw r of a call with key k gets
``jax.random.split(k, R)[r]``) and uses the mean over the draws of the loss, its
gradient and the logits (EOT, Athalye et al. 2018; AutoAttack's ``eot_iter``):
the best point and the misclassification check follow the averaged values. The
returned point's ``success`` is re-checked with keys no step saw.

Loops (``loop=``), as :mod:`remix_jax.attacks.search`: "device" runs the steps of a
run as one ``fori_loop``; "host" (the default on CPU) runs jitted chunks of ``chunk``
unrolled steps, because XLA:CPU runs convolutions inside a loop body several times
slower (MNIST classifier, 32 images, 20 steps: 6.4 s in a loop, 0.8 s unrolled). Both
compute the same thing. The number of steps is traced: runs of other lengths reuse
the compiled steps.

Deviations from the reference, ``autoattack/autopgd_base.py`` of fra31/auto-attack
(commit a392200), and why:

- Condition 1 in the first window compares the first step's loss with the start
  point's loss (the paper's rule); the reference compares it with a row of its loss
  history not written yet (zeros), i.e. counts an increase where the loss is > 0.
- With EOT the best point and the misclassification check use the mean over the R
  draws of the loss and of the logits; the reference uses those of its last draw
  only, so its best point follows a single draw (the issue asks for the averaged loss).
- The returned point: the reference returns the last misclassified iterate, else the
  clean image. Here, the highest-loss misclassified point, else the highest-loss
  point, so that a randomized model judged later with fresh keys (and a portfolio of
  attacks) gets the attacker's best guess rather than the clean image.
- Every example runs every restart (static shapes; the restarts stop once all are
  broken); the reference attacks only the examples not broken yet. By the rule above
  a broken example keeps a broken point, so only which broken point can differ.
- APGD-T's targets skip the label: the reference ranks all classes, so an example
  misclassified to begin with could get its own label as a target (it never attacks
  such examples; here every example is attacked).
- Condition 1 is ``<=`` as in the reference (the paper writes ``<``); the two differ
  only where rho * window is an integer (window 16 at N = 100).
- Added: the "margin" loss (eval.adaptive's default), ``penalty`` (as in
  :func:`remix_jax.attacks.pgd.pgd`: subtracted from the loss, and an example counts as
  broken only where its margin also exceeds the penalty), a given ``start`` for the
  first restart. Left out: the L1 ball, ``use_largereps``, the zero-gradient warning.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from remix_jax._checks import (
    check_int,
    check_logits_shape,
    check_real,
    fold_counter,
)
from remix_jax.attacks import common
from remix_jax.attacks.common import AttackResult
from remix_jax.attacks.pgd import (
    _bind,
    _l2_norm,
    _objective,
    _per_example,
    _project,
    check_ball_attack,
)

LOSSES = ("ce", "margin", "dlr", "dlr-targeted")
LOOPS = ("device", "host")
MOMENTUM = 0.75  # a: the weight of the new step against the previous one
# the schedule as fractions of the steps: first window, its decrease, the shortest one
WINDOW_FRACTIONS = (0.22, 0.03, 0.06)


class Settings(NamedTuple):
    """The static settings of a run (part of the compiled computation)."""

    norm: str
    loss: str
    draws: int
    stochastic: bool


def checkpoints(steps: int) -> list[int]:
    """The step counts after which the step size may halve: w_1 < w_2 < ... <= steps.

    Integer windows as in the reference (see the module docstring); for steps = 100
    the paper's 22, 41, 57, 70, 80, 87, 93, 99.
    """
    window, decrease, shortest = (max(int(f * steps), 1) for f in WINDOW_FRACTIONS)
    points, at = [], window
    while at <= steps:
        points.append(at)
        window = max(window - decrease, shortest)
        at += window
    return points


# more than any number of steps has (17, at 27 steps): the schedule's traced shape
MAX_CHECKPOINTS = 32
# Most restarts (and EOT draws) one call accepts: AutoAttack uses 1-5 restarts and 20
# draws; a larger count is a typo that would run for days.
MAX_RESTARTS = 1000


def _schedule(steps: int) -> np.ndarray:
    """(2, MAX_CHECKPOINTS) int32: the checkpoints w_j and their windows' lengths.

    Padded with zeros (no step count is 0), so that the number of steps is traced and
    runs of other lengths reuse the compiled steps.
    """
    marks = checkpoints(steps)
    table = np.zeros((2, MAX_CHECKPOINTS), np.int32)
    table[0, : len(marks)] = marks
    table[1, : len(marks)] = np.diff([0, *marks])
    return table


def dlr_loss(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Difference of logits ratio: -(z_y - max_{i != y} z_i) / (zpi_1 - zpi_3). (B, K >= 3) -> (B,).

    Invariant to shifting and scaling the logits, unlike the cross-entropy, so it does
    not vanish on confident (saturated) classifiers.
    """
    top = jax.lax.top_k(logits, 3)[0]
    return common.margin(logits, labels, False) / (top[:, 0] - top[:, 2] + 1e-12)


def targeted_dlr_loss(logits: jax.Array, labels: jax.Array, targets: jax.Array) -> jax.Array:
    """-(z_y - z_t) / (zpi_1 - (zpi_3 + zpi_4) / 2): logits (B, K >= 4), labels, targets (B,)."""
    top = jax.lax.top_k(logits, 4)[0]

    def logit(c):
        return jnp.take_along_axis(logits, c[:, None], axis=-1)[:, 0]

    scale = top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + 1e-12
    return (logit(targets) - logit(labels)) / scale


def _loss(logits, labels, targets, loss):
    """(B,) what the attack ascends (``targets`` only for "dlr-targeted")."""
    if loss == "dlr":
        return dlr_loss(logits, labels)
    if loss == "dlr-targeted":
        return targeted_dlr_loss(logits, labels, targets)
    return _objective(logits, labels, False, loss)


def _mean_logits(key, z, *, logits_fn, settings):
    """(B, K) logits at ``z``: the mean over the R draws of a randomized model."""
    if not settings.stochastic:
        return logits_fn(z)
    keys = jax.random.split(key, settings.draws)
    return jnp.mean(jax.vmap(logits_fn, in_axes=(None, 0))(z, keys), 0)


def _evaluate(key, z, labels, targets, *, logits_fn, settings, penalty):
    """The loss at ``z`` (B, H, W, C), its gradient, the logits and the penalty.

    A randomized model is called with each of ``jax.random.split(key, R)`` (with a
    penalty, each of those keys is split in two: the model's and the penalty's); a
    deterministic one once, and ``key`` only feeds the penalty.

    Returns:
      loss (B,), gradient (B, H, W, C), logits (B, K), penalty (B,): their means over
      the R draws.
    """

    def one(draw_key, image):
        model_key, penalty_key = (
            jax.random.split(draw_key) if penalty is not None else (draw_key, None)
        )
        logits = logits_fn(image, model_key) if settings.stochastic else logits_fn(image)
        paid = jnp.zeros(image.shape[0]) if penalty is None else penalty(image, penalty_key)
        value = _loss(logits, labels, targets, settings.loss) - paid
        # each example's loss depends on its own image only: the sum's gradient is theirs
        return jnp.sum(value), (value, logits, paid)

    gradient = jax.grad(one, argnums=1, has_aux=True)
    if not settings.stochastic:
        grad, (value, logits, paid) = gradient(key, z)
        return value, grad, logits, paid
    grads, aux = jax.vmap(gradient, in_axes=(0, None))(jax.random.split(key, settings.draws), z)
    value, logits, paid = (jnp.mean(a, 0) for a in aux)
    return value, jnp.mean(grads, 0), logits, paid


def _broken(logits, labels, paid):
    """(B,) the argmax is not the label, by a margin of at least the penalty."""
    return common.is_success(logits, labels, False, paid)


def _better(found, loss, old_found, old_loss):
    """(B,) the new point beats the kept one: broken first, then the higher loss."""
    return (found & ~old_found) | ((found == old_found) & (loss > old_loss))


def _into_ball(x, point, epsilon, norm):
    """``point`` projected onto the ``norm`` ball of radius ``epsilon`` around x, then [0, 1]."""
    return jnp.clip(x + _project(point - x, epsilon, norm), 0.0, 1.0)


_into_ball_jit = jax.jit(_into_ball, static_argnames="norm")


def _direction(grad, norm):
    if norm == "linf":
        return jnp.sign(grad)
    return grad / _per_example(jnp.maximum(_l2_norm(grad), 1e-12), grad)


@functools.partial(jax.jit, static_argnames="norm")
def _start_point(key, x, epsilon, norm):
    """The reference's random start: (B, H, W, C) in the ball and the box.

    L-inf: uniform noise in [-1, 1] scaled so its largest entry is epsilon; L2: a
    uniformly random point of the sphere of radius epsilon. Then clipped to [0, 1].
    """
    if norm == "linf":
        noise = jax.random.uniform(key, x.shape, x.dtype, -1.0, 1.0)
        size = jnp.max(jnp.abs(noise), axis=(1, 2, 3))
    else:
        noise = jax.random.normal(key, x.shape, x.dtype)
        size = _l2_norm(noise)
    return jnp.clip(x + epsilon * noise / _per_example(size + 1e-12, x), 0.0, 1.0)


def _halve(increases, window, rho, halved_before, checked_loss, best_loss):
    """(B,) bool: halve the step size at a checkpoint closing a ``window``-step window.

    Args:
      increases: (B,) int, steps of the window whose loss beat the previous step's.
      window: the window's length (a scalar).
      rho: condition 1's fraction.
      halved_before: (B,) bool, halved at the previous checkpoint.
      checked_loss, best_loss: (B,) the best loss at the previous checkpoint and now.
    """
    rarely_up = increases.astype(jnp.float32) <= rho * window.astype(jnp.float32)
    stalled = ~halved_before & (best_loss <= checked_loss)
    return rarely_up | stalled


class Problem(NamedTuple):
    """The traced inputs of a run, the same at every step."""

    x: jax.Array  # (B, H, W, C) the clean images
    labels: jax.Array  # (B,) int32
    targets: jax.Array  # (B,) int32, "dlr-targeted"'s (the labels for the other losses)
    epsilon: jax.Array  # float32
    rho: jax.Array  # float32
    schedule: jax.Array  # (2, MAX_CHECKPOINTS) int32, from _schedule(steps)


_STATIC = ("logits_fn", "settings", "penalty")


def _begin(key, problem, start, *, logits_fn, settings, penalty):
    """A run's state at its start point ``start`` (B, H, W, C); ``key``: the run's steps."""
    loss, grad, logits, paid = _evaluate(
        fold_counter(key, 0),
        start,
        problem.labels,
        problem.targets,
        logits_fn=logits_fn,
        settings=settings,
        penalty=penalty,
    )
    batch = start.shape[0]
    return {
        "x": start,  # x_k
        "previous": start,  # x_{k-1}
        "grad": grad,
        "step": jnp.full(batch, 2 * problem.epsilon, jnp.float32),
        "loss": loss,  # f(x_k), for condition 1
        "increases": jnp.zeros(batch, jnp.int32),  # condition 1's count in this window
        "best_loss": loss,
        "best_x": start,
        "best_grad": grad,
        "checked_loss": loss,  # best_loss at the last checkpoint (condition 2)
        "halved": jnp.ones(batch, bool),  # at the last checkpoint: none before the first
        "out_x": start,
        "out_found": _broken(logits, problem.labels, paid),
        "out_loss": loss,
    }


def _iterate(key, i, state, problem, static):
    """Step index ``i`` (0-based) of a run, then the checkpoint it may close."""
    x, epsilon, norm = problem.x, problem.epsilon, static["settings"].norm
    a = jnp.where(i == 0, 1.0, MOMENTUM)
    here, step = state["x"], _per_example(state["step"], problem.x)
    z = _into_ball(x, here + step * _direction(state["grad"], norm), epsilon, norm)
    moved = _into_ball(
        x, here + a * (z - here) + (1 - a) * (here - state["previous"]), epsilon, norm
    )
    loss, grad, logits, paid = _evaluate(
        fold_counter(key, i + 1), moved, problem.labels, problem.targets, **static
    )
    found = _broken(logits, problem.labels, paid)
    keep = _better(found, loss, state["out_found"], state["out_loss"])
    improved = loss > state["best_loss"]
    best_loss = jnp.where(improved, loss, state["best_loss"])
    best_x = jnp.where(_per_example(improved, x), moved, state["best_x"])
    best_grad = jnp.where(_per_example(improved, x), grad, state["best_grad"])
    increases = state["increases"] + (loss > state["loss"]).astype(jnp.int32)

    # the length of the window this step closes, else 0
    marks, lengths = problem.schedule
    window = jnp.sum(jnp.where(marks == i + 1, lengths, 0))
    check = window > 0
    halve = check & _halve(
        increases, window, problem.rho, state["halved"], state["checked_loss"], best_loss
    )
    restart = _per_example(halve, x)
    return {
        "x": jnp.where(restart, best_x, moved),
        "previous": here,  # as the reference: a restart's momentum points from here
        "grad": jnp.where(restart, best_grad, grad),
        "step": jnp.where(halve, state["step"] / 2, state["step"]),
        "loss": loss,
        "increases": jnp.where(check, 0, increases),
        "best_loss": best_loss,
        "best_x": best_x,
        "best_grad": best_grad,
        "checked_loss": jnp.where(check, best_loss, state["checked_loss"]),
        "halved": jnp.where(check, halve, state["halved"]),
        "out_x": jnp.where(_per_example(keep, x), moved, state["out_x"]),
        "out_found": jnp.where(keep, found, state["out_found"]),
        "out_loss": jnp.where(keep, loss, state["out_loss"]),
    }


def _steps(key, problem, state, first, last, static, unroll):
    """Step indices first .. last - 1 of a run: a ``fori_loop``, or ``unroll`` unrolled."""

    def body(i, s):
        return _iterate(key, i, s, problem, static)

    if unroll is None:
        return jax.lax.fori_loop(first, last, body, state)
    for k in range(unroll):  # unrolled on purpose: see the module docstring
        state = body(first + k, state)
    return state


@functools.partial(jax.jit, static_argnames=_STATIC)
def _device_run(key, problem, start, steps, *, logits_fn, settings, penalty):
    """A whole run as one computation: its final state."""
    static = {"logits_fn": logits_fn, "settings": settings, "penalty": penalty}
    state = _begin(key, problem, start, **static)
    return _steps(key, problem, state, 0, steps, static, None)


_host_begin = jax.jit(_begin, static_argnames=_STATIC)


@functools.partial(jax.jit, static_argnames=(*_STATIC, "length"))
def _host_chunk(key, problem, state, first, *, logits_fn, settings, penalty, length):
    """``length`` steps from step index ``first``, unrolled."""
    static = {"logits_fn": logits_fn, "settings": settings, "penalty": penalty}
    return _steps(key, problem, state, first, None, static, length)


@jax.jit
def _merge(kept, run):
    """Per example, ``run``'s point where it beats ``kept``'s (the restarts' rule)."""
    better = _better(run["found"], run["loss"], kept["found"], kept["loss"])
    return jax.tree.map(lambda new, old: jnp.where(_per_example(better, new), new, old), run, kept)


@functools.partial(jax.jit, static_argnames=("logits_fn", "settings", "count"))
def _targets(key, x, labels, *, logits_fn, settings, count):
    """(count, B): per example, the classes but its label by decreasing clean logit."""
    logits = _mean_logits(key, x, logits_fn=logits_fn, settings=settings)
    own = jax.nn.one_hot(labels, logits.shape[-1], dtype=bool)
    return jnp.argsort(-jnp.where(own, -jnp.inf, logits), axis=-1)[:, :count].T


@functools.partial(jax.jit, static_argnames=("logits_fn", "settings"))
def _finish(key, x, labels, adversarial, *, logits_fn, settings):
    """The result, ``adversarial``'s success judged under fresh draws."""
    logits = _mean_logits(key, adversarial, logits_fn=logits_fn, settings=settings)
    return AttackResult(
        adversarial=adversarial,
        success=common.is_success(logits, labels, False, jnp.float32(0.0)),
        const=jnp.zeros(x.shape[0]),
        **common.distortions(adversarial - x),
    )


def _run(key, problem, start, *, steps, loop, chunk, static):
    """One run from ``start``: per example its kept point, whether broken, its loss."""
    if loop == "device":
        state = _device_run(key, problem, start, steps, **static)
    else:
        state = _host_begin(key, problem, start, **static)
        for first in range(0, steps, chunk):
            state = _host_chunk(
                key, problem, state, first, length=min(chunk, steps - first), **static
            )
    return {"x": state["out_x"], "found": state["out_found"], "loss": state["out_loss"]}


def apgd(
    logits_fn: common.LogitsFn,
    x: jax.Array,
    labels: jax.Array,
    *,
    key: jax.Array,
    epsilon: float,
    norm: str = "linf",
    steps: int = 100,
    loss: str = "ce",
    restarts: int = 1,
    target_classes: int | None = None,
    draws: int = 1,
    rho: float = 0.75,
    start: jax.Array | None = None,
    stochastic: bool = False,
    penalty: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    loop: str | None = None,
    chunk: int = 10,
) -> AttackResult:
    """APGD in the ``norm`` ball of radius ``epsilon`` (see the module docstring).

    Args:
      logits_fn: ``fn(x (B, H, W, C)) -> logits (B, K)``, or ``fn(x, key)`` when
        ``stochastic``. Pass the same object to reuse the compiled steps.
      x: (B, H, W, C) float images in [0, 1].
      labels: (B,) int true labels.
      key: PRNG key: the random starts, the targets' and the steps' model draws.
      epsilon: radius of the ball (> 0).
      norm: "linf" or "l2".
      steps: N, iterations per run (the model is evaluated N + 1 times per run).
      loss: "ce", "margin", "dlr" (K >= 3) or "dlr-targeted" (APGD-T, K >= 4).
      restarts: runs from random starts (per target with "dlr-targeted").
      target_classes: "dlr-targeted" only: targets per example, the classes with the
        highest clean logits but the label (None: min(9, K - 1), AutoAttack's 9).
      draws: R, EOT draws of a randomized model per step (needs ``stochastic``).
      rho: condition 1's fraction of steps that raised the loss, in (0, 1].
      start: (B, H, W, C) the first restart's start (projected into the ball and the
        box), e.g. a transfer attack's example; the other restarts start at random.
      stochastic: ``logits_fn`` takes a key (a randomized defense).
      penalty: ``fn(x (B, H, W, C), key) -> (B,)`` subtracted from the loss (e.g. a
        weighted detector score; see the module docstring); a fresh key per draw.
      loop: "device", "host" or None (host on CPU, device elsewhere).
      chunk: steps per jitted computation with the host loop.

    Returns:
      :class:`AttackResult`: per example the kept point (returned also when it does
      not succeed); ``success``: its argmax is not the label, under R fresh draws
      (their mean logits) for a randomized model; ``const`` is 0.
    """
    check_ball_attack(
        key, x, labels, steps=steps, norm=norm, loss=loss, losses=LOSSES, epsilon=epsilon
    )
    check_int("restarts", restarts, low=1, high=MAX_RESTARTS)
    check_int("draws", draws, low=1, high=MAX_RESTARTS)
    if draws > 1 and not stochastic:
        raise ValueError(
            f"draws must be 1 for a deterministic model (stochastic=False), got {draws}"
        )
    check_real("rho", rho, above=0.0)
    if rho > 1:
        raise ValueError(f"rho must be in (0, 1], got {rho}")
    loop = loop or ("host" if jax.default_backend() == "cpu" else "device")
    if loop not in LOOPS:
        raise ValueError(f"loop must be one of {LOOPS} or None, got {loop!r}")
    check_int("chunk", chunk, low=1)
    common.check_start(start, x)

    x = jnp.asarray(x, jnp.float32)  # the steps run in float32: probe the model so too
    # the whole batch, traced only (a one-image probe passes a one-row classifier)
    logits_shape = jax.eval_shape(_bind(logits_fn, stochastic, key), x).shape
    classes = check_logits_shape(logits_shape, x.shape[0])
    common.check_label_range(labels, classes)
    fewest = {"dlr": 3, "dlr-targeted": 4}.get(loss, 2)
    if classes < fewest:
        raise ValueError(f"loss {loss!r} needs >= {fewest} classes, the model has {classes}")
    labels = jnp.asarray(labels, jnp.int32)
    settings = Settings(norm, loss, draws, stochastic)
    static = {"logits_fn": logits_fn, "settings": settings, "penalty": penalty}
    eps, rho = jnp.float32(epsilon), jnp.float32(rho)
    runs_key, targets_key, final_key = jax.random.split(key, 3)

    targets = [labels]  # unused by the untargeted losses
    if loss == "dlr-targeted":
        count = min(9, classes - 1) if target_classes is None else target_classes
        check_int("target_classes", count, low=1, high=classes - 1)
        ranked = _targets(
            targets_key, x, labels, logits_fn=logits_fn, settings=settings, count=count
        )
        targets = list(ranked)

    kept, schedule = None, jnp.asarray(_schedule(steps))
    for t, target in enumerate(targets):
        problem = Problem(x, labels, target, eps, rho, schedule)
        for r in range(restarts):
            if kept is not None and bool(np.all(np.asarray(kept["found"]))):
                break
            start_key, step_key = jax.random.split(fold_counter(runs_key, t * restarts + r))
            if start is not None and r == 0:
                begin = _into_ball_jit(x, jnp.asarray(start, jnp.float32), eps, norm=norm)
            else:
                begin = _start_point(start_key, x, eps, norm)
            run = _run(step_key, problem, begin, steps=steps, loop=loop, chunk=chunk, static=static)
            kept = run if kept is None else _merge(kept, run)
    return _finish(final_key, x, labels, kept["x"], logits_fn=logits_fn, settings=settings)
