"""Input validation shared by the public functions.

Shape and dtype checks work on tracers too; value checks (range, NaN) need concrete
arrays and are skipped inside ``jax.jit``, where values are unknown at trace time.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np


def is_concrete(x) -> bool:
    """True if ``x`` holds values now (not a tracer inside jit/vmap/grad)."""
    return not isinstance(x, jax.core.Tracer)


def check_images(
    name: str,
    x,
    *,
    channels: int | None = None,
    hw: Sequence[int] | None = None,
    low: float = 0.0,
    high: float = 1.0,
) -> None:
    """Checks a batch of NHWC float images in [low, high] without NaN/inf.

    Raises:
      TypeError: for a non-array or a non-float dtype.
      ValueError: for a wrong rank, channel count, spatial size, range or NaN/inf.
    """
    check_image_shape(name, x, channels=channels, hw=hw)
    if is_concrete(x):
        values = np.asarray(x, np.float32)
        bad = np.argwhere(~np.isfinite(values))
        if len(bad):
            # where the first one sits: a single NaN pixel is otherwise hard to find
            raise ValueError(
                f"{name} must be finite (no NaN or inf), got {values[tuple(bad[0])]} at index "
                f"{tuple(int(i) for i in bad[0])} ({len(bad)} of {values.size} values)"
            )
        if values.size and (values.min() < low or values.max() > high):
            raise ValueError(
                f"{name} must lie in [{low}, {high}], got values in "
                f"[{values.min():.4g}, {values.max():.4g}]"
            )


def check_image_shape(name: str, x, *, channels=None, hw: Sequence[int] | None = None):
    """The static part of :func:`check_images` (rank, float dtype, channels, size).

    Free at run time even on concrete arrays, so it suits functions called in loops.
    """
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        raise TypeError(f"{name} must be an array of shape (B, H, W, C), got {type(x).__name__}")
    if x.ndim != 4:
        raise ValueError(f"{name} must have shape (B, H, W, C), got shape {tuple(x.shape)}")
    if not jax.numpy.issubdtype(x.dtype, jax.numpy.floating):  # bfloat16 too
        raise TypeError(
            f"{name} must be a float array, got dtype {x.dtype}"
            " (convert uint8 images with remix_jax.data.to_float)"
        )
    if channels is not None and x.shape[-1] != channels:
        raise ValueError(
            f"{name} must have {channels} channel(s) (NHWC), got shape {tuple(x.shape)}"
        )
    if hw is not None and tuple(x.shape[1:3]) != tuple(hw):
        raise ValueError(f"{name} must have spatial size {tuple(hw)}, got shape {tuple(x.shape)}")


def is_typed_key(key) -> bool:
    """Whether ``key`` is an array of typed PRNG keys (``jax.random.key``; tracers too)."""
    return isinstance(key, jax.Array) and jax.numpy.issubdtype(key.dtype, jax.dtypes.prng_key)


def check_key(name: str, key) -> None:
    """A typed PRNG key (``jax.random.key(seed)``), a single one (tracers too)."""
    if not is_typed_key(key):
        raise TypeError(
            f"{name} must be a typed PRNG key from jax.random.key(seed), got "
            f"{getattr(key, 'dtype', type(key).__name__)}"
        )
    if key.shape != ():
        raise ValueError(f"{name} must be a single key (shape ()), got shape {key.shape}")


def check_keys(name: str, keys, count: int) -> None:
    """``count`` typed PRNG keys in a (count,) array, one per image (tracers too)."""
    if not (isinstance(keys, jax.Array) and jax.numpy.issubdtype(keys.dtype, jax.dtypes.prng_key)):
        raise TypeError(
            f"{name} must be typed PRNG keys from jax.random.split(jax.random.key(seed), B), "
            f"got {getattr(keys, 'dtype', type(keys).__name__)}"
        )
    if keys.shape != (count,):
        raise ValueError(f"{name} must have shape ({count},), one key per image, got {keys.shape}")


def check_logits_shape(shape: Sequence[int], batch: int) -> int:
    """A classifier's output on ``batch`` images must be (batch, K >= 2); returns K.

    Checked on shapes only (free under jit). A (B,) output would otherwise broadcast
    into wrong answers or surface as an unrelated error (labels outside [0, 1)).
    """
    if len(shape) != 2 or shape[0] != batch or shape[1] < 2:
        raise ValueError(
            f"logits_fn must return logits of shape (B, num_classes >= 2), got shape "
            f"{tuple(shape)} on {batch} image(s)"
        )
    return int(shape[1])


def fold_counter(key, counter):
    """``fold_in(key, counter)`` for a key that is folded with many counters.

    Folding one key with distinct counters gives independent streams, the way the
    attacks and training derive a key per step; ``jax_debug_key_reuse`` would count
    each fold as a reuse of ``key``, so the fold takes a clone (the same bits).
    """
    return jax.random.fold_in(jax.random.clone(key), counter)


def check_int(name: str, value, *, low: int, high: int | None = None) -> int:
    """Checks that ``value`` is a Python int in [low, high] and returns it."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < low or (high is not None and value > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return int(value)


def check_real(name: str, value, *, low: float | None = None, above: float | None = None) -> None:
    """Checks a finite real number (Python, numpy or a 0-d array) >= low and > above.

    A traced scalar passes unchecked (its value is unknown at trace time); a string,
    None or a bool raises TypeError before any arithmetic, naming ``name``.
    """
    if isinstance(value, jax.core.Tracer):
        if value.ndim == 0 and _is_real_dtype(value.dtype):
            return
        raise TypeError(f"{name} must be a real scalar, got a traced array of {value.aval}")
    dtype = getattr(value, "dtype", None)
    if isinstance(value, bool) or not (
        isinstance(value, (int, float))
        or (dtype is not None and np.ndim(value) == 0 and _is_real_dtype(dtype))
    ):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__} {value!r:.40}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if above is not None and value <= above:
        raise ValueError(f"{name} must be > {above}, got {value}")


def _is_real_dtype(dtype) -> bool:
    """Integer or float (bfloat16 too), not bool or complex."""
    return bool(
        jax.numpy.issubdtype(dtype, jax.numpy.integer)
        or jax.numpy.issubdtype(dtype, jax.numpy.floating)
    )
