"""APE-GAN (Shen et al. 2017): a purifier trained adversarially to undo FGSM.

A generator G learns to map FGSM examples of the bare classifier back to their clean
images; at test time every input, clean or adversarial, goes through G, then the
unchanged classifier. Training alternates, per batch, one discriminator step (clean
images real, G's outputs fake) and two generator steps on ``content_weight * RMSE(G(x'),
x) + adversarial_weight * BCE(D(G(x')), real)`` (the official code's two G steps and
RMSE; the paper's weights 0.7 / 0.3, which the official code later changed to 0.9 /
0.02). Adam 2e-4, beta1 0.5, batch 64. FGSM of a frozen classifier is deterministic, so
the examples are made on the fly per batch (equal to the official precomputed set).
The defense is deterministic: no key.

Architecture and deviations: :mod:`remix_jax.models.apegan`; sources:
docs/notes/gan_baselines.md.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from remix_jax._checks import check_images, check_real
from remix_jax.models.apegan import APEDiscriminator, APEGenerator
from remix_jax.training import Task

LogitsFn = Callable[[jax.Array], jax.Array]
# the paper's loss weights (content, adversarial)
PAPER_WEIGHTS = (0.7, 0.3)


def fgsm(logits_fn: LogitsFn, x: jax.Array, labels: jax.Array, epsilon: float) -> jax.Array:
    """One signed-gradient L-inf step of size ``epsilon`` up the cross-entropy, clipped to
    [0, 1] (Goodfellow et al. 2015): APE-GAN's training inputs.

    Args:
      logits_fn: the bare classifier, ``(B, H, W, C) -> (B, K)``.
      x: (B, H, W, C) images in [0, 1].
      labels: (B,) int true labels.
      epsilon: the step (L-inf budget).

    Returns:
      (B, H, W, C) adversarial images in [0, 1].
    """

    def loss(z):
        return optax.softmax_cross_entropy_with_integer_labels(logits_fn(z), labels).sum()

    return jnp.clip(x + epsilon * jnp.sign(jax.grad(loss)(x)), 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class APEGANConfig:
    """What an APE-GAN is: its image channels and width, and how it was trained.

    Attributes:
      channels: image channels C.
      width: the generator's and discriminator's first width (64 officially).
      epsilon: FGSM's step on the training images.
      content_weight, adversarial_weight: the generator's loss weights.
    """

    channels: int
    width: int = 64
    epsilon: float = 0.1
    content_weight: float = PAPER_WEIGHTS[0]
    adversarial_weight: float = PAPER_WEIGHTS[1]

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, fields: dict) -> APEGANConfig:
        """The config a checkpoint's meta.json "config" entry records (other keys ignored)."""
        return cls(**{f.name: fields[f.name] for f in dataclasses.fields(cls) if f.name in fields})


def init_params(key: jax.Array, config: APEGANConfig, image_shape: tuple[int, int, int]) -> dict:
    """Fresh ``{"generator": variables, "discriminator": variables}`` for (H, W, C) images."""
    return _initializer(config, tuple(image_shape))(key)


@functools.lru_cache(maxsize=16)
def _initializer(config: APEGANConfig, image_shape: tuple[int, int, int]) -> Callable:
    # jitted (an eager init compiles each layer's ops one by one) and built once per
    # architecture, so that resuming or loading compiles nothing again
    def init(key):
        g_key, d_key = jax.random.split(key)
        dummy = jnp.zeros((1, *image_shape), jnp.float32)
        generator = APEGenerator(config.channels, config.width).init(g_key, dummy)
        discriminator = APEDiscriminator(config.width).init(d_key, dummy)
        return {"generator": dict(generator), "discriminator": dict(discriminator)}

    return jax.jit(init)


def _bce(logits: jax.Array, real: bool) -> jax.Array:
    target = jnp.ones_like(logits) if real else jnp.zeros_like(logits)
    return optax.sigmoid_binary_cross_entropy(logits, target).mean()


