"""Defense-GAN's generator and critic (Samangouei et al. 2018), as in its official code.

Facts from kabkabm/defensegan@7e3feae (``models/dataset_models.py``, MNIST) and, for
3-channel images, from the WGAN-GP code it builds on (igul222/improved_wgan_training,
``gan_cifar.py``); see docs/notes/gan_baselines.md. Every convolution is 5x5, stride 2,
SAME; the critic has no normalisation (WGAN-GP).

    G: z (latent) -> linear 4x4x4d - [BN] - ReLU | convT 2d - [BN] - ReLU (MNIST: cropped
       to 7x7) | convT d - [BN] - ReLU | convT C - sigmoid       (d = ``width``)
    critic: conv d - LReLU(0.2) | conv 2d - LReLU | conv 4d - LReLU | linear -> 1

The strided layers are :mod:`remix_jax.models.layers`' Conv / ConvTranspose: Flax's,
computed in forms that XLA's CPU backend runs 4.6-16x faster on these shapes, gradient
penalty included (bench/strided_convs.py).

The MNIST generator has no BatchNorm, the CIFAR-10 one has (``batch_norm``); the
output is in [0, 1] through a sigmoid (the official MNIST code; gan_cifar.py's tanh on
[-1, 1] is the same up to that affine map).
"""

from __future__ import annotations

import flax.linen as nn
import jax

from remix_jax.models import layers


class DGGenerator(nn.Module):
    """G: (B, latent) -> (B, H, W, C) images in [0, 1], H = W in {28, 32}.

    Attributes:
      channels: image channels C.
      size: image height and width (28: the 8x8 map is cropped to 7x7; 32: not).
      width: d, the last hidden layer's features.
      batch_norm: BatchNorm after the hidden layers (gan_cifar.py), or none (MNIST).
    """

    channels: int
    size: int = 28
    width: int = 64
    batch_norm: bool = False

    def _norm(self, h, train):
        if not self.batch_norm:
            return h
        return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)(h)

    @nn.compact
    def __call__(self, z: jax.Array, train: bool = False) -> jax.Array:
        d = self.width
        h = nn.Dense(4 * 4 * 4 * d)(z).reshape(z.shape[0], 4, 4, 4 * d)
        h = nn.relu(self._norm(h, train))
        h = layers.ConvTranspose(2 * d, (5, 5), strides=(2, 2), padding="SAME")(h)
        h = nn.relu(self._norm(h, train))
        if self.size == 28:
            h = h[:, :7, :7]  # the official MNIST generator's crop: 7 -> 14 -> 28
        h = layers.ConvTranspose(d, (5, 5), strides=(2, 2), padding="SAME")(h)
        h = nn.relu(self._norm(h, train))
        h = layers.ConvTranspose(self.channels, (5, 5), strides=(2, 2), padding="SAME")(h)
        return nn.sigmoid(h)


class DGCritic(nn.Module):
    """The WGAN-GP critic: (B, H, W, C) images in [0, 1] -> (B,) scores (no sigmoid)."""

    width: int = 64

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        h = x
        for features in (self.width, 2 * self.width, 4 * self.width):
            h = nn.leaky_relu(layers.Conv(features, (5, 5), strides=(2, 2), padding="SAME")(h), 0.2)
        return nn.Dense(1)(h.reshape(h.shape[0], -1))[:, 0]


def check_size(size: int) -> None:
    """Raises ValueError for an image size the generator cannot make."""
    if size not in (28, 32):
        raise ValueError(f"the Defense-GAN generator makes 28x28 or 32x32 images, got {size}")
