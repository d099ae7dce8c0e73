"""Image classifiers protected by the defenses. All return logits (B, num_classes)."""

from __future__ import annotations

import flax.linen as nn
import jax

from remix_jax.models.layers import max_pool_2x2


def as_variables(weights) -> dict:
    """A classifier's stored weights as the Flax variables ``model.apply`` takes.

    Stateless classifiers (MNIST) store their bare params; networks with BatchNorm
    store the whole variables dict ``{"params": ..., "batch_stats": ...}``.
    """
    return weights if "params" in weights else {"params": weights}


class MNISTClassifier(nn.Module):
    """MagNet's / Carlini's MNIST network.

    conv32-conv32-pool-conv64-conv64-pool-fc200-fc200-fc10, 3x3 VALID convolutions,
    ReLU, dropout 0.5 after the first dense layer (as in Carlini's
    ``train_models.py``, which MagNet's MNIST classifier follows).
    """

    dropout_rate: float = 0.5
    num_classes: int = 10

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Classifies (B, 28, 28, 1) images in [0, 1]; returns (B, num_classes) logits."""
        for width in (32, 32):
            x = nn.relu(nn.Conv(width, (3, 3), padding="VALID")(x))
        x = max_pool_2x2(x)
        for width in (64, 64):
            x = nn.relu(nn.Conv(width, (3, 3), padding="VALID")(x))
        x = max_pool_2x2(x)
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(200)(x))
        x = nn.Dropout(self.dropout_rate, deterministic=not train)(x)
        x = nn.relu(nn.Dense(200)(x))
        return nn.Dense(self.num_classes)(x)


class CIFARResNet(nn.Module):
    """A ResNet-9-style CIFAR-10 network (Page's DAWNBench design), narrow for CPUs.

    prep conv(w) -> [conv(2w), pool, residual 2x conv(2w)] -> [conv(4w), pool]
    -> [conv(8w), pool, residual 2x conv(8w)] -> global max-pool -> dense 10, logits
    scaled by 1/8. Every conv is 3x3 SAME + BatchNorm + ReLU. Few layers at low
    resolution make it cheap per image, which every attack iteration pays for.

    Attributes:
      width: channels of the first conv. Page used 64; the shipped CIFAR-10 model
        uses 16 (90% test accuracy after 24 epochs, 23 min on 2 CPU cores); widths
        24 and 32 cost 1.9x and 2.8x as much per attack gradient
        (``python -m bench.cifar_widths``, results/bench/cifar_widths_cpu.json).
    """

    width: int = 16
    logit_scale: float = 0.125
    num_classes: int = 10
    # 2x2 max-pools after the prep conv, before the main layers. components.classifier
    # sets remix_jax.datasets.halvings of the dataset's images (0 up to 64 px, so
    # CIFAR-10's network is the one above; 2 at 224 px), which keeps the cost per image
    # near a 64 px one's; checkpoints record the number (those from before it: 0)
    stem_pools: int = 0

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Classifies (B, H, W, C) images in [0, 1] (CIFAR-10: 32x32x3); returns
        (B, num_classes) logits."""

        def conv_bn(x, features):
            x = nn.Conv(features, (3, 3), padding="SAME", use_bias=False)(x)
            x = nn.BatchNorm(use_running_average=not train, momentum=0.9)(x)
            return nn.relu(x)

        w = self.width
        x = conv_bn(x, w)
        for _ in range(self.stem_pools):
            x = max_pool_2x2(x)
        x = max_pool_2x2(conv_bn(x, 2 * w))
        x = x + conv_bn(conv_bn(x, 2 * w), 2 * w)
        x = max_pool_2x2(conv_bn(x, 4 * w))
        x = max_pool_2x2(conv_bn(x, 8 * w))
        x = x + conv_bn(conv_bn(x, 8 * w), 8 * w)
        x = x.max(axis=(1, 2))
        return nn.Dense(self.num_classes)(x) * self.logit_scale
