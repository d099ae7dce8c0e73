"""Small layers shared by the models."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max-pool with stride 2 (floor on odd sizes), written as reshape + max.

    Same values as ``flax.linen.max_pool(x, (2, 2), (2, 2))``, but its backward is
    a cheap elementwise mask instead of XLA's select-and-scatter, which is slow on
    CPU (it made the MNIST CW step 1.6x slower).

    Args:
      x: (B, H, W, C).

    Returns:
      (B, H // 2, W // 2, C).
    """
    b, h, w, c = x.shape
    x = x[:, : h - h % 2, : w - w % 2, :]
    return x.reshape(b, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def avg_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 average pool with stride 2, as reshape + mean. (B, H, W, C) -> (B, H/2, W/2, C)."""
    b, h, w, c = x.shape
    x = x[:, : h - h % 2, : w - w % 2, :]
    return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def upsample_2x(x: jax.Array) -> jax.Array:
    """Nearest-neighbour 2x upsampling. (B, H, W, C) -> (B, 2H, 2W, C)."""
    return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
