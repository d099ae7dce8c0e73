"""Opt-in checks of image values inside jitted code, with ``jax.experimental.checkify``.

The public functions check the values of their images (NaN, the [0, 1] range) only on
concrete arrays: under ``jax.jit`` the values are unknown when the checks run, so a
NaN or a 0..255 batch passes silently. :func:`image_checks` adds those checks to the
compiled program as ``checkify`` checks, which report after the run; :func:`checked`
wraps a function so that it runs them on one of its arguments first.

Shape, rank, dtype and channel errors are known at trace time and raise there
(``TypeError`` / ``ValueError``), as in the public functions; only the value checks
wait for the run. A failed check raises ``checkify.JaxRuntimeError``, a
``ValueError``, from ``err.throw()``. Called eagerly (no jit), :func:`image_checks`
raises at once; under ``jit`` it needs ``checkify.checkify`` around the jitted
function (JAX refuses otherwise). The library never calls it itself, so unchecked
code pays nothing.

Example (a REMIX defense that reports a bad batch even under jit)::

    import jax
    from jax.experimental import checkify
    import remix_jax

    def safe_defend(params, key, x):
        remix_jax.image_checks(x, channels=1)
        return remix_jax.defend(params, key, x)

    err, y = jax.jit(checkify.checkify(safe_defend))(params, key, x)
    err.throw()  # "x must be finite (no NaN or inf)" or "x must lie in [0.0, 1.0], got ..."

or, the same with the wrapper::

    err, y = jax.jit(remix_jax.checked(remix_jax.defend, argnum=2, channels=1))(params, key, x)
    err.throw()
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.experimental import checkify

from remix_jax._checks import check_image_shape


def image_checks(
    x: jax.Array,
    *,
    channels: int | None = None,
    low: float = 0.0,
    high: float = 1.0,
    name: str = "x",
) -> None:
    """Checks a batch of NHWC images inside a function that ``checkify.checkify`` wraps.

    Rank 4, a float dtype and ``channels`` are checked at trace time (they raise at
    once); finiteness and the range [low, high] become ``checkify`` checks, which
    report through the ``err`` that the checkified function returns (see the module
    docstring), with the batch's actual minimum and maximum.

    Args:
      x: (B, H, W, C) float images, concrete or traced; B may be 0.
      channels: the expected C, or None for any.
      low: the smallest value allowed.
      high: the largest value allowed.
      name: the argument's name in the messages.

    Raises:
      TypeError / ValueError: at trace time, for a non-array, a non-float dtype, a rank
        other than 4 or another channel count.
    """
    check_image_shape(name, x, channels=channels)
    values = jnp.asarray(x, jnp.float32)
    checkify.check(jnp.all(jnp.isfinite(values)), f"{name} must be finite (no NaN or inf)")
    # initial= keeps min/max defined on an empty batch, which then passes
    smallest, largest = jnp.min(values, initial=jnp.inf), jnp.max(values, initial=-jnp.inf)
    checkify.check(
        (smallest >= low) & (largest <= high),
        f"{name} must lie in [{low}, {high}], got values in [{{lo}}, {{hi}}]",
        lo=smallest,
        hi=largest,
    )


def checked(
    fn: Callable,
    *,
    argnum: int = 0,
    channels: int | None = None,
    low: float = 0.0,
    high: float = 1.0,
) -> Callable:
    """``fn`` with :func:`image_checks` on its positional argument ``argnum``, checkified.

    The result returns ``(err, fn(...))``, where ``err.throw()`` raises
    ``checkify.JaxRuntimeError`` (a ``ValueError``) naming the failed check, or does
    nothing. It can be jitted (``jax.jit(checked(fn))``); keyword arguments are then
    traced too, so bind those that must stay Python values (``defend``'s ``iterations``
    or ``chunk``) with ``functools.partial`` before wrapping.

    Args:
      fn: the function to guard, e.g. :func:`remix_jax.defend` (``argnum=2``).
      argnum: the position of the images among ``fn``'s positional arguments.
      channels: as :func:`image_checks`.
      low: as :func:`image_checks`.
      high: as :func:`image_checks`.

    Returns:
      ``guarded(*args, **kwargs) -> (checkify.Error, fn(*args, **kwargs))``.
    """

    @functools.wraps(fn)
    def guarded(*args, **kwargs):
        if len(args) <= argnum:
            raise TypeError(
                f"checked({getattr(fn, '__name__', fn)!s}) needs the images as positional "
                f"argument {argnum}, got {len(args)} positional argument(s)"
            )
        image_checks(args[argnum], channels=channels, low=low, high=high)
        return fn(*args, **kwargs)

    return checkify.checkify(guarded)
