"""Convolutional autoencoder with symmetric skip connections (RED-Net).

Mao, Shen and Yang, "Image Restoration Using Convolutional Auto-encoders with
Symmetric Skip Connections", NIPS 2016. REMIX uses the simplified form of it both as
the reformer (a denoiser) and as the inpainter (restores masked images).

Encoder: convolutions h_i = relu(conv_i(h_{i-1})), h_0 = input. Decoder: mirrored
transposed convolutions; every ``skip_every``-th mirrored pair is joined by an
additive skip, g_i = relu(deconv_i(g_{i+1}) + h_i), which passes image detail past
the bottleneck and eases training (the paper's two motivations). The last transposed
convolution maps back to the image's channels through a sigmoid, so outputs lie in
(0, 1).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp


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
    """

    channels: int = 1
    features: tuple[int, ...] = (32, 32, 32, 32)
    strides: tuple[int, ...] = (1, 1, 1, 1)
    skip_every: int = 1
    mask_channel: bool = False

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
        h = x
        if cfg.mask_channel:
            if mask is None:
                raise ValueError("this autoencoder takes the mask as input: pass mask=")
            # centred (+1 visible, -1 hidden): an all-positive extra channel made the
            # first Adam steps kill every ReLU (training stalled at the all-zero output)
            h = jnp.concatenate([x, 2 * mask.mean(axis=-1, keepdims=True) - 1], axis=-1)
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


def init_autoencoder(key: jax.Array, config: AutoencoderConfig, hw: tuple[int, int]) -> dict:
    """Initial parameters of a :class:`SkipAutoencoder` for (H, W) images."""
    x = jnp.zeros((1, *hw, config.channels), jnp.float32)
    mask = jnp.ones((1, *hw, 1), jnp.float32) if config.mask_channel else None
    return SkipAutoencoder(config).init(key, x, mask)["params"]
