"""Convolutional autoencoder with symmetric skip connections (RED-Net).

Mao, Shen and Yang, "Image Restoration Using Convolutional Auto-encoders with
Symmetric Skip Connections", NIPS 2016. REMIX uses the simplified form of it both as
the reformer (a denoiser) and as the inpainter (restores masked images).

Two architectures share one config (:class:`AutoencoderConfig`, ``architecture``):
``"rednet"`` (below, the paper's) and ``"unet"`` (:class:`UNet`, Ronneberger et al.
2015: downsampling levels with concatenated skips), which sees a wider context per
pixel at less cost per image than a full-resolution RED-Net of the same width.
:func:`autoencoder_module` builds either from the config.

Encoder: convolutions h_i = relu(conv_i(h_{i-1})), h_0 = input. Decoder: mirrored
transposed convolutions; every ``skip_every``-th mirrored pair is joined by an
additive skip, g_i = relu(deconv_i(g_{i+1}) + h_i), which passes image detail past
the bottleneck and eases training (the paper's two motivations). The last transposed
convolution maps back to the image's channels through a sigmoid, so outputs lie in
(0, 1).
"""

from __future__ import annotations

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp

ARCHITECTURES = ("rednet", "unet")
FILLS = ("zero", "interpolate")


@dataclasses.dataclass(frozen=True)
class AutoencoderConfig:
    """Architecture of a :class:`SkipAutoencoder` (hashable: a static jit field).

    Attributes:
      channels: image channels C (1 for MNIST, 3 for CIFAR-10).
      features: encoder widths, one per convolution; the decoder mirrors them.
      strides: encoder strides (1 or 2), one per convolution; H and W must divide
        by their product.
      skip_every: an additive skip joins encoder output i and its mirrored decoder
        layer when i % skip_every == 0 (i = 1..len(features) - 1).
      mask_channel: the input carries the mask as an extra channel (inpainter).
      architecture: "rednet" (:class:`SkipAutoencoder`) or "unet" (:class:`UNet`; then
        ``features`` are the widths of its levels and ``strides`` the downsampling
        into each level: (1, 2, 2) = full, 1/2 and 1/4 resolution).
      fill: what hidden pixels look like to the network: "zero" (the masked image as
        it is) or "interpolate" (each hidden pixel replaced by the mean of its
        visible 3x3, else 5x5, neighbours: Noise2Self's interpolating masker). Needs
        the mask, so only with ``mask_channel``.
    """

    channels: int = 1
    features: tuple[int, ...] = (32, 32, 32, 32)
    strides: tuple[int, ...] = (1, 1, 1, 1)
    skip_every: int = 1
    mask_channel: bool = False
    architecture: str = "rednet"
    fill: str = "zero"

    def __post_init__(self):
        if len(self.features) != len(self.strides) or not self.features:
            raise ValueError(
                f"features and strides must be non-empty and of equal length, got "
                f"{self.features} and {self.strides}"
            )
        if any(s not in (1, 2) for s in self.strides):
            raise ValueError(f"strides must be 1 or 2, got {self.strides}")
        if self.channels < 1 or self.skip_every < 1 or min(self.features) < 1:
            raise ValueError(f"invalid autoencoder config {self}")
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                f"architecture must be one of {ARCHITECTURES}, got {self.architecture!r}"
            )
        if self.architecture == "unet" and self.strides[0] != 1:
            raise ValueError(
                f"a unet's first stride must be 1 (full resolution), got {self.strides}"
            )
        if self.fill not in FILLS:
            raise ValueError(f"fill must be one of {FILLS}, got {self.fill!r}")
        if self.fill != "zero" and not self.mask_channel:
            raise ValueError(f"fill={self.fill!r} needs the mask: set mask_channel=True")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> AutoencoderConfig:
        """Rebuilds a config from :meth:`to_dict` output (extra keys are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in names}
        return cls(**{**kwargs, "features": tuple(d["features"]), "strides": tuple(d["strides"])})


class SkipAutoencoder(nn.Module):
    """RED-Net style autoencoder. See the module docstring."""

    config: AutoencoderConfig

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        """Restores images.

        Args:
          x: (B, H, W, C) images in [0, 1] (masked images for the inpainter).
          mask: (B, H, W, 1) or (B, H, W, C) mask, 1 = visible; used only when
            ``config.mask_channel`` (one channel: its mean over channels).

        Returns:
          (B, H, W, C) float32 in (0, 1).
        """
        cfg = self.config
        h = network_input(cfg, x, mask)
        encoded = []
        for width, stride in zip(cfg.features, cfg.strides, strict=True):
            h = nn.relu(nn.Conv(width, (3, 3), strides=stride, padding="SAME")(h))
            encoded.append(h)
        depth = len(cfg.features)
        for i in reversed(range(1, depth)):
            h = nn.ConvTranspose(
                cfg.features[i - 1], (3, 3), strides=cfg.strides[i], padding="SAME"
            )(h)
            if i % cfg.skip_every == 0:
                h = h + encoded[i - 1]
            h = nn.relu(h)
        h = nn.ConvTranspose(cfg.channels, (3, 3), strides=cfg.strides[0], padding="SAME")(h)
        return nn.sigmoid(h)


def _window_sum(x: jax.Array, size: int) -> jax.Array:
    """Sum over each pixel's size x size neighbourhood (zero padding), (B, H, W, C)."""
    return jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, size, size, 1), (1, 1, 1, 1), "SAME")


