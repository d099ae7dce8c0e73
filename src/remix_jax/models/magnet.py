"""MagNet's small denoising autoencoders (Meng and Chen, CCS 2017).

As in MagNet's official ``defensive_models.py``: an encoder of 3x3 SAME convolutions
and 2x2 pools, a decoder that mirrors it (convolutions and 2x upsampling), then a 3x3
convolution back to the image's channels through a sigmoid. Every convolution uses
the same activation (sigmoid in MagNet's MNIST and CIFAR-10 set-ups).

    AE-I  (MNIST)  [3, "average", 3]:  conv3 - avgpool - conv3 | conv3 - up - conv3 | conv1
    AE-II (MNIST)  [3]:                conv3 | conv3 | conv1
    CIFAR-10       [3]                 (Carlini's reconstruction of MagNet's CIFAR code)

Weights start from Glorot-uniform, Keras's default that MagNet's code inherits. (Our
first AE-I run, with Flax's LeCun-normal, sat on the predict-the-mean plateau, MSE
~0.098, for its first 6 epochs; but a controlled comparison, ``python -m
bench.magnet_init`` -> results/bench/magnet_init_cpu.json, shows both initialisers
leaving the plateau at about the same step with the same seed, so that stall was not
the initialiser's doing. The all-sigmoid nets just start slowly.)

Deviation: MagNet adds an L2 activity regulariser of strength 1e-9 to every layer;
at that strength it changes nothing measurable, so it is left out.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax

from remix_jax.models.layers import avg_pool_2x2, max_pool_2x2, upsample_2x

_POOLS = {"average": avg_pool_2x2, "max": max_pool_2x2}
_ACTIVATIONS = {"sigmoid": nn.sigmoid, "relu": nn.relu}
_INITIALIZERS = {
    "glorot_uniform": nn.initializers.glorot_uniform,
    "lecun_normal": nn.initializers.lecun_normal,
}


@dataclasses.dataclass(frozen=True)
class MagNetAEConfig:
    """Architecture of a :class:`MagNetAutoencoder` (hashable).

    Attributes:
      channels: image channels C.
      structure: encoder layers: an int is a 3x3 convolution of that width, "average"
        or "max" a 2x2 pool. The decoder mirrors it.
      activation: "sigmoid" (MagNet) or "relu".
      kernel_init: "glorot_uniform" (Keras's default, MagNet) or "lecun_normal"
        (Flax's default; see the module docstring).
    """

    channels: int = 1
    structure: tuple[int | str, ...] = (3, "average", 3)
    activation: str = "sigmoid"
    kernel_init: str = "glorot_uniform"

    def __post_init__(self):
        for layer in self.structure:
            if not (isinstance(layer, int) and layer > 0) and layer not in _POOLS:
                raise ValueError(
                    f"structure entries must be positive ints or one of {sorted(_POOLS)}, "
                    f"got {layer!r}"
                )
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}")
        if self.kernel_init not in _INITIALIZERS:
            raise ValueError(f"kernel_init must be one of {sorted(_INITIALIZERS)}")
        if self.channels < 1:
            raise ValueError(f"channels must be >= 1, got {self.channels}")

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "structure": list(self.structure)}

    @classmethod
    def from_dict(cls, d: dict) -> MagNetAEConfig:
        """Rebuilds a config from :meth:`to_dict` output (extra keys are ignored)."""
        return cls(
            channels=d["channels"],
            structure=tuple(d["structure"]),
            activation=d.get("activation", "sigmoid"),
            kernel_init=d.get("kernel_init", "glorot_uniform"),
        )


class MagNetAutoencoder(nn.Module):
    """MagNet's autoencoder. See the module docstring."""

    config: MagNetAEConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """Reconstructs (B, H, W, C) images in [0, 1]; returns (B, H, W, C) in (0, 1)."""
        act = _ACTIVATIONS[self.config.activation]

        def conv(width):
            return nn.Conv(width, (3, 3), kernel_init=_INITIALIZERS[self.config.kernel_init]())

        for layer in self.config.structure:
            x = act(conv(layer)(x)) if isinstance(layer, int) else _POOLS[layer](x)
        for layer in reversed(self.config.structure):
            x = act(conv(layer)(x)) if isinstance(layer, int) else upsample_2x(x)
        return nn.sigmoid(conv(self.config.channels)(x))
