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

The generator is trained as a WGAN-GP (Gulrajani et al. 2017; :func:`wgan_gp_task`):
each training step updates the critic once on a real batch, and every
``critic_steps``-th step then updates the generator once (the official 5 critic
iterations per generator iteration, each on its own real batch), Adam 1e-4 with betas
(0.5, 0.9), penalty weight 10. The gradient penalty uses each image's whole gradient
norm (gan_cifar.py); the official MNIST code sums over one axis only (a per-column
norm), a bug we do not copy.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from remix_jax._checks import check_images, check_int, check_key, check_real
from remix_jax.models.defensegan import DGCritic, DGGenerator, check_size
from remix_jax.training import Task

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
    return _project(
        _Plain(generator), None, key, jnp.asarray(x, jnp.float32), latent, projection, start
    )


@dataclasses.dataclass(frozen=True)
class _Plain:
    """A generator function as ``G(variables, z)`` (its variables are inside it)."""

    fn: GeneratorFn

    def __call__(self, variables, z):
        return self.fn(z)


@dataclasses.dataclass(frozen=True)
class _Module:
    """A Flax generator as ``G(variables, z)``, in eval mode: equal for equal modules,
    so that the projection compiles once per architecture, its weights traced."""

    module: Any

    def __call__(self, variables, z):
        return self.module.apply(variables, z)


@functools.partial(jax.jit, static_argnums=(0, 4, 5))
def _project(apply, variables, key, x, latent, projection, start=0):
    def generator(z):
        return apply(variables, z)

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
        projected, _ = _project(_Plain(generator), None, key, x, latent, projection)
        return x + jax.lax.stop_gradient(projected - x)

    return fn


def generator_fn(module: Any, variables: Any) -> GeneratorFn:
    """A Flax generator with its variables as ``G(z)``, in eval mode (BatchNorm with
    running statistics, so that a projected image does not depend on its batch)."""
    return lambda z: module.apply(variables, z)


@dataclasses.dataclass(frozen=True)
class DefenseGANConfig:
    """What a Defense-GAN generator is and how it was trained (the official values).

    Attributes:
      channels: image channels C.
      size: image height and width (28 or 32).
      latent: the size of z (128).
      width: d, the generator's last hidden and the critic's first features (64).
      batch_norm: BatchNorm in the generator (gan_cifar.py, for 3 channels; the
        official MNIST generator has none).
      critic_steps: critic updates per generator update (5).
      penalty: the gradient penalty's weight (10).
    """

    channels: int
    size: int = 28
    latent: int = 128
    width: int = 64
    batch_norm: bool = False
    critic_steps: int = 5
    penalty: float = 10.0

    @classmethod
    def for_images(cls, image_shape: tuple[int, int, int], **fields) -> DefenseGANConfig:
        """The official set-up for (H, W, C) images: BatchNorm for colour images."""
        h, w, c = image_shape
        if h != w:
            raise ValueError(f"the Defense-GAN generator makes square images, got {h}x{w}")
        return cls(channels=c, size=h, **{"batch_norm": c == 3, **fields})

    def check(self) -> None:
        """Raises ValueError for a config no Defense-GAN can have."""
        check_size(self.size)
        for name in ("channels", "latent", "width", "critic_steps"):
            check_int(name, getattr(self, name), low=1)
        check_real("penalty", self.penalty, low=0.0)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, fields: dict) -> DefenseGANConfig:
        """The config a checkpoint's meta.json "config" entry records (other keys ignored)."""
        return cls(**{f.name: fields[f.name] for f in dataclasses.fields(cls) if f.name in fields})

    def generator(self) -> DGGenerator:
        return DGGenerator(self.channels, self.size, self.width, self.batch_norm)


def init_params(key: jax.Array, config: DefenseGANConfig) -> dict:
    """Fresh ``{"generator": variables, "critic": variables}`` (Flax variable dicts)."""
    return _initializer(config)(key)