def interpolate_hidden(x: jax.Array, mask: jax.Array) -> jax.Array:
    """Fills hidden pixels with the mean of their visible neighbours.

    The 3x3 neighbourhood where it has a visible pixel, else the 5x5, else the
    image's mean visible value. Visible pixels are unchanged.

    Args:
      x: (B, H, W, C) masked images (hidden pixels may hold anything).
      mask: (B, H, W, 1) or (B, H, W, C), 1 = visible.

    Returns:
      (B, H, W, C) images.
    """
    mask = jnp.broadcast_to(mask, x.shape).astype(x.dtype)
    visible = x * mask
    fill = jnp.sum(visible, axis=(1, 2), keepdims=True) / jnp.maximum(
        jnp.sum(mask, axis=(1, 2), keepdims=True), 1.0
    )
    for size in (5, 3):  # the smaller window wins wherever it sees a visible pixel
        count = _window_sum(mask, size)
        mean = _window_sum(visible, size) / jnp.maximum(count, 1.0)
        fill = jnp.where(count > 0, mean, fill)
    return visible + (1 - mask) * fill


def network_input(config: AutoencoderConfig, x: jax.Array, mask: jax.Array | None) -> jax.Array:
    """The tensor the first convolution sees: the (filled) image and the mask channel."""
    if not config.mask_channel:
        return x
    if mask is None:
        raise ValueError("this autoencoder takes the mask as input: pass mask=")
    if config.fill == "interpolate":
        x = interpolate_hidden(x, mask)
    # centred (+1 visible, -1 hidden): an all-positive extra channel made the
    # first Adam steps kill every ReLU (training stalled at the all-zero output)
    return jnp.concatenate([x, 2 * mask.mean(axis=-1, keepdims=True) - 1], axis=-1)


class UNet(nn.Module):
    """A U-Net (Ronneberger, Fischer and Brox 2015) for restoration.

    Level i has two 3x3 convolutions of width ``features[i]`` at the resolution
    divided by ``prod(strides[:i + 1])``; going down, a max-pool of size
    ``strides[i]``; going up, a 2x2 transposed convolution, concatenation with the
    level's encoder output, and two convolutions. A 1x1 convolution and a sigmoid
    map to the image's channels.
    """

    config: AutoencoderConfig

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        """Restores images: (B, H, W, C) in [0, 1] -> (B, H, W, C) float32 in (0, 1)."""
        cfg = self.config

        def block(h, width):
            for _ in range(2):
                h = nn.relu(nn.Conv(width, (3, 3), padding="SAME")(h))
            return h

        h = network_input(cfg, x, mask)
        encoded = []
        for width, stride in zip(cfg.features, cfg.strides, strict=True):
            if stride > 1:
                h = nn.max_pool(h, (stride, stride), strides=(stride, stride))
            h = block(h, width)
            encoded.append(h)
        for i in reversed(range(len(cfg.features) - 1)):
            stride = cfg.strides[i + 1]
            h = nn.ConvTranspose(cfg.features[i], (stride, stride), strides=(stride, stride))(h)
            h = block(jnp.concatenate([h, encoded[i]], axis=-1), cfg.features[i])
        return nn.sigmoid(nn.Conv(cfg.channels, (1, 1))(h))


def autoencoder_module(config: AutoencoderConfig) -> nn.Module:
    """The Flax module of a config's architecture: ``module(x, mask=None) -> x_hat``."""
    return UNet(config) if config.architecture == "unet" else SkipAutoencoder(config)


def init_autoencoder(key: jax.Array, config: AutoencoderConfig, hw: tuple[int, int]) -> dict:
    """Initial parameters of the config's autoencoder for (H, W) images."""
    return _init_autoencoder(key, config, tuple(hw))


# jitted: eager init compiles each layer's initializer separately (3-4x slower)
@functools.partial(jax.jit, static_argnums=(1, 2))
def _init_autoencoder(key: jax.Array, config: AutoencoderConfig, hw: tuple[int, int]) -> dict:
    x = jnp.zeros((1, *hw, config.channels), jnp.float32)
    mask = jnp.ones((1, *hw, 1), jnp.float32) if config.mask_channel else None
    return autoencoder_module(config).init(key, x, mask)["params"]
