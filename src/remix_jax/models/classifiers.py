"""Image classifiers protected by the defenses. All return logits (B, 10)."""

from __future__ import annotations

import flax.linen as nn
import jax

from remix_jax.models.layers import max_pool_2x2


class MNISTClassifier(nn.Module):
    """MagNet's / Carlini's MNIST network.

    conv32-conv32-pool-conv64-conv64-pool-fc200-fc200-fc10, 3x3 VALID convolutions,
    ReLU, dropout 0.5 after the first dense layer (as in Carlini's
    ``train_models.py``, which MagNet's MNIST classifier follows).
    """

    dropout_rate: float = 0.5

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
        """Classifies (B, 28, 28, 1) images in [0, 1]; returns (B, 10) logits."""
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
        return nn.Dense(10)(x)