@functools.lru_cache(maxsize=16)
def _initializer(config: DefenseGANConfig) -> Callable:
    # jitted (an eager init compiles each layer's ops one by one) and built once per
    # architecture, so that resuming or loading compiles nothing again
    def init(key):
        g_key, c_key = jax.random.split(key)
        z = jnp.zeros((1, config.latent), jnp.float32)
        x = jnp.zeros((1, config.size, config.size, config.channels), jnp.float32)
        generator = config.generator().init(g_key, z)
        critic = DGCritic(config.width).init(c_key, x)
        return {"generator": dict(generator), "critic": dict(critic)}

    return jax.jit(init)


def gradient_penalty(critic: Callable[[jax.Array], jax.Array], real, fake, key) -> jax.Array:
    """WGAN-GP's penalty: mean over images of (||grad critic(x_hat)||_2 - 1)^2, x_hat a
    uniform random point between each real image and its fake (the norm over the whole
    image, as gan_cifar.py).

    Args:
      critic: ``(B, H, W, C) -> (B,)`` scores.
      real: (B, H, W, C) training images.
      fake: (B, H, W, C) generated images.
      key: PRNG key of the interpolation weights.

    Returns:
      The scalar penalty.
    """
    alpha = jax.random.uniform(key, (real.shape[0], 1, 1, 1))
    x_hat = real + alpha * (fake - real)
    grads = jax.grad(lambda v: critic(v).sum())(x_hat)  # image i's score depends on x_hat[i]
    norms = jnp.sqrt(jnp.sum(grads**2, axis=(1, 2, 3)) + 1e-12)
    return jnp.mean((norms - 1.0) ** 2)


def wgan_gp_task(config: DefenseGANConfig) -> Task:
    """Defense-GAN's generator training (WGAN-GP) as a :class:`~remix_jax.training.Task`
    with its own step: one critic update per step on the step's real batch, then one
    generator update on every ``config.critic_steps``-th step.

    Params are ``{"generator": variables, "critic": variables}``; the optimizer state
    holds one state per network and the count of critic updates.

    Returns:
      A task whose training metrics are the critic's ``loss`` (-W + penalty), the
      Wasserstein estimate ``wasserstein`` and the ``penalty``; its validation metric
      ``wasserstein`` is mean critic(x) - mean critic(G(z)) on the validation images
      (z from a fixed key; G with its running statistics, as the projection uses it).
    """
    config.check()
    generator, critic_module = config.generator(), DGCritic(config.width)

    def init(key):
        return init_params(key, config)

    def custom_step(optimizer):
        def init_state(params):
            states = {name: optimizer.init(params[name]["params"]) for name in params}
            return {**states, "count": jnp.zeros((), jnp.int32)}

        def update(name, params, opt_state, grads, state):
            with jax.numpy_dtype_promotion("standard"):  # optax's bias correction
                updates, new_opt = optimizer.update(grads, opt_state[name], params[name]["params"])
            trained = optax.apply_updates(params[name]["params"], updates)
            return {**params, name: {**state, "params": trained}}, {**opt_state, name: new_opt}

        def generate(g_params, params, z):  # train mode: batch statistics (as tflib's BN)
            variables = {**params["generator"], "params": g_params}
            if not config.batch_norm:
                return generator.apply(variables, z), params["generator"]
            out, state = generator.apply(variables, z, train=True, mutable=["batch_stats"])
            return out, {**variables, **state}

        def critic_update(params, opt_state, z_key, alpha_key, images):
            x = images.astype(jnp.float32) / 255.0
            z = jax.random.normal(z_key, (x.shape[0], config.latent))
            fake, _ = generate(params["generator"]["params"], params, z)
            fake = jax.lax.stop_gradient(fake)

            def critic_loss(c_params):
                def critic(v):
                    return critic_module.apply({"params": c_params}, v)

                wasserstein = critic(x).mean() - critic(fake).mean()
                penalty = gradient_penalty(critic, x, fake, alpha_key)
                return -wasserstein + config.penalty * penalty, (wasserstein, penalty)

            (loss, (wasserstein, penalty)), grads = jax.value_and_grad(critic_loss, has_aux=True)(
                params["critic"]["params"]
            )
            params, opt_state = update("critic", params, opt_state, grads, params["critic"])
            opt_state = {**opt_state, "count": opt_state["count"] + 1}
            return params, opt_state, {"loss": loss, "wasserstein": wasserstein, "penalty": penalty}

        def generator_update(params, opt_state, key, batch_size):
            z = jax.random.normal(key, (batch_size, config.latent))

            def generator_loss(g_params):
                out, state = generate(g_params, params, z)
                return -critic_module.apply(params["critic"], out).mean(), state

            (_, state), grads = jax.value_and_grad(generator_loss, has_aux=True)(
                params["generator"]["params"]
            )
            return update("generator", params, opt_state, grads, state)

        critic_update = jax.jit(critic_update, donate_argnums=(0, 1))
        generator_update = jax.jit(generator_update, donate_argnums=(0, 1), static_argnums=3)

        def step(params, opt_state, key, images, labels):
            # chosen on the host, not with lax.cond: XLA's CPU backend ran the step with
            # the conditional 2.5x slower than one that always did both updates
            del labels
            z_key, alpha_key, g_key = jax.random.split(key, 3)
            params, opt_state, metrics = critic_update(params, opt_state, z_key, alpha_key, images)
            if int(opt_state["count"]) % config.critic_steps == 0:
                params, opt_state = generator_update(params, opt_state, g_key, images.shape[0])
            return params, opt_state, metrics

        return init_state, step

    def evaluate(params, images, labels):
        del labels
        x = images.astype(jnp.float32) / 255.0
        z = jax.random.normal(jax.random.key(0), (x.shape[0], config.latent))
        fake = generator.apply(params["generator"], z)
        scores = critic_module.apply(params["critic"], x) - critic_module.apply(
            params["critic"], fake
        )
        return {"wasserstein": scores.sum()}

    return Task(init, None, evaluate, stateful=False, custom_step=custom_step, host_step=True)


