"""Scoring classifiers behind defenses: batched accuracy, mean and spread over keys."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from remix_jax.defense import RemixParams, defend

LogitsFn = Callable[[jax.Array], jax.Array]


def predict(logits_fn: LogitsFn, x: np.ndarray, batch_size: int = 1000) -> np.ndarray:
    """Argmax predictions (N,) of ``logits_fn`` over (N, H, W, C) images, in batches."""
    fn = jax.jit(lambda xb: jnp.argmax(logits_fn(xb), axis=-1))
    return np.concatenate([np.asarray(fn(x[i:i + batch_size]))
                           for i in range(0, len(x), batch_size)])


def remix_predict(
    logits_fn: LogitsFn,
    params: RemixParams,
    key: jax.Array,
    x: np.ndarray,
    *,
    iterations: int | None = None,
    batch_size: int = 1000,
) -> np.ndarray:
    """Predictions (N,) on REMIX-defended images; batch b uses ``fold_in(key, b)``."""
    out = []
    for b, start in enumerate(range(0, len(x), batch_size)):
        defended = defend(params, jax.random.fold_in(key, b), x[start:start + batch_size],
                          iterations=iterations)
        out.append(predict(logits_fn, defended, batch_size))
    return np.concatenate(out)


def summarize(accuracies: list[float]) -> dict:
    """Mean, sample standard deviation, min and max of per-key accuracies (in %)."""
    a = np.asarray(accuracies, np.float64) * 100
    return {
        "mean": float(a.mean()),
        "std": float(a.std(ddof=1)) if len(a) > 1 else 0.0,
        "min": float(a.min()),
        "max": float(a.max()),
        "runs": len(a),
    }
