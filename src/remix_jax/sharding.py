"""Data parallelism over all devices: one 1-D mesh, batch sharded, params replicated.

Training, the attacks and :func:`remix_jax.defend` are plain jitted functions; putting
their batch arguments on :func:`batch_sharding` and their parameters on
:func:`replicated` is all it takes for XLA to split the work over GPUs, TPUs or CPU
host devices (``runtime.configure(host_devices=N)``). PRNG draws do not depend on the
sharding (``jax_threefry_partitionable``), so results match the single-device ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

BATCH_AXIS = "batch"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named ``"batch"`` over ``devices`` (default: all devices)."""
    devices = list(jax.devices() if devices is None else devices)
    return Mesh(np.array(devices), (BATCH_AXIS,))


def batch_sharding(mesh: Mesh | None = None) -> NamedSharding:
    """Shards the leading (batch) axis over the mesh."""
    return NamedSharding(mesh or make_mesh(), P(BATCH_AXIS))


def replicated(mesh: Mesh | None = None) -> NamedSharding:
    """A full copy on every device of the mesh."""
    return NamedSharding(mesh or make_mesh(), P())


def shard_batch(tree: Any, mesh: Mesh | None = None) -> Any:
    """Places every array of ``tree`` with its leading axis split over the mesh.

    Raises:
      ValueError: a leading axis is not divisible by the number of devices.
    """
    mesh = mesh or make_mesh()
    n = mesh.devices.size

    def put(a):
        if a.shape[0] % n:
            raise ValueError(
                f"batch size {a.shape[0]} is not divisible by the {n} devices; "
                "pad the batch (remix_jax.sharding.pad_batch)"
            )
        return jax.device_put(a, batch_sharding(mesh))

    return jax.tree.map(put, tree)


def replicate(tree: Any, mesh: Mesh | None = None) -> Any:
    """Copies every array of ``tree`` (parameters, optimizer state) to every device."""
    return jax.device_put(tree, replicated(mesh or make_mesh()))


def pad_batch(x: np.ndarray, multiple: int) -> tuple[np.ndarray, int]:
    """Pads the leading axis to a multiple by repeating the last row.

    Returns:
      (padded array, original size); drop the rows past the size from the outputs.
    """
    size = x.shape[0]
    extra = -size % multiple
    if extra:
        x = np.concatenate([x, np.repeat(x[-1:], extra, axis=0)])
    return x, size


def place_batch(x, mesh: Mesh | None = None) -> tuple[Any, int]:
    """A batch as the evaluation hands it to a jitted function: split over the devices
    when there are several (padded to a multiple of their number by repeating its last
    row), left as it is on one device.

    Args:
      x: (B, ...) array.
      mesh: default: all devices.

    Returns:
      (the placed batch, B); the outputs' rows past B belong to the padding.
    """
    n = (mesh.devices.size if mesh is not None else jax.device_count()) if len(x) else 1
    if n == 1:
        return x, len(x)
    padded, size = pad_batch(np.asarray(x), n)
    return shard_batch(padded, mesh), size


def map_batches(fn: Callable, arrays: Sequence, batch_size: int, mesh: Mesh | None = None):
    """``fn`` over the batches of ``arrays`` (sliced alike along their leading axis),
    each batch placed as :func:`place_batch` places it (split over the devices when
    there are several, padded), its outputs trimmed to the batch's own rows.

    Args:
      fn: ``fn(*batches) -> pytree`` of arrays whose leading axis is the batch's.
      arrays: (N, ...) arrays; typed PRNG key arrays too (placed as their key data).
      batch_size: rows per call.
      mesh: default: all devices.

    Returns:
      One pytree of (B_i, ...) numpy arrays per batch, in order.
    """
    outputs = []
    for start in range(0, len(arrays[0]), batch_size):
        placed = [_place_rows(a[start : start + batch_size], mesh) for a in arrays]
        size = placed[0][1]
        out = fn(*(batch for batch, _ in placed))
        outputs.append(jax.tree.map(lambda o, size=size: np.asarray(o)[:size], out))
    return outputs


def _place_rows(a, mesh: Mesh | None) -> tuple[Any, int]:
    """:func:`place_batch` for numbers and for typed PRNG keys (which numpy cannot
    hold: their key data is placed, then wrapped again)."""
    if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
        data, size = place_batch(jax.random.key_data(a), mesh)
        return jax.random.wrap_key_data(data, impl=jax.random.key_impl(a)), size
    return place_batch(a, mesh)


def split_if_divisible(tree: Any, mesh: Mesh | None = None) -> Any:
    """``tree``'s arrays split over the devices when there are several and every leading
    axis divides by their number; as they are otherwise (an attack's batch: padding it
    would add examples to a search whose early abort watches the whole batch)."""
    n = mesh.devices.size if mesh is not None else jax.device_count()
    if n == 1 or any(a.shape[0] % n for a in jax.tree.leaves(tree)):
        return tree
    return shard_batch(tree, mesh)
