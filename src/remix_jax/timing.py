"""Wall time of JAX calls: a call timed with its result ready, and the machine's ceiling.

:func:`timed` blocks on every array of the result before it stops the clock (JAX
dispatches asynchronously, so the bare call returns before the work is done).
:func:`matmul_ceiling` is the FLOP rate of a large float32 matmul, the practical
ceiling a measured rate is compared with; on a shared CPU it moves with the load, so
benches time it next to what they compare with it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

MATMUL_SIZE = 2048  # the ceiling's square matmul, float32


def timed(fn: Callable, *args, **kwargs) -> tuple:
    """Calls ``fn(*args, **kwargs)`` and waits for its arrays.

    Returns:
      (the result, the call's wall seconds, result ready).
    """
    import jax

    start = time.perf_counter()
    out = fn(*args, **kwargs)
    jax.block_until_ready(out)
    return out, time.perf_counter() - start


def matmul_ceiling(repeats: int) -> float:
    """GFLOP/s of a jitted (2048, 2048) x (2048, 2048) float32 matmul: the median of
    ``repeats`` calls after one warm-up call (compilation)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    n = MATMUL_SIZE
    a = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    matmul = jax.jit(jnp.matmul)
    timed(matmul, a, a)
    seconds = float(np.median([timed(matmul, a, a)[1] for _ in range(repeats)]))
    return 2 * n**3 / seconds / 1e9
