"""APE-GAN's purifier and discriminator (Shen et al. 2017), as in its official code.

Facts from shenqixiaojiang/APE-GAN@3ae5027 (``model.py``, ``ops.py``; see
docs/notes/gan_baselines.md). Every convolution is 5x5, stride 2, SAME, initialised
from N(0, 0.02); BatchNorm with momentum 0.9 and eps 1e-5.

    G: conv 64 - BN - LReLU(0.2) | conv 128 - BN - LReLU | convT 64 - BN - ReLU | convT C
       (28 -> 14 -> 7 -> 14 -> 28 on MNIST; 32 -> 16 -> 8 -> 16 -> 32 on CIFAR-10)
    D: conv 64 - LReLU | conv 128 - BN - LReLU | conv 256 - BN - LReLU | linear -> 1 logit

Deviations, each for a reason: the generator takes and returns images in [0, 1] (it
maps them to the official [-1, 1] and its tanh output back), and at test time its
BatchNorm uses the running statistics (the official sampler normalises with the test
batch's own statistics, so an image's output would depend on its batch-mates; a
deterministic defense cannot).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

_INIT = nn.initializers.normal(0.02)


def _norm(train: bool) -> nn.BatchNorm:
    # Flax's momentum is the running average's decay, as TF's (0.9 in the official code)
    return nn.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5)


def _conv(features: int) -> nn.Conv:
    return nn.Conv(features, (5, 5), strides=(2, 2), padding="SAME", kernel_init=_INIT)


def _deconv(features: int) -> nn.ConvTranspose:
    return nn.ConvTranspose(features, (5, 5), strides=(2, 2), padding="SAME", kernel_init=_INIT)


class APEGenerator(nn.Module):
    """The purifier G: (B, H, W, C) images in [0, 1] -> purified images in [0, 1].

    H and W must divide by 4 (two stride-2 convolutions down, two up).

    Attributes:
      channels: image channels C.
      width: features of the first convolution (64 officially; the second has 2x).
    """

    channels: int
    width: int = 64

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        h = 2.0 * x - 1.0  # the official code works on [-1, 1]
        h = nn.leaky_relu(_norm(train)(_conv(self.width)(h)), 0.2)
        h = nn.leaky_relu(_norm(train)(_conv(2 * self.width)(h)), 0.2)
        h = nn.relu(_norm(train)(_deconv(self.width)(h)))
        h = jnp.tanh(_deconv(self.channels)(h))
        return (h + 1.0) / 2.0


class APEDiscriminator(nn.Module):
    """D: (B, H, W, C) images in [0, 1] -> (B,) logits of "clean"."""

    width: int = 64

    @nn.compact
    def __call__(self, x: jax.Array, train: bool = False) -> jax.Array:
        h = 2.0 * x - 1.0
        h = nn.leaky_relu(_conv(self.width)(h), 0.2)
        h = nn.leaky_relu(_norm(train)(_conv(2 * self.width)(h)), 0.2)
        h = nn.leaky_relu(_norm(train)(_conv(4 * self.width)(h)), 0.2)
        return nn.Dense(1, kernel_init=_INIT)(h.reshape(h.shape[0], -1))[:, 0]
