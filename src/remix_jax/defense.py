"""REMIX: reform, randomly mask, inpaint (Chen, Chen and Yu; Sec. III, Fig. 1).

    x_0   = reformer(x)                       (optional)
    x_k+1 = sum_i inpainter(m_i(k) * x_k) * (1 - m_i(k)),   k = 0..K-1  (Eq. 2)

with n fresh random complementary masks m_1(k)..m_n(k) at every iteration (see
:mod:`remix_jax.masking`). Each pixel of the output comes from the one inpainted
copy in which that pixel was hidden, so the inpainter must restore it from its
neighbours rather than copy it, which is what breaks the structure of a small
adversarial perturbation.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import struct

from remix_jax._checks import (
    check_image_shape,
    check_images,
    check_int,
    check_key,
    check_keys,
    is_typed_key,
)
from remix_jax.masking import num_positions, random_masks
from remix_jax.models.autoencoder import AutoencoderConfig, autoencoder_module

InpaintFn = Callable[[jax.Array, jax.Array], jax.Array]


@struct.dataclass
class RemixParams:
    """Everything :func:`defend` needs: weights as pytree leaves, architecture as static fields.

    Attributes:
      inpainter: Flax params of the inpainter (the module of ``inpainter_config``).
      reformer: Flax params of the reformer, or None for mask-inpaint only.
      inpainter_config: the inpainter's architecture.
      reformer_config: the reformer's architecture (None without a reformer).
      n_masks: number of complementary masks n (paper: 2 on MNIST, 3 on CIFAR-10).
      iterations: default number K of mask-inpaint rounds (paper: 1).
      per_channel: partition the H*W*C elements instead of the H*W pixels.
    """

    inpainter: Any
    reformer: Any = None
    inpainter_config: AutoencoderConfig = struct.field(
        pytree_node=False, default=AutoencoderConfig()
    )
    reformer_config: AutoencoderConfig | None = struct.field(pytree_node=False, default=None)
    n_masks: int = struct.field(pytree_node=False, default=2)
    iterations: int = struct.field(pytree_node=False, default=1)
    per_channel: bool = struct.field(pytree_node=False, default=False)

    def without_reformer(self) -> RemixParams:
        """The same defense with the reformer removed (mask-inpaint only)."""
        return self.replace(reformer=None, reformer_config=None)


def autoencoder_fn(config: AutoencoderConfig, params: Any) -> InpaintFn:
    """Wraps autoencoder weights as ``fn(images, mask) -> images``.

    The mask (1 = visible) is passed to the network only if its config asks for it.
    """
    model = autoencoder_module(config)
    # inputs of another float dtype (float16, bfloat16) are cast to the weights' dtype:
    # Flax would otherwise promote them implicitly, which strict promotion forbids
    dtype = jax.tree_util.tree_leaves(params)[0].dtype

    def apply(images: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        # shapes are static: checked under jit too, before Flax's cryptic kernel error
        if images.ndim != 4 or images.shape[-1] != config.channels:
            raise ValueError(
                f"images must have shape (B, H, W, {config.channels}) for this "
                f"{config.channels}-channel network, got {tuple(images.shape)}"
            )
        mask = mask.astype(dtype) if config.mask_channel else None
        return model.apply({"params": params}, images.astype(dtype), mask)

    return apply


def mask_inpaint(
    inpaint_fn: InpaintFn,
    key: jax.Array,
    x: jax.Array,
    n: int,
    *,
    per_channel: bool = False,
) -> jax.Array:
    """One mask-inpaint round (Eq. 2): x_hat = sum_i inpaint(m_i * x, m_i) * (1 - m_i).

    :func:`inpaint_copies` then :func:`combine_copies`.

    Args:
      inpaint_fn: ``fn(masked_images (B, H, W, C), masks (B, H, W, 1|C)) -> (B, H, W, C)``.
      key: PRNG key; each image gets its own independent masks.
      x: (B, H, W, C) images.
      n: number of complementary masks.
      per_channel: partition elements instead of pixels.

    Returns:
      (B, H, W, C) combined inpainted images, in the inpainter's dtype (float32).

    Raises:
      TypeError / ValueError: for a key that is not a typed PRNG key, images that are
        not (B, H, W, C) floats in [0, 1] without NaN (values checked outside jit),
        n outside [2, positions], or an ``inpaint_fn`` whose output is not the shape
        of its input.
    """
    check_key("key", key)
    check_images("x", x)
    n = check_int("n", n, low=2, high=num_positions(x.shape[1:], per_channel))
    keys = jax.random.split(key, x.shape[0])
    return _mask_inpaint_each(inpaint_fn, keys, x, n, per_channel)


def inpaint_copies(
    inpaint_fn: InpaintFn, keys: jax.Array, x: jax.Array, n: int, per_channel: bool = False
) -> tuple[jax.Array, jax.Array]:
    """The n masked copies of each image and what the inpainter makes of them.

    The one mask-inpaint primitive: :func:`mask_inpaint`, :func:`defend`, the
    detector's copies and the visualisation all call it. Image i's masks depend on
    ``keys[i]`` alone, so any chunking of the batch draws the same masks. The n
    copies go through the inpainter in one ``jax.vmap`` call, which XLA folds into a
    single batch of n*B images.

    Args:
      inpaint_fn: ``fn(masked (B, H, W, C), masks (B, H, W, 1|C)) -> (B, H, W, C)``.
      keys: (B,) PRNG keys, one per image.
      x: (B, H, W, C) images.
      n: number of complementary masks.
      per_channel: partition the H*W*C elements instead of the H*W pixels.

    Returns:
      restored (n, B, H, W, C), the inpainter's output on copy i, and masks
      (n, B, H, W, 1|C), 0 on the positions copy i hid.

    Raises:
      TypeError / ValueError: for ``keys`` that are not (B,) typed PRNG keys, ``x``
        that is not a (B, H, W, C) float array, n outside [1, positions], or an
        ``inpaint_fn`` whose output is not the shape of its input (checked on shapes
        only: free under ``jit``).
    """
    check_image_shape("x", x)
    check_keys("keys", keys, x.shape[0])
    n = check_int("n", n, low=1, high=num_positions(x.shape[1:], per_channel))
    x = jnp.asarray(x)  # numpy float64 becomes float32 quietly, not with astype's warning
    masks = jax.vmap(lambda k: random_masks(k, x.shape[1:], n, per_channel=per_channel))(keys)
    masks = jnp.moveaxis(masks, 1, 0).astype(x.dtype)  # (n, B, H, W, 1|C)
    restored = jax.vmap(inpaint_fn)(masks * x[None], masks)
    # another shape would broadcast against the masks in combine_copies into a wrong image
    if restored.shape != (n, *x.shape):
        raise ValueError(
            f"inpaint_fn must return images of the shape of its input {x.shape}, "
            f"got shape {restored.shape[1:]}"
        )
    return restored, masks


def combine_copies(restored: jax.Array, masks: jax.Array) -> jax.Array:
    """Eq. 2's combination: each pixel from the copy that hid it, (n, B, ...) -> (B, ...).

    Args:
      restored: (n, B, H, W, C) inpainted copies, as from :func:`inpaint_copies`.
      masks: (n, B, H, W, 1|C) their complementary masks (0 = hidden).

    Returns:
      (B, H, W, C) in the dtype of ``restored``.

    Raises:
      ValueError: for shapes that do not pair up (checked on shapes: free under jit);
        NumPy broadcasting would otherwise combine them into a wrong image.
    """
    shape, mask_shape = getattr(restored, "shape", None), getattr(masks, "shape", None)
    if shape is None or len(shape) != 5:
        raise ValueError(f"restored must have shape (n, B, H, W, C), got {shape}")
    if mask_shape is None or tuple(mask_shape) not in ((*shape[:-1], 1), tuple(shape)):
        raise ValueError(f"masks must have shape {(*shape[:-1], '1|C')}, got {mask_shape}")
    return jnp.sum(restored * (1 - masks.astype(restored.dtype)), axis=0)


def _mask_inpaint_each(inpaint_fn, keys, x, n, per_channel):
    """:func:`mask_inpaint` with one key per image, keys (B,)."""
    return combine_copies(*inpaint_copies(inpaint_fn, keys, x, n, per_channel))


# Images per pass through the networks on CPU. A batch of 1000 MNIST images makes
# 100 MB activations per layer; chunks of 32 keep them in the caches: the shipped
# MNIST defense went from 2.02 s to 1.74 s per 1000 images, 59% -> 68% of the matmul
# ceiling, on the 2-core EPYC (python -m bench.speed --part defend). Accelerators
# want the whole batch.
CPU_CHUNK = 32


# Most mask-inpaint rounds that defend() unrolls on CPU; more run in a lax.scan, whose
# program size does not grow with K (an unrolled K = 50 took 53 s to compile).
MAX_UNROLLED_ROUNDS = 8
# Most rounds defend() accepts: the paper uses K <= 3, and 1000 rounds already cost
# ~2.5 s per MNIST image on a CPU; a larger K is a typo that would run for hours.
MAX_ROUNDS = 1000
ROUND_LOOPS = ("auto", "unroll", "scan")

# Components whose backward pass ``defend(..., bpda=...)`` can replace by the identity.
BPDA_COMPONENTS = ("reformer", "mask-inpaint")


def straight_through(fn: Callable[[jax.Array], jax.Array]) -> Callable[[jax.Array], jax.Array]:
    """``fn`` forward, identity backward: BPDA (Athalye et al. 2018) for a y ~ x transform.

    ``x + stop_gradient(fn(x) - x)`` equals ``fn(x)`` and its derivative w.r.t. x is I.
    """
    return lambda x: x + jax.lax.stop_gradient(fn(x) - x)


@functools.partial(jax.jit, static_argnums=(3, 4, 5, 6))
def _defend(
    params: RemixParams,
    key: jax.Array,
    x: jax.Array,
    iterations: int,
    chunk: int | None,
    bpda: frozenset[str] = frozenset(),
    unroll: bool = True,
) -> jax.Array:
    reform = (
        None if params.reformer is None else autoencoder_fn(params.reformer_config, params.reformer)
    )
    if reform is not None and "reformer" in bpda:
        reform = straight_through(reform)
    inpaint = autoencoder_fn(params.inpainter_config, params.inpainter)
    # (K, B, ...) keys: round k splits fold_in(key, k) over the batch, as
    # mask_inpaint(fold_in(key, k), ...) does, so chunking keeps every image's masks;
    # with a key per image, image i's round k uses fold_in(key[i], k) instead
    if key.ndim == 0:
        keys = jax.vmap(lambda k: jax.random.split(jax.random.fold_in(key, k), x.shape[0]))(
            jnp.arange(iterations)
        )
    else:
        fold_each = jax.vmap(jax.random.fold_in, in_axes=(0, None))
        keys = jax.vmap(fold_each, in_axes=(None, 0))(key, jnp.arange(iterations))
    # moved around (sliced per round, chunked by lax.map) as raw key data and wrapped
    # where each round consumes them: slicing one typed key array several times reads
    # as reuse to jax_debug_key_reuse, though every slice holds other keys
    impl = jax.random.key_impl(key)
    key_data = jax.random.key_data(keys)  # (K, B, *impl shape) uint32

    def run(images, image_key_data):  # (b, H, W, C), (K, b, ...)
        if reform is not None:
            images = reform(images)

        def one_round(round_key_data, images):
            round_keys = jax.random.wrap_key_data(round_key_data, impl=impl)

            def restore(images):
                return _mask_inpaint_each(
                    inpaint, round_keys, images, params.n_masks, params.per_channel
                )

            # identity backward for the whole round: the inpainter alone would give a
            # zero gradient (each output pixel comes from the copy that hid it)
            return (straight_through(restore) if "mask-inpaint" in bpda else restore)(images)

        # K is static. Unrolled (small K on CPU), because XLA:CPU runs the backward
        # pass of convolutions inside a loop body ~11x slower (gradient of the
        # classifier through the MNIST defense, batch 100: 7.0 s in a fori_loop vs
        # 0.63 s unrolled; forward equal); a scan over the rounds' keys elsewhere,
        # whose program size does not grow with K
        if not unroll:
            return jax.lax.scan(
                lambda imgs, kd: (one_round(kd, imgs), None), images, image_key_data
            )[0]
        for k in range(iterations):
            images = one_round(image_key_data[k], images)
        return images

    if chunk is None or chunk >= x.shape[0]:
        return run(x, key_data)

    # per image, so that lax.map can batch the images in chunks (and a remainder)
    def one(args):
        image, image_key_data = args
        return run(image[None], image_key_data[:, None])[0]

    return jax.lax.map(one, (x, jnp.swapaxes(key_data, 0, 1)), batch_size=chunk)


def check_defense_inputs(params: RemixParams, x) -> None:
    """The checks of ``params`` and images that :func:`defend` and the detector share.

    Raises:
      TypeError / ValueError: for params that are not :class:`RemixParams`, images
        that are not (B, H, W, C) floats in [0, 1] with the inpainter's channels
        (values checked outside jit), a height or width that the networks' strides
        do not divide, or ``params.n_masks`` outside [2, positions].
    """
    if not isinstance(params, RemixParams):
        raise TypeError(f"params must be a RemixParams, got {type(params).__name__}")
    check_images("x", x, channels=params.inpainter_config.channels)
    for name, config in (
        ("inpainter", params.inpainter_config),
        ("reformer", params.reformer_config),
    ):
        # a stride-2 layer on an odd size comes back one pixel larger: a Flax shape error
        scale = math.prod(config.strides) if config is not None else 1
        if x.shape[1] % scale or x.shape[2] % scale:
            raise ValueError(
                f"x's height and width must divide by {scale}, the product of the "
                f"{name}'s strides {config.strides}, got shape {tuple(x.shape)}"
            )
    # one mask would hide every pixel: the output would be the inpainter's guess from nothing
    n = check_int("params.n_masks", params.n_masks, low=2)
    positions = num_positions(x.shape[1:], params.per_channel)
    if n > positions:
        raise ValueError(f"params.n_masks must be <= {positions} positions, got {n}")


def defend(
    params: RemixParams,
    key: jax.Array,
    x: jax.Array,
    *,
    iterations: int | None = None,
    chunk: int | str | None = "auto",
    bpda: tuple[str, ...] | frozenset[str] = (),
    loop: str = "auto",
) -> jax.Array:
    """REMIX: optional reformer, then K rounds of mask-inpaint with fresh masks.

    Jittable with ``params`` as an ordinary argument (its architecture is static);
    ``iterations`` and ``chunk`` must be Python values. The same key, input and chunk
    give bit-identical output; another chunk size draws the same masks, so its output
    is equal up to float rounding. Range and
    NaN checks of ``x`` run only on concrete (non-traced) input.

    Args:
      params: :class:`RemixParams` (e.g. from ``remix_jax.load_pretrained``).
      key: PRNG key (``jax.random.key(seed)``); round k uses ``fold_in(key, k)``,
        split over the batch. Or (B,) keys, one per image (``keys.image_keys``):
        image i's round k uses ``fold_in(key[i], k)``, whatever the batch it is in.
      x: (B, H, W, C) float images in [0, 1].
      iterations: number K of mask-inpaint rounds; None uses ``params.iterations``.
        K = 0 leaves only the reformer.
      chunk: images per pass through the networks (a ``lax.map`` over chunks; the
        same masks as one pass). "auto": :data:`CPU_CHUNK` on CPU, where it keeps
        activations in the caches, the whole batch elsewhere; None: the whole batch.
        To differentiate through ``defend`` on CPU use None: the backward pass of the
        chunked ``lax.map`` ran ~15x slower there (gradient of the MNIST classifier
        through the defense, batch 100: 8.6 s chunked vs 0.59 s in one pass).
      bpda: components whose backward pass is the identity (BPDA, for adaptive
        attacks; the forward pass is unchanged): any of "reformer" and
        "mask-inpaint" (each round as a whole).
      loop: how the K rounds run: "unroll" (one copy of the networks per round; the
        fast backward pass on CPU), "scan" (a ``lax.scan`` over the rounds: constant
        program size), or "auto": unrolled on CPU for K <= :data:`MAX_UNROLLED_ROUNDS`,
        a scan otherwise. Both give the same output up to float rounding.

    Returns:
      (B, H, W, C) defended images in [0, 1], in the networks' dtype (float32).

    Raises:
      TypeError / ValueError: see :func:`check_defense_inputs`; also for a key that is
        not a typed PRNG key or bad ``iterations``, ``chunk``, ``bpda`` or ``loop``.
    """
    if is_typed_key(key) and key.ndim == 1:  # one key per image
        check_defense_inputs(params, x)
        if key.shape != x.shape[:1]:
            raise ValueError(
                f"key must be a single key or ({x.shape[0]},) keys, one per image, got "
                f"shape {key.shape}"
            )
    else:
        check_key("key", key)
        check_defense_inputs(params, x)
    # the networks' dtype: other float dtypes (bfloat16, float16) are computed in it
    x = jnp.asarray(x, jnp.float32)
    k = params.iterations if iterations is None else iterations
    k = check_int("iterations", k, low=0, high=MAX_ROUNDS)
    if chunk == "auto":
        chunk = CPU_CHUNK if jax.default_backend() == "cpu" else None
    elif chunk is not None:
        chunk = check_int("chunk", chunk, low=1)
    unknown = set(bpda) - set(BPDA_COMPONENTS)
    if isinstance(bpda, str) or unknown:
        raise ValueError(f"bpda must be a collection of {BPDA_COMPONENTS}, got {bpda!r}")
    if loop not in ROUND_LOOPS:
        raise ValueError(f"loop must be one of {ROUND_LOOPS}, got {loop!r}")
    if loop == "auto":
        unroll = jax.default_backend() == "cpu" and k <= MAX_UNROLLED_ROUNDS
    else:
        unroll = loop == "unroll"
    return _defend(params, key, x, k, chunk, frozenset(bpda), unroll)
