"""Defense-GAN (Samangouei et al. 2018): classify the closest image a GAN can make.

The defense projects an input x onto the range of a generator G: from R random starts
z0 it runs L steps of gradient descent on ``mean((G(z) - x)^2)`` (per image), keeps
each image's start with the lowest final error and classifies G(z*). The official
MNIST settings (``experiments/cfgs/gans/mnist.yml``): L = 200, R = 10, learning rate
10 with TF's momentum 0.7, z0 ~ N(0, I / latent). (The official code builds an
exponential decay of the rate whose step counter is never advanced, so its rate stays
10 throughout; ``Projection.decay_at`` offers the 10x drop it seems to intend, off by
default. It also keeps the start whose error was lowest before the last update; this
keeps the one lowest after it.) It is randomized through the starts, so its key is
explicit. Sources and the reference's
deviations: docs/notes/gan_baselines.md.

This module holds the projection; the generator's training (WGAN-GP) is still to come
(issue 33).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from remix_jax._checks import check_images, check_int, check_key, check_real

# (B, latent) -> (B, H, W, C) images in [0, 1]
GeneratorFn = Callable[[jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class Projection:
    """How Defense-GAN projects onto the generator's range (the official MNIST values).

    Attributes:
      steps: L, gradient steps per start.
      restarts: R, random starts per image.
      learning_rate: the step of the momentum descent on z.
      momentum: its momentum, in TF's form (``a = momentum * a + grad; z -= rate * a``).
      decay_at: the fraction of the steps after which the rate drops 10x; None: never
        (what the official code does).
      init_std: the starts' standard deviation (the official sqrt(1 / latent) for
        latent 128 is 0.088; None: that rule for the generator's latent size).
    """

    steps: int = 200
    restarts: int = 10
    learning_rate: float = 10.0
    momentum: float = 0.7
    decay_at: float | None = None
    init_std: float | None = None

    def check(self) -> None:
        check_int("steps", self.steps, low=1)
        check_int("restarts", self.restarts, low=1)
        check_real("learning_rate", self.learning_rate, above=0.0)
        check_real("momentum", self.momentum, low=0.0)
        if self.decay_at is not None:
            check_real("decay_at", self.decay_at, low=0.0)
        if self.init_std is not None:
            check_real("init_std", self.init_std, above=0.0)


def project(
    generator: GeneratorFn,
    key: jax.Array,
    x: jax.Array,
    latent: int,
    projection: Projection = Projection(),
    start: int = 0,
) -> tuple[jax.Array, jax.Array]:
    """The generator's closest images to ``x``: G(z*) and their squared errors.

    Args:
      generator: ``G(z (B, latent)) -> (B, H, W, C)`` images in [0, 1]
        (differentiable; e.g. a trained generator in eval mode).
      key: PRNG key of the starts (``jax.random.key(seed)``); image i's starts come
        from ``fold_in(key, start + i)`` (as :func:`remix_jax.keys.image_keys`), so an
        image's projection does not depend on how the images are batched.
      x: (B, H, W, C) images in [0, 1].
      latent: the generator's latent size.
      projection: L, R and the descent (:class:`Projection`).
      start: the index of x's first image in the whole evaluation (for batches).

    Returns:
      (G(z*) (B, H, W, C), its per-image mean squared error to x (B,)).
    """
    check_key("key", key)
    check_images("x", x)
    latent = check_int("latent", latent, low=1)
    projection.check()
    start = check_int("start", start, low=0)
    return _project(generator, key, jnp.asarray(x, jnp.float32), latent, projection, start)


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _project(generator, key, x, latent, projection, start=0):
    b, r = x.shape[0], projection.restarts
    std = projection.init_std or (1.0 / latent) ** 0.5
    image_keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, start + jnp.arange(b))
    starts = jax.vmap(lambda k: jax.random.normal(k, (r, latent)))(image_keys)
    z = starts.reshape(b * r, latent) * std
    target = jnp.repeat(x, r, axis=0)  # (B*R, H, W, C): each start sees its image

    def errors(z):  # (B*R,) per-start mean squared error
        return jnp.mean((generator(z) - target) ** 2, axis=(1, 2, 3))

    grad = jax.grad(lambda z: errors(z).sum())
    steps = projection.steps
    decay_step = steps if projection.decay_at is None else math.ceil(projection.decay_at * steps)

    def step(t, carry):
        z, accumulated = carry
        rate = jnp.where(t < decay_step, projection.learning_rate, projection.learning_rate / 10)
        accumulated = projection.momentum * accumulated + grad(z)  # TF's MomentumOptimizer
        return z - rate * accumulated, accumulated

    z, _ = jax.lax.fori_loop(0, projection.steps, step, (z, jnp.zeros_like(z)))
    final = errors(z).reshape(b, r)
    best = jnp.argmin(final, axis=1)  # each image's best start
    z_best = z.reshape(b, r, latent)[jnp.arange(b), best]
    return generator(z_best), final[jnp.arange(b), best]


def straight_through_projection(
    generator: GeneratorFn, latent: int, projection: Projection = Projection()
) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """``fn(key, x) -> G(z*)`` forward, identity backward: BPDA through the projection
    (Athalye et al. 2018, who broke Defense-GAN this way, G(z*) ~ x)."""

    def fn(key: jax.Array, x: jax.Array) -> jax.Array:  # build fn once: it is jit-static
        projected, _ = _project(generator, key, x, latent, projection)
        return x + jax.lax.stop_gradient(projected - x)

    return fn


def generator_fn(module: Any, variables: Any) -> GeneratorFn:
    """A Flax generator with its variables as ``G(z)``, in eval mode (BatchNorm with
    running statistics, so that a projected image does not depend on its batch)."""
    return lambda z: module.apply(variables, z)