def apegan_task(
    config: APEGANConfig, image_shape: tuple[int, int, int], logits_fn: LogitsFn
) -> Task:
    """APE-GAN's training as a :class:`~remix_jax.training.Task` with its own step.

    Params are ``{"generator": variables, "discriminator": variables}`` (each Flax's
    ``{"params", "batch_stats"}``); the optimizer state holds one state per network.

    Args:
      config: :class:`APEGANConfig`.
      image_shape: (H, W, C), H and W divisible by 4.
      logits_fn: the frozen bare classifier FGSM attacks (images in [0, 1]).

    Returns:
      A task whose validation metrics are the purified FGSM examples' RMSE to the clean
      images (``rmse``) and the classifier's accuracy on them (``accuracy_purified``)
      and on purified clean images (``accuracy_clean_purified``).
    """
    generator = APEGenerator(config.channels, config.width)
    discriminator = APEDiscriminator(config.width)

    def init(key):
        return init_params(key, config, image_shape)

    def run(module, variables, x):  # train mode: batch statistics, updated running ones
        out, state = module.apply(variables, x, train=True, mutable=["batch_stats"])
        return out, {**variables, **state}

    def custom_step(optimizer):
        def init_state(params):
            return {name: optimizer.init(params[name]["params"]) for name in params}

        def update(name, params, opt_state, grads, state):
            with jax.numpy_dtype_promotion("standard"):  # optax's bias correction
                updates, new_opt = optimizer.update(grads, opt_state[name], params[name]["params"])
            trained = optax.apply_updates(params[name]["params"], updates)
            return {**params, name: {**state, "params": trained}}, {**opt_state, name: new_opt}

        def step(params, opt_state, key, images, labels):
            del key  # FGSM and the networks are deterministic
            x = images.astype(jnp.float32) / 255.0
            x_adv = jax.lax.stop_gradient(fgsm(logits_fn, x, labels, config.epsilon))
            fake, _ = run(generator, params["generator"], x_adv)
            fake = jax.lax.stop_gradient(fake)

            def d_loss(d_params):
                d_vars = {**params["discriminator"], "params": d_params}
                real_logits, d_vars = run(discriminator, d_vars, x)
                fake_logits, d_vars = run(discriminator, d_vars, fake)
                return _bce(real_logits, True) + _bce(fake_logits, False), d_vars

            (loss_d, d_state), grads = jax.value_and_grad(d_loss, has_aux=True)(
                params["discriminator"]["params"]
            )
            params, opt_state = update("discriminator", params, opt_state, grads, d_state)

            def g_loss(g_params):
                out, g_vars = run(generator, {**params["generator"], "params": g_params}, x_adv)
                logits, _ = run(discriminator, params["discriminator"], out)
                content = jnp.sqrt(jnp.mean((out - x) ** 2))
                loss = config.content_weight * content + config.adversarial_weight * _bce(
                    logits, True
                )
                return loss, (g_vars, content)

            for _ in range(2):  # two generator steps per discriminator step, as the official code
                (loss_g, (g_state, content)), grads = jax.value_and_grad(g_loss, has_aux=True)(
                    params["generator"]["params"]
                )
                params, opt_state = update("generator", params, opt_state, grads, g_state)
            return params, opt_state, {"loss": loss_g, "loss_d": loss_d, "rmse": content}

        return init_state, step

    def evaluate(params, images, labels):
        x = images.astype(jnp.float32) / 255.0
        x_adv = fgsm(logits_fn, x, labels, config.epsilon)
        purified = generator.apply(params["generator"], x_adv)
        rmse = jnp.sqrt(jnp.mean((purified - x) ** 2, axis=(1, 2, 3)))
        right = jnp.argmax(logits_fn(purified), -1) == labels
        clean_right = jnp.argmax(logits_fn(generator.apply(params["generator"], x)), -1) == labels
        return {
            "rmse": rmse.sum(),
            "accuracy_purified": right.sum(),
            "accuracy_clean_purified": clean_right.sum(),
        }

    return Task(init, None, evaluate, stateful=False, custom_step=custom_step)


@dataclasses.dataclass(frozen=True)
class APEGANParams:
    """A trained APE-GAN purifier: its config and the generator's variables."""

    config: APEGANConfig
    generator: Any


def purifier(params: APEGANParams) -> Callable[[jax.Array], jax.Array]:
    """G as a function of (B, H, W, C) images in [0, 1] (unchecked, jittable and
    differentiable: the adaptive attack takes its exact gradient). Deterministic and per
    image: BatchNorm uses its running statistics."""
    module = APEGenerator(params.config.channels, params.config.width)
    return lambda x: module.apply(params.generator, jnp.asarray(x, jnp.float32))


def purify(params: APEGANParams, x: jax.Array) -> jax.Array:
    """G(x): (B, H, W, C) images in [0, 1] -> purified images in [0, 1] (see
    :func:`purifier`).

    Raises:
      TypeError / ValueError: for images that are not (B, H, W, C) floats in [0, 1]
        with the generator's channels, or whose height or width does not divide by 4.
    """
    check_images("x", x, channels=params.config.channels)
    if x.shape[1] % 4 or x.shape[2] % 4:
        raise ValueError(f"x's height and width must divide by 4, got shape {tuple(x.shape)}")
    return _purify(params.config, params.generator, x)


@functools.partial(jax.jit, static_argnums=0)
def _purify(config: APEGANConfig, generator: Any, x: jax.Array) -> jax.Array:
    return purifier(APEGANParams(config, generator))(x)


def check_config(config: APEGANConfig) -> None:
    """Raises ValueError for a config no APE-GAN can have."""
    check_real("epsilon", config.epsilon, above=0.0)
    check_real("content_weight", config.content_weight, low=0.0)
    check_real("adversarial_weight", config.adversarial_weight, low=0.0)
