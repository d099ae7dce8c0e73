"""The loop both attacks share: per-example binary search on c around an inner optimiser.

An attack supplies an :class:`Algorithm`: ``reset`` (its variables at the start of a
search step) and ``iterate`` (one optimisation step, also returning the candidate it
judged, that candidate's score for "best", its success and its loss for the early
abort). Everything else is here, per example: the search on c (Carlini's x10, then
bisection), the early abort every max_iterations/10 steps on a loss that has not
dropped by 0.01%, freezing aborted examples, and keeping the best successful
candidate over all steps.

Two ways to drive the same pure functions (``loop=``):
  * "device": the whole search is one XLA computation (``fori_loop`` over search
    steps, ``while_loop`` over iterations that stops once every example aborted).
    The default on GPU/TPU.
  * "host": Python drives chunks of ``chunk`` unrolled iterations, each chunk one
    jitted computation. The default on CPU, because XLA:CPU runs convolutions
    inside a ``while_loop`` body ~8x slower than at the top level (measured with
    jaxlib 0.10.2: MNIST CNN gradient, batch 100, 39 ms/step unrolled vs 307 ms/step
    in a loop). The host reads the (B,) active flags after each chunk and, once the
    early abort has stopped at least half of the batch, moves the active examples
    into a smaller power-of-two batch (``compact``), so finished examples stop
    costing work; they are scattered back at the end of the search step.
Both give the same result up to floating-point reassociation.

Randomized models (``Spec.stochastic``, e.g. a classifier behind REMIX for an
adaptive attack, :mod:`remix_jax.attacks.adaptive`): ``logits_fn(x, key)`` gets the key
``fold_in(fold_in(key, search_step), iteration)``, the same whatever the loop or the
compaction, so a run is reproducible; the final success check uses
``fold_in(key, binary_search_steps)``, a key no iteration saw.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from remix_jax._checks import check_key, check_logits_shape, fold_counter
from remix_jax.attacks import common


class Hyper(NamedTuple):
    """Traced (non-static) attack settings: changing them does not recompile."""

    confidence: jax.Array
    learning_rate: jax.Array
    initial_const: jax.Array  # () or (B,): the first c of every example / of each
    clip_min: jax.Array
    clip_max: jax.Array
    extra: Any = None  # the algorithm's own traced settings (a pytree; EAD: {"beta": ...})
    key: jax.Array | None = None  # randomized models only (Spec.stochastic)


@dataclasses.dataclass(frozen=True)
class Spec:
    """Static attack settings (part of the compiled computation)."""

    targeted: bool
    binary_search_steps: int
    max_iterations: int
    abort_early: bool
    options: Any = None  # the algorithm's own static settings (hashable; EAD: EADOptions)
    stochastic: bool = False  # logits_fn(x, key) instead of logits_fn(x)
    warm_start: bool = False  # restart each search step from the best example so far
    started: bool = False  # a start was given: kept where the best fails the final check


class Step(NamedTuple):
    """What ``Algorithm.iterate`` returns."""

    variables: Any  # the attack's new optimisation variables
    candidate: jax.Array  # (B, H, W, C) the image judged this iteration
    score: jax.Array  # (B,) smaller is better among successes
    success: jax.Array  # (B,) the candidate reaches kappa
    loss: jax.Array  # (B,) the loss the early abort watches


class Algorithm(NamedTuple):
    reset: Callable[..., Any]  # reset(origin, hyper) -> variables, starting at origin
    iterate: Callable[..., Step]  # iterate(logits_fn, spec, hyper, x, labels, vars, const, i)


def _search_init(x, start, hyper):
    batch = x.shape[0]
    f32 = jnp.float32  # explicit dtypes: weak types would recompile the next step
    return {
        "const": jnp.broadcast_to(hyper.initial_const, (batch,)).astype(f32),
        "lower": jnp.zeros(batch, f32),
        "upper": jnp.full(batch, common.NO_UPPER_BOUND, f32),
        "best_score": jnp.full(batch, common.NO_SUCCESS, f32),
        "best_adv": x,
        "start": start,  # where each search step's optimisation begins (x by default)
    }


def _origin(spec, search):
    """Where a search step's optimisation begins: the start, or with ``warm_start`` the
    best successful example found so far (the start while there is none)."""
    if not spec.warm_start:
        return search["start"]
    found = search["best_score"] < common.NO_SUCCESS
    return jnp.where(_per_example(found, search["start"]), search["best_adv"], search["start"])


def _begin(algorithm, spec, hyper, x, search, outer):
    """Starts search step ``outer``: fresh variables, everyone active."""
    const = search["const"]
    if spec.binary_search_steps >= 10:
        last = outer == spec.binary_search_steps - 1
        const = jnp.where(last, common.last_step_const(const, search["upper"]), const)
    batch = x.shape[0]
    if spec.stochastic:
        search = {**search, "key": fold_counter(hyper.key, outer)}
    return {
        **search,
        "const": const,
        "variables": algorithm.reset(_origin(spec, search), hyper),
        "active": jnp.ones(batch, bool),
        "prev": jnp.full(batch, jnp.inf, jnp.float32),
        "step_success": jnp.zeros(batch, bool),
    }


def _iterate(algorithm, logits_fn, spec, hyper, x, labels, state, i):
    """One iteration for every example, with the shared bookkeeping."""
    if spec.stochastic:
        logits_fn = _with_key(logits_fn, fold_counter(state["key"], i))
    step = algorithm.iterate(
        logits_fn, spec, hyper, x, labels, state["variables"], state["const"], i
    )
    active = state["active"]
    success = step.success & active
    better = success & (step.score < state["best_score"])
    frozen = jax.tree.map(
        lambda new, old: (
            jnp.where(_per_example(active, new), new, old)
            if new.ndim and new.shape[0] == x.shape[0]
            else new
        ),
        step.variables,
        state["variables"],
    )
    prev = state["prev"]
    if spec.abort_early:
        check = i % max(spec.max_iterations // 10, 1) == 0
        active = active & ~(check & (step.loss > prev * 0.9999))
        prev = jnp.where(check, step.loss, prev)
    return {
        **state,
        "variables": frozen,
        "active": active,
        "prev": prev,
        "step_success": state["step_success"] | success,
        "best_score": jnp.where(better, step.score, state["best_score"]),
        "best_adv": jnp.where(_per_example(better, x), step.candidate, state["best_adv"]),
    }


def _with_key(logits_fn, key):
    """A randomized ``logits_fn(x, key)`` with its key fixed: ``fn(x)``.

    Every call within one iteration sees the same draw (EAD evaluates the model at
    two points per step); each gets a clone, so that jax_debug_key_reuse knows it.
    """
    return lambda images: logits_fn(images, jax.random.clone(key))


def _per_example(flags, like):
    return flags.reshape(flags.shape + (1,) * (like.ndim - 1))


def _end(state):
    """Ends a search step: per-example update of c."""
    const, lower, upper = common.update_const(
        state["const"], state["lower"], state["upper"], state["step_success"]
    )
    return {
        "const": const,
        "lower": lower,
        "upper": upper,
        "best_score": state["best_score"],
        "best_adv": state["best_adv"],
        "start": state["start"],
    }


def _result(logits_fn, spec, hyper, x, labels, search):
    found = search["best_score"] < common.NO_SUCCESS
    if spec.stochastic:
        logits_fn = _with_key(logits_fn, fold_counter(hyper.key, spec.binary_search_steps))
    best = search["best_adv"]
    if spec.started:
        # On a randomized model the smallest example found is often adversarial only
        # under the draws that judged it, and fails the final check under a fresh one:
        # there a given start that passes it is returned instead of the clean image.
        def passes(images):
            return common.is_success(logits_fn(images), labels, spec.targeted, hyper.confidence)

        kept = found & passes(best)
        fallback = ~kept & passes(search["start"])
        best = jnp.where(_per_example(kept, x), best, search["start"])
        found = kept | fallback
    return common.finish(
        logits_fn, x, labels, best, found, search["const"], spec.targeted, hyper.confidence
    )


_STATIC = ("algorithm", "logits_fn", "spec")


@functools.partial(jax.jit, static_argnames=_STATIC)
def _run_on_device(x, start, labels, hyper, *, algorithm, logits_fn, spec):
    def outer(o, search):
        state = _begin(algorithm, spec, hyper, x, search, o)

        def cond(carry):
            i, state = carry
            return (i < spec.max_iterations) & jnp.any(state["active"])

        def body(carry):
            i, state = carry
            return i + 1, _iterate(algorithm, logits_fn, spec, hyper, x, labels, state, i)

        _, state = jax.lax.while_loop(cond, body, (0, state))
        return _end(state)

    search = jax.lax.fori_loop(0, spec.binary_search_steps, outer, _search_init(x, start, hyper))
    return _result(logits_fn, spec, hyper, x, labels, search)


@functools.partial(jax.jit, static_argnames=("algorithm", "spec"))
def _host_begin(x, hyper, search, outer, *, algorithm, spec):
    return _begin(algorithm, spec, hyper, x, search, outer)


@functools.partial(jax.jit, static_argnames=(*_STATIC, "length"))
def _host_chunk(x, labels, hyper, state, start, *, algorithm, logits_fn, spec, length):
    for k in range(length):  # unrolled on purpose: see the module docstring
        state = _iterate(algorithm, logits_fn, spec, hyper, x, labels, state, start + k)
    return state, state["active"]


_host_end = jax.jit(_end)
_host_init = jax.jit(_search_init)
_host_result = jax.jit(_result, static_argnames=("logits_fn", "spec"))


def _is_per_example(leaf, batch: int) -> bool:
    return leaf.ndim > 0 and leaf.shape[0] == batch


@functools.partial(jax.jit, static_argnames="batch")
def _gather(tree, index, *, batch):
    return jax.tree.map(lambda a: a[index] if _is_per_example(a, batch) else a, tree)


@functools.partial(jax.jit, static_argnames="batch")
def _scatter(full, index, part, *, batch):
    # shared leaves (e.g. Adam's step count) advanced with the part: take the part's
    return jax.tree.map(
        lambda f, p: f.at[index].set(p) if _is_per_example(f, batch) else p, full, part
    )


def _bucket(active: int, current: int, smallest: int = 8) -> int:
    """The compacted batch size for ``active`` examples, or ``current`` to keep it.

    Power-of-two sizes bound the number of compiled shapes; compacting only when the
    work at least halves keeps the gather/scatter and recompiles rare.
    """
    size = max(smallest, 1 << max(active - 1, 0).bit_length())
    return size if size * 2 <= current else current


def _run_on_host(x, start, labels, hyper, *, algorithm, logits_fn, spec, chunk, compact, on_step):
    batch = x.shape[0]
    search = _host_init(x, start, hyper)
    for outer in range(spec.binary_search_steps):
        state = _host_begin(x, hyper, search, outer, algorithm=algorithm, spec=spec)
        index = None  # None: the working state is the whole batch
        work, work_x, work_labels = state, x, labels
        i = 0
        while i < spec.max_iterations:
            length = min(chunk, spec.max_iterations - i)
            work, active = _host_chunk(
                work_x,
                work_labels,
                hyper,
                work,
                i,
                algorithm=algorithm,
                logits_fn=logits_fn,
                spec=spec,
                length=length,
            )
            i += length
            if not spec.abort_early:
                continue
            active = np.asarray(active)
            if not active.any():
                break
            if compact and (size := _bucket(int(active.sum()), len(active))) < len(active):
                # Finished examples would still cost a full step each: move the active
                # ones (padded with copies of a frozen one) into a smaller batch.
                if index is None:
                    state = work
                else:
                    state = _scatter(state, index, work, batch=batch)
                    active = np.asarray(state["active"])
                chosen = np.flatnonzero(active)
                filler = np.flatnonzero(~active)[0]
                index = jnp.asarray(
                    np.concatenate([chosen, np.full(size - len(chosen), filler)]), jnp.int32
                )
                work = _gather(state, index, batch=batch)
                work_x, work_labels = x[index], labels[index]
        if index is not None:
            work = _scatter(state, index, work, batch=batch)
        search = _host_end(work)
        if on_step is not None:
            on_step(outer + 1)
    return _host_result(logits_fn, spec, hyper, x, labels, search)


def run(
    algorithm: Algorithm,
    logits_fn,
    x,
    labels,
    hyper: Hyper,
    spec: Spec,
    *,
    loop: str | None = None,
    chunk: int = 10,
    compact: bool = True,
    on_step: Callable[[int], None] | None = None,
    start: jax.Array | None = None,
) -> common.AttackResult:
    """Runs the binary search of ``algorithm`` (see the module docstring).

    Args:
      start: (B, H, W, C) where each search step's optimisation begins (default ``x``;
        distances are measured to ``x`` whatever the start).
      loop: "device", "host", or None for "host" on CPU and "device" elsewhere.
      chunk: iterations per jitted computation in "host" mode.
      compact: in "host" mode, move the examples still active in a search step into
        a smaller batch once the early abort has stopped at least half of them.
      on_step: called with the number of finished search steps, after each one in
        "host" mode (a long attack can show progress) and once at the end in
        "device" mode.
    """
    loop = loop or ("host" if jax.default_backend() == "cpu" else "device")
    x = jnp.asarray(x, jnp.float32)  # a strong dtype, so every call hits the same cache
    labels = jnp.asarray(labels, jnp.int32)
    start = x if start is None else jnp.asarray(start, jnp.float32)
    if loop == "device":
        result = _run_on_device(
            x, start, labels, hyper, algorithm=algorithm, logits_fn=logits_fn, spec=spec
        )
        if on_step is not None:
            on_step(spec.binary_search_steps)
        return result
    if loop == "host":
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        return _run_on_host(
            x,
            start,
            labels,
            hyper,
            algorithm=algorithm,
            logits_fn=logits_fn,
            spec=spec,
            chunk=chunk,
            compact=compact,
            on_step=on_step,
        )
    raise ValueError(f"loop must be 'device', 'host' or None, got {loop!r}")


# The arguments every public search attack (cw_l2, ead) takes and hands to launch as
# they are: named once, so that a wrapper forwards them with search_arguments(locals()).
SEARCH_ARGUMENTS = (
    "targeted", "confidence", "binary_search_steps", "max_iterations", "learning_rate",
    "initial_const", "abort_early", "clip_min", "clip_max", "loop", "compact", "key",
    "on_step", "start", "warm_start",
)  # fmt: skip


def search_arguments(arguments: dict) -> dict:
    """The :data:`SEARCH_ARGUMENTS` among a public attack's ``arguments`` (its
    ``locals()``), as keywords for :func:`launch`."""
    return {name: arguments[name] for name in SEARCH_ARGUMENTS}


_linear_initial_const = jax.jit(common.linear_initial_const, static_argnums=(0, 3))


def launch(
    algorithm: Algorithm,
    logits_fn,
    x,
    labels,
    *,
    targeted: bool,
    confidence: float,
    binary_search_steps: int,
    max_iterations: int,
    learning_rate: float,
    initial_const: float | str,
    abort_early: bool,
    clip_min: float,
    clip_max: float,
    loop: str | None,
    compact: bool = True,
    extra: dict[str, float] | None = None,
    options: Any = None,
    key: jax.Array | None = None,
    on_step: Callable[[int], None] | None = None,
    start: jax.Array | None = None,
    warm_start: bool = False,
) -> common.AttackResult:
    """Validates the public arguments of an attack, then :func:`run` s it.

    ``extra``: the algorithm's own traced settings (floats, e.g. EAD's beta), which
    reach it as ``hyper.extra``; ``options``: its own static ones (hashable), as
    ``spec.options``. The driver reads neither. ``initial_const``: a float, or
    ``"linear"`` for each example's own first c
    (:func:`~remix_jax.attacks.common.linear_initial_const`). ``key``: None for a deterministic
    ``logits_fn(x)``; a PRNG key for a randomized ``logits_fn(x, key)`` (see the module
    docstring).
    """
    common.validate(
        x,
        labels,
        confidence=confidence,
        binary_search_steps=binary_search_steps,
        max_iterations=max_iterations,
        learning_rate=learning_rate,
        initial_const=initial_const,
        clip_min=clip_min,
        clip_max=clip_max,
    )
    if key is not None:
        check_key("key", key)
    common.check_start(start, x, clip_min, clip_max)  # in the box: CW's tanh needs it
    # the attack runs in float32 whatever the input's float dtype: probe the model so too
    x = jnp.asarray(x, jnp.float32)
    model = logits_fn if key is None else _with_key(logits_fn, key)
    try:
        # the whole batch, traced only: a classifier that returns one row whatever the
        # batch would pass a one-image probe
        out = jax.eval_shape(model, x)
    except TypeError as e:  # most often a model that does not take the key it is given
        hint = (
            "with key=, logits_fn is called as logits_fn(x, key); a deterministic "
            "logits_fn(x) takes key=None"
            if key is not None
            else "without key=, logits_fn is called as logits_fn(x); a randomized "
            "logits_fn(x, key) needs key="
        )
        raise TypeError(f"{e} ({hint})") from e
    common.check_label_range(labels, check_logits_shape(out.shape, x.shape[0]))
    if isinstance(initial_const, str):  # validated: "linear"
        initial_const = _linear_initial_const(
            model, x, jnp.asarray(labels, jnp.int32), targeted, jnp.float32(confidence)
        )
    hyper = Hyper(
        *(jnp.asarray(v, jnp.float32) for v in (confidence, learning_rate, initial_const)),
        *(jnp.float32(v) for v in (clip_min, clip_max)),
        extra=None if extra is None else {k: jnp.float32(v) for k, v in extra.items()},
        key=key,
    )
    spec = Spec(
        targeted=targeted,
        binary_search_steps=binary_search_steps,
        max_iterations=max_iterations,
        abort_early=abort_early,
        options=options,
        stochastic=key is not None,
        warm_start=bool(warm_start),
        started=start is not None,
    )
    return run(
        algorithm, logits_fn, x, labels, hyper, spec, loop=loop, compact=compact,
        on_step=on_step, start=start,
    )  # fmt: skip
