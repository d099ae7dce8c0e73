"""Training objectives of the components, as :class:`remix_jax.training.Task` s.

All preprocessing happens on the device from the step's key: uint8 -> [0, 1],
Gaussian noise for the denoising reformer, fresh random masks for the inpainter,
flips and crops for CIFAR-10 augmentation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from remix_jax.defense import autoencoder_fn, mask_inpaint
from remix_jax.masking import batch_random_masks
from remix_jax.models.autoencoder import AutoencoderConfig, autoencoder_module
from remix_jax.models.classifiers import as_variables
from remix_jax.models.magnet import MagNetAEConfig, MagNetAutoencoder
from remix_jax.training import MODEL_STATE, Task, accuracy_sum


def to_unit(images: jax.Array) -> jax.Array:
    """uint8 (or float 0..255) images -> float32 in [0, 1]."""
    return images.astype(jnp.float32) / 255.0


def random_flip_crop(key: jax.Array, x: jax.Array, pad: int = 4) -> jax.Array:
    """Standard CIFAR augmentation: random horizontal flip, random crop after padding.

    Args:
      key: PRNG key.
      x: (B, H, W, C) float images.
      pad: reflect-padding on each side before the crop.
    """
    flip_key, crop_key = jax.random.split(key)
    b, h, w, _ = x.shape
    flip = jax.random.bernoulli(flip_key, 0.5, (b, 1, 1, 1))
    x = jnp.where(flip, x[:, :, ::-1], x)
    padded = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    offsets = jax.random.randint(crop_key, (b, 2), 0, 2 * pad + 1)

    def crop(image, offset):
        return jax.lax.dynamic_slice(image, (offset[0], offset[1], 0), (h, w, x.shape[-1]))

    return jax.vmap(crop)(padded, offsets)


def classifier_task(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    *,
    augment: bool = False,
    label_smoothing: float = 0.0,
    preprocess: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
    init_params: Any = None,
) -> Task:
    """Cross-entropy training of a classifier ``model(x, train=...) -> logits``.

    A model with BatchNorm gives a stateful task (see :class:`Task`): its weights
    are the whole variables dict, and training updates the running statistics.

    Args:
      model: the classifier module.
      input_shape: (H, W, C) of one image.
      augment: random flip + crop (:func:`random_flip_crop`).
      label_smoothing: optax's label smoothing of the targets.
      preprocess: ``fn(key, x) -> x`` applied to each (augmented) training batch with
        its own key, outside the gradient, e.g. REMIX (``defend``) to fine-tune the
        classifier on the defense's outputs; validation stays on the plain images.
      init_params: start from these weights (the task's format: what a checkpoint of
        this task restores) instead of a fresh initialisation.
    """
    dummy = jnp.zeros((1, *input_shape))
    state_collections = [
        c for c in jax.eval_shape(model.init, jax.random.key(0), dummy) if c != "params"
    ]
    stateful = bool(state_collections)
    # jitted: eager init of a ResNet compiles each of its ~100 ops separately. Built
    # once per task: ``model.init`` is a new bound method at each access, so jitting
    # it inside ``init`` would compile again at every run of the same task.
    jitted_init = jax.jit(model.init)

    def init(key):
        if init_params is not None:
            return init_params
        variables = jitted_init(key, dummy)
        return dict(variables) if stateful else variables["params"]

    def loss(params, key, images, labels):
        aug_key, dropout_key, preprocess_key = jax.random.split(key, 3)
        x = to_unit(images)
        if augment:
            x = random_flip_crop(aug_key, x)
        if preprocess is not None:
            x = jax.lax.stop_gradient(preprocess(preprocess_key, x))
        rngs = {"dropout": dropout_key}
        metrics = {}
        if stateful:
            logits, state = model.apply(params, x, train=True, rngs=rngs, mutable=state_collections)
            metrics[MODEL_STATE] = dict(state)
        else:
            logits = model.apply(as_variables(params), x, train=True, rngs=rngs)
        targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
        ce = optax.softmax_cross_entropy(logits, targets).mean()
        metrics["accuracy"] = accuracy_sum(logits, labels) / labels.shape[0]
        return ce, metrics

    def evaluate(params, images, labels):
        logits = model.apply(as_variables(params), to_unit(images))
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, labels)
        return {"accuracy": accuracy_sum(logits, labels), "loss": ce.sum()}

    return Task(init, loss, evaluate, stateful)


def _autoencoder_init(config: AutoencoderConfig, hw: tuple[int, int]):
    model = autoencoder_module(config)

    @jax.jit  # eager init compiles each layer's initializer separately
    def init(key):
        mask = jnp.ones((1, *hw, 1)) if config.mask_channel else None
        return model.init(key, jnp.zeros((1, *hw, config.channels)), mask)["params"]

    return model, init


def denoiser_task(config: AutoencoderConfig, hw: tuple[int, int], noise: float) -> Task:
    """The reformer: restore x from clip(x + noise * N(0, 1), 0, 1), mean squared error."""
    model, init = _autoencoder_init(config, hw)
    return _denoiser(lambda params, x: model.apply({"params": params}, x), init, noise)


def magnet_denoiser_task(config: MagNetAEConfig, hw: tuple[int, int], noise: float) -> Task:
    """A MagNet autoencoder, trained as in MagNet: noisy input, clean target, MSE."""
    model = MagNetAutoencoder(config)

    @jax.jit  # eager init compiles each layer's initializer separately
    def init(key):
        return model.init(key, jnp.zeros((1, *hw, config.channels)))["params"]

    return _denoiser(lambda params, x: model.apply({"params": params}, x), init, noise)


def _denoiser(apply, init, noise: float) -> Task:
    def corrupt(key, x):
        return jnp.clip(x + noise * jax.random.normal(key, x.shape), 0.0, 1.0)

    def loss(params, key, images, labels):
        del labels
        x = to_unit(images)
        mse = jnp.mean((apply(params, corrupt(key, x)) - x) ** 2)
        return mse, {}

    def evaluate(params, images, labels):
        del labels
        x = to_unit(images)
        # fixed noise so validation numbers are comparable across epochs
        noisy = corrupt(jax.random.key(0), x)
        err = jnp.mean((apply(params, noisy) - x) ** 2, axis=(1, 2, 3))
        clean_err = jnp.mean((apply(params, x) - x) ** 2, axis=(1, 2, 3))
        return {"mse_noisy": err.sum(), "mse_clean": clean_err.sum()}

    return Task(init, loss, evaluate)


def inpainter_task(
    config: AutoencoderConfig, hw: tuple[int, int], n_masks: int, *, per_channel: bool = False
) -> Task:
    """The inpainter: restore x from m * x, m one of n fresh complementary masks.

    The loss is the mean squared error on the hidden pixels, the only ones that
    REMIX takes from each inpainted copy (Eq. 2). By symmetry the first of the n
    masks is distributed like any of them, so one masked copy per image suffices.
    """
    model, init = _autoencoder_init(config, hw)

    def masked_error(params, key, x):
        b, h, w, c = x.shape
        m = batch_random_masks(key, b, (h, w, c), n_masks, per_channel=per_channel)[:, 0]
        out = model.apply({"params": params}, m * x, m if config.mask_channel else None)
        hidden = jnp.broadcast_to(1 - m, x.shape)
        per_image = jnp.sum((out - x) ** 2 * hidden, axis=(1, 2, 3)) / jnp.sum(hidden, (1, 2, 3))
        return per_image

    def loss(params, key, images, labels):
        del labels
        return masked_error(params, key, to_unit(images)).mean(), {}

    def evaluate(params, images, labels):
        del labels
        return {"mse_hidden": masked_error(params, jax.random.key(0), to_unit(images)).sum()}

    return Task(init, loss, evaluate)


def classifier_aware_inpainter_task(
    config: AutoencoderConfig,
    hw: tuple[int, int],
    n_masks: int,
    classify: Callable[[jax.Array], jax.Array],
    classifier_weight: float,
    *,
    per_channel: bool = False,
    init_params: Any = None,
    reform: Callable[[jax.Array], jax.Array] | None = None,
) -> Task:
    """The inpainter trained for a frozen classifier (Salman et al. 2020's "stability").

    Each image goes through one whole mask-inpaint round (:func:`mask_inpaint`, n
    fresh masks), and the loss is

        mean((x_hat - x)^2) + classifier_weight * CE(classify(x_hat), argmax classify(x))

    The first term is the hidden-pixel error of the MSE task: every pixel of x_hat
    comes from the copy that hid it. The second asks the combined output to keep the
    classifier's own decision on the clean image (its prediction, not the label, so
    the defense learns to preserve what the classifier sees rather than to correct
    it). The classifier is frozen: REMIX protects the given network.

    Args:
      config: as :func:`inpainter_task`.
      hw: as :func:`inpainter_task`.
      n_masks: as :func:`inpainter_task`.
      classify: ``classify(x (B, H, W, C) in [0, 1]) -> logits``; gradients flow
        through it to the inpainter, never into its weights (closed over constants).
      classifier_weight: lambda >= 0.
      per_channel: as :func:`inpainter_task`.
      init_params: start from these weights (the MSE-trained inpainter) instead of a
        fresh initialisation.
      reform: a frozen reformer applied before masking, as the shipped defense does
        (reformer + mask-inpaint): the inpainter then learns on what it will see. The
        MSE term still compares with the clean image.
    """
    _, fresh_init = _autoencoder_init(config, hw)

    def init(key):
        return fresh_init(key) if init_params is None else init_params

    def combined(params, key, x):
        inputs = x if reform is None else jax.lax.stop_gradient(reform(x))
        return mask_inpaint(
            autoencoder_fn(config, params), key, inputs, n_masks, per_channel=per_channel
        )

    def terms(params, key, images):
        x = to_unit(images)
        x_hat = combined(params, key, x)
        target = jnp.argmax(jax.lax.stop_gradient(classify(x)), axis=-1)
        logits = classify(x_hat)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, target)
        mse = jnp.mean((x_hat - x) ** 2, axis=(1, 2, 3))
        return mse, ce, logits, target

    def loss(params, key, images, labels):
        del labels
        mse, ce, logits, target = terms(params, key, images)
        agree = jnp.mean(jnp.argmax(logits, -1) == target)
        return mse.mean() + classifier_weight * ce.mean(), {
            "mse_hidden": mse.mean(),
            "ce": ce.mean(),
            "agreement": agree,
        }

    def evaluate(params, images, labels):
        mse, ce, logits, target = terms(params, jax.random.key(0), images)
        return {
            "mse_hidden": mse.sum(),
            "ce": ce.sum(),
            "agreement": jnp.sum(jnp.argmax(logits, -1) == target),
            "accuracy": accuracy_sum(logits, labels),
        }

    return Task(init, loss, evaluate)


def param_count(params: Any) -> int:
    return sum(int(p.size) for p in jax.tree.leaves(params))
