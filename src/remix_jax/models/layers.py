"""Small layers shared by the models."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


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


# ---------------------------------------------------------------------------------------
# Strided convolutions without XLA's slow CPU paths.
#
# XLA's CPU backend runs some convolutions with a dilated input (a transposed convolution
# with stride > 1, a strided convolution's input gradient) in a slow loop, depending on
# the shapes: on a 2-core AMD EPYC with jaxlib 0.10.2, Defense-GAN's generator (three
# 5x5 stride-2 transposed convolutions from 4x4x256) ran ~15x slower than rewritten as
# below, and WGAN-GP's double backward through its critic ~11x slower
# (bench/strided_convs.py). The transposed convolution becomes a stride-1 convolution of
# the undilated input (sub-pixel), the strided one a matrix product with its patches
# (im2col): derivatives of every order then run on XLA's fast paths. Same values up to
# float rounding; same parameters (names, shapes, initialisers), so checkpoints load
# either way. Only Defense-GAN's networks use them: on APE-GAN's generator (from 7x7x128)
# XLA's own path was the faster one when we measured, and the autoencoders' convolutions
# are stride 1.


def _transpose_pads(kernel: int, stride: int, padding) -> tuple[int, int]:
    """Before/after zero padding of the dilated input in ``jax.lax.conv_transpose``
    (its 'SAME' / 'VALID' rule, or explicit pads), for one spatial dimension."""
    if padding == "SAME":
        total = kernel + stride - 2
        before = kernel - 1 if stride > kernel - 1 else -(-total // 2)
    elif padding == "VALID":
        total = kernel + stride - 2 + max(kernel - stride, 0)
        before = kernel - 1
    else:
        before, after = padding
        return int(before), int(after)
    return before, total - before


def conv_transpose_subpixel(
    x: jax.Array,
    kernel: jax.Array,
    strides: tuple[int, int],
    pads: tuple[tuple[int, int], tuple[int, int]],
    precision=None,
) -> jax.Array:
    """``lax.conv_transpose(x, kernel, strides, pads)`` as one stride-1 convolution.

    The transposed convolution correlates the kernel with the input dilated by the
    stride (zeros between pixels) and padded by ``pads``. Output pixel ``s*m + r`` (phase
    r) only meets the kernel taps ``t`` with ``t = (pad_before - r) mod s`` (mod s), so
    each phase is a stride-1 correlation of the undilated input with a sub-kernel; the
    sub-kernels, aligned to a common offset and zero-filled, are stacked along the output
    features, and a depth-to-space interleaves the phases.

    Args:
      x: (B, H, W, C_in).
      kernel: (kh, kw, C_in, C_out), used unflipped (``transpose_kernel=False``).
      strides: (sh, sw).
      pads: ((before, after), ...) of the dilated input, per spatial dimension.
      precision: passed to the convolution.

    Returns:
      (B, H', W', C_out) with H' = (H - 1) * sh + 1 + before + after - kh + 1.
    """
    out_sizes, in_pads, taps, masks, lengths = [], [], [], [], []
    for n, k, s, (before, after) in zip(x.shape[1:3], kernel.shape[:2], strides, pads, strict=True):
        out = (n - 1) * s + 1 + before + after - k + 1
        first = [(before - r) % s for r in range(s)]  # phase r's first tap
        offset = [(r + t0 - before) // s for r, t0 in zip(range(s), first, strict=True)]
        count = [max(0, -(-(k - t0) // s)) for t0 in first]
        start = min(c for c, m in zip(offset, count, strict=True) if m) if any(count) else 0
        length = max([c + m - start for c, m in zip(offset, count, strict=True) if m] or [1])
        rows = -(-out // s)  # outputs per phase
        # tap index for (phase, position in the common window); -1 where none
        index = np.full((s, length), -1, np.int32)
        for r in range(s):
            for q in range(count[r]):
                index[r, offset[r] - start + q] = first[r] + s * q
        out_sizes.append(out)
        needed = rows - 1 + length  # input positions start .. start + needed - 1
        in_pads.append((-start, start + needed - n))
        taps.append(np.maximum(index, 0))
        masks.append(index >= 0)
        lengths.append(length)
    (sh, sw), (lh, lw) = strides, lengths
    # combined kernel (lh, lw, C_in, sh, sw, C_out) from the (sh, lh) x (sw, lw) tap maps
    k = kernel[taps[0].T[:, None, :, None], taps[1].T[None, :, None, :]]  # (lh, lw, sh, sw, ...)
    mask = masks[0].T[:, None, :, None] & masks[1].T[None, :, None, :]
    k = jnp.where(mask[..., None, None], k, 0.0)
    c_in, c_out = kernel.shape[2:]
    k = k.transpose(0, 1, 4, 2, 3, 5).reshape(lh, lw, c_in, sh * sw * c_out)
    x = _pad_or_crop(x, in_pads)
    y = jax.lax.conv_general_dilated(
        x, k, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=precision
    )
    b, mh, mw, _ = y.shape
    y = y.reshape(b, mh, mw, sh, sw, c_out).transpose(0, 1, 3, 2, 4, 5)
    return y.reshape(b, mh * sh, mw * sw, c_out)[:, : out_sizes[0], : out_sizes[1]]


def conv_patches(
    x: jax.Array,
    kernel: jax.Array,
    strides: tuple[int, int],
    pads: tuple[tuple[int, int], tuple[int, int]],
    precision=None,
) -> jax.Array:
    """A strided convolution ``lax.conv_general_dilated(x, kernel, strides, pads)`` as
    one matrix product with the input's patches (im2col).

    The patches are kh * kw strided slices of the padded input, so every derivative,
    the second ones of a gradient penalty included, is slicing, padding and matrix
    products, which XLA's CPU backend runs fast (its own strided convolution's double
    backward ran 7x slower on Defense-GAN's critic).

    Args:
      x: (B, H, W, C_in).
      kernel: (kh, kw, C_in, C_out).
      strides: (sh, sw).
      pads: ((before, after), ...) per spatial dimension.
      precision: passed to the matrix product.

    Returns:
      (B, H', W', C_out) with H' = (H + before + after - kh) // sh + 1.
    """
    kh, kw, c_in, c_out = kernel.shape
    (sh, sw) = strides
    x = _pad_or_crop(x, pads)
    oh, ow = (x.shape[1] - kh) // sh + 1, (x.shape[2] - kw) // sw + 1
    patches = jnp.concatenate(
        [
            x[:, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw]
            for i in range(kh)
            for j in range(kw)
        ],
        axis=-1,
    )  # (B, oh, ow, kh * kw * C_in), (i, j, c) order as the kernel's reshape
    return jnp.matmul(patches, kernel.reshape(kh * kw * c_in, c_out), precision=precision)


def _pad_or_crop(x: jax.Array, pads) -> jax.Array:
    """Zero-pads (positive) or crops (negative) each spatial side of (B, H, W, C)."""
    crop = tuple(
        slice(max(0, -lo), x.shape[i + 1] - max(0, -hi)) for i, (lo, hi) in enumerate(pads)
    )
    x = x[:, crop[0], crop[1]]
    return jnp.pad(x, ((0, 0), *((max(0, lo), max(0, hi)) for lo, hi in pads), (0, 0)))


def _as_pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def _plain_2d(module, inputs) -> bool:
    """Whether a Conv/ConvTranspose is a plain 2-D, strided, undilated, ungrouped one on
    a (B, H, W, C) batch: the case the rewrites above cover (others take Flax's path)."""
    if inputs.ndim != 4 or len(tuple(module.kernel_size)) != 2 or module.mask is not None:
        return False
    if _as_pair(module.strides or 1) == (1, 1) or _as_pair(module.kernel_dilation or 1) != (1, 1):
        return False
    padding = module.padding  # 'SAME', 'VALID' or ((lo, hi), (lo, hi)); not an int
    if isinstance(padding, str):
        return padding in ("SAME", "VALID")
    return isinstance(padding, (tuple, list)) and all(
        isinstance(p, (tuple, list)) and len(p) == 2 for p in padding
    )


def _rewritten(module, inputs, conv) -> jax.Array:
    """Creates a Conv/ConvTranspose's parameters exactly as Flax does (names, shapes,
    initialisers) and applies ``conv(inputs, kernel, strides, padding)`` plus the bias."""
    kernel_size = tuple(module.kernel_size)
    kernel = module.param(
        "kernel", module.kernel_init, kernel_size + (inputs.shape[-1], module.features),
        module.param_dtype,
    )  # fmt: skip
    bias = None
    if module.use_bias:
        bias = module.param("bias", module.bias_init, (module.features,), module.param_dtype)
    inputs, kernel, bias = module.promote_dtype(inputs, kernel, bias, dtype=module.dtype)
    y = conv(inputs, kernel, _as_pair(module.strides), module.padding)
    return y if bias is None else y + bias.reshape(1, 1, 1, -1)


class Conv(nn.Conv):
    """``flax.linen.Conv`` whose strided 2-D case runs as :func:`conv_patches`.

    Same parameters as ``nn.Conv`` (the class keeps its name, so Flax's automatic
    naming, ``Conv_0``, is unchanged and checkpoints load either way).
    """

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        plain = _plain_2d(self, inputs) and self.feature_group_count == 1
        if not plain or _as_pair(self.input_dilation or 1) != (1, 1):
            return super().__call__(inputs)

        def conv(x, kernel, strides, padding):
            if isinstance(padding, str):
                padding = jax.lax.padtype_to_pads(x.shape[1:3], kernel.shape[:2], strides, padding)
            return conv_patches(x, kernel, strides, tuple(map(tuple, padding)), self.precision)

        return _rewritten(self, inputs, conv)


class ConvTranspose(nn.ConvTranspose):
    """``flax.linen.ConvTranspose`` whose strided 2-D case runs as
    :func:`conv_transpose_subpixel`.

    Same parameters as ``nn.ConvTranspose`` (the class keeps its name, so Flax's
    automatic naming, ``ConvTranspose_0``, is unchanged and checkpoints load either way).
    """

    @nn.compact
    def __call__(self, inputs: jax.Array) -> jax.Array:
        if not _plain_2d(self, inputs) or self.transpose_kernel:
            return super().__call__(inputs)

        def conv(x, kernel, strides, padding):
            if isinstance(padding, str):
                padding = [
                    _transpose_pads(k, s, padding)
                    for k, s in zip(kernel.shape[:2], strides, strict=True)
                ]
            pads = tuple(map(tuple, padding))
            return conv_transpose_subpixel(x, kernel, strides, pads, self.precision)

        return _rewritten(self, inputs, conv)