@dataclasses.dataclass(frozen=True)
class DefenseGAN:
    """A trained Defense-GAN: the generator's config and variables, and how inputs are
    projected onto its range."""

    config: DefenseGANConfig
    generator: Any
    projection: Projection = Projection()

    def generator_fn(self) -> GeneratorFn:
        """G(z) in eval mode (see :func:`generator_fn`)."""
        return generator_fn(self.config.generator(), self.generator)


def reconstruct(
    defense: DefenseGAN, key: jax.Array, x: np.ndarray, batch_size: int = 100
) -> np.ndarray:
    """G(z*) for each image, in batches (image i's starts from ``fold_in(key, i)``: the
    result does not depend on ``batch_size``).

    Args:
      defense: :class:`DefenseGAN`.
      key: PRNG key of the projection's starts.
      x: (N, H, W, C) images in [0, 1].
      batch_size: images per projection call (each makes ``restarts`` copies).

    Returns:
      (N, H, W, C) float32 projected images in [0, 1].
    """
    check_key("key", key)
    c = defense.config
    check_images("x", x, channels=c.channels)
    if tuple(x.shape[1:3]) != (c.size, c.size):
        raise ValueError(f"x must be {c.size}x{c.size} images, got shape {tuple(x.shape)}")
    batch_size = check_int("batch_size", batch_size, low=1)
    defense.projection.check()
    apply, projection = _Module(c.generator()), defense.projection
    out = []
    for start in range(0, len(x), batch_size):
        batch = jnp.asarray(x[start : start + batch_size], jnp.float32)
        projected, _ = _project(apply, defense.generator, key, batch, c.latent, projection, start)
        out.append(np.asarray(projected))
    return np.concatenate(out) if out else np.zeros_like(np.asarray(x, np.float32))
