"""Random partition masks (REMIX, Sec. III, "Random Mask Generator").

The pixel positions 1..|m| are randomly partitioned into n sets P_1..P_n and mask
m^i is 0 on P_i and 1 elsewhere. The sets are disjoint and cover every position, so
every pixel is hidden in exactly one of the n masked copies m^i * x.

A "position" is a pixel (H*W positions, one mask shared by all channels) by default.
The paper's wording ``|m| = |x|`` also admits reading a colour image's positions as
its H*W*C elements: ``per_channel=True`` does that.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from remix_jax._checks import check_int, check_key


def _mask_shape(shape: Sequence[int], per_channel: bool) -> tuple[int, int, int]:
    if (
        isinstance(shape, str)
        or not isinstance(shape, Sequence)
        or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in shape)
    ):
        raise TypeError(f"shape must be a tuple of ints (H, W) or (H, W, C), got {shape!r}")
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise ValueError(f"shape must be (H, W) or (H, W, C) with positive sizes, got {shape}")
    if per_channel:
        if len(shape) != 3:
            raise ValueError(f"per_channel=True needs shape (H, W, C), got {shape}")
        return shape
    return (shape[0], shape[1], 1)


def num_positions(image_shape: Sequence[int], per_channel: bool = False) -> int:
    """How many positions an (H, W, C) image's masks partition: H*W pixels, or H*W*C
    elements with ``per_channel``. n must lie in [2, this]."""
    h, w, c = image_shape
    return h * w * (c if per_channel else 1)


def partition_ids(key: jax.Array, num_positions: int, n: int) -> jax.Array:
    """Assigns each of ``num_positions`` positions to one of ``n`` random sets.

    A uniformly random permutation of the labels ``0, 1, ..., n-1, 0, 1, ...`` (one
    label per position), so set sizes differ by at most one and every position is
    equally likely to fall in every set.

    Args:
      key: PRNG key.
      num_positions: number of positions P.
      n: number of sets.

    Returns:
      (P,) int32 set index in [0, n).
    """
    labels = jnp.arange(num_positions, dtype=jnp.int32) % n
    return jax.random.permutation(key, labels)


def random_masks(
    key: jax.Array, shape: Sequence[int], n: int, *, per_channel: bool = False
) -> jax.Array:
    """Draws the n complementary masks of one image.

    Args:
      key: PRNG key (``jax.random.key(seed)``).
      shape: (H, W) or (H, W, C) of the image.
      n: number of masks, 1 <= n <= number of positions.
      per_channel: partition the H*W*C elements instead of the H*W pixels.

    Returns:
      (n, H, W, 1) float32 in {0, 1} (or (n, H, W, C) with ``per_channel``):
      ``masks[i]`` is 0 exactly on the positions of set i.
    """
    check_key("key", key)
    h, w, c = _mask_shape(shape, per_channel)
    n = check_int("n", n, low=1, high=h * w * c)
    ids = partition_ids(key, h * w * c, n).reshape(h, w, c)
    return (ids[None] != jnp.arange(n)[:, None, None, None]).astype(jnp.float32)


def batch_random_masks(
    key: jax.Array, batch: int, shape: Sequence[int], n: int, *, per_channel: bool = False
) -> jax.Array:
    """Draws independent masks for each of ``batch`` images.

    Returns:
      (batch, n, H, W, 1) float32 (or (batch, n, H, W, C) with ``per_channel``).
    """
    check_key("key", key)
    batch = check_int("batch", batch, low=0)
    keys = jax.random.split(key, batch)
    return jax.vmap(lambda k: random_masks(k, shape, n, per_channel=per_channel))(keys)
