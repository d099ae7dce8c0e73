"""``load_pretrained``: the shipped classifier and a ready REMIX defense for a dataset."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from remix_jax import checkpoints, components, datasets
from remix_jax._checks import check_image_shape
from remix_jax.defense import RemixParams
from remix_jax.magnet import MagNetParams, load_calibration
from remix_jax.models.autoencoder import AutoencoderConfig, autoencoder_module
from remix_jax.models.classifiers import as_variables
from remix_jax.models.magnet import MagNetAEConfig, MagNetAutoencoder


class Pretrained(NamedTuple):
    """A dataset's trained models.

    Attributes:
      classifier: the Flax module.
      classifier_params: its weights: bare params, or the whole Flax variables dict
        of a BatchNorm net (``as_variables`` gives what ``classifier.apply`` takes).
      logits_fn: ``logits_fn(x (B, H, W, C) in [0, 1]) -> (B, num_classes)``, what
        attacks take.
      remix: :class:`RemixParams` with reformer, inpainter, the dataset's n and K=1.
    """

    classifier: nn.Module
    classifier_params: Any
    logits_fn: Callable[[jax.Array], jax.Array]
    remix: RemixParams


def load_classifier(
    dataset: str, root: str | None = None, *, folder: str | None = None
) -> tuple[nn.Module, Any]:
    """Restores the dataset's classifier: ``folder``, else found as :func:`load_pretrained` says.

    Returns:
      (module, weights): the bare params for stateless nets (MNIST), the whole
      variables dict for BatchNorm nets; ``model.apply(as_variables(weights), x)``
      classifies either way.
    """
    folder = folder or components.find_checkpoint(dataset, "classifier", root)
    try:
        fields = checkpoints.read_metadata(folder).get("config", {}).get("module", {})
    except FileNotFoundError:
        fields = {}
    model = components.classifier(dataset, **fields)

    def init():
        x = jnp.zeros((1, *datasets.get(dataset).image_shape))
        variables = model.init(jax.random.key(0), x)
        return dict(variables) if len(variables) > 1 else variables["params"]

    return model, checkpoints.restore(folder, jax.eval_shape(init)).params


def restore_autoencoder(folder: str, hw: tuple[int, int]) -> tuple[AutoencoderConfig, Any, dict]:
    """Restores a reformer or inpainter from ``folder``; architecture from its meta.json.

    Returns:
      (architecture, params, the "config" entry of its meta.json).
    """
    meta_config = checkpoints.read_metadata(folder)["config"]
    config = AutoencoderConfig.from_dict(meta_config)

    def init():
        mask = jnp.ones((1, *hw, 1)) if config.mask_channel else None
        x = jnp.zeros((1, *hw, config.channels))
        return autoencoder_module(config).init(jax.random.key(0), x, mask)["params"]

    return config, checkpoints.restore(folder, jax.eval_shape(init)).params, meta_config


def load_autoencoder(
    dataset: str, component: str, root: str | None = None
) -> tuple[AutoencoderConfig, Any, dict]:
    """Restores the dataset's shipped reformer or inpainter (see :func:`restore_autoencoder`)."""
    folder = components.find_checkpoint(dataset, component, root)
    return restore_autoencoder(folder, datasets.get(dataset).hw)


def load_magnet(
    dataset: str = "mnist",
    root: str | None = None,
    *,
    folder: str | None = None,
    calibrated: bool = True,
) -> MagNetParams:
    """Restores the MagNet baseline trained by ``python -m train.magnet``.

    Args:
      dataset: a registered dataset with a MagNet set-up ("mnist", "cifar10").
      root: checkpoint root, searched as :func:`load_pretrained` says; MagNet lives
        in ``<root>/<dataset>/magnet``.
      folder: that folder directly (overrides ``root``).
      calibrated: read the thresholds from its ``detectors.json``; False returns the
        dataset's detectors (official and extra) with no thresholds yet.

    Returns:
      :class:`remix_jax.magnet.MagNetParams`; with ``calibrated``, its detectors are
      those of ``detectors.json``.
    """
    setup = components.magnet_setup(dataset)
    folder = folder or components.find_checkpoint(dataset, "magnet", root)
    hw = datasets.get(dataset).hw
    configs, params = [], {}
    for name in sorted(setup.autoencoders):
        sub = os.path.join(folder, name)
        config = MagNetAEConfig.from_dict(checkpoints.read_metadata(sub)["config"])

        def init(config=config):
            x = jnp.zeros((1, *hw, config.channels))
            return MagNetAutoencoder(config).init(jax.random.key(0), x)["params"]

        params[name] = checkpoints.restore(sub, jax.eval_shape(init)).params
        configs.append((name, config))
    detectors = components.magnet_detectors(dataset)
    thresholds = {}
    if calibrated:
        detectors, thresholds = load_calibration(folder)
    return MagNetParams(
        autoencoders=params,
        thresholds=thresholds,
        configs=tuple(configs),
        detectors=tuple(detectors),
        reformer=setup.reformer,
    )


def load_pretrained(
    dataset: str = "mnist", root: str | None = None, *, inpainter: str | None = None
) -> Pretrained:
    """Loads the shipped checkpoints of a registered ``dataset`` (e.g. "mnist").

    Args:
      dataset: which dataset's models.
      root: checkpoint root holding ``<dataset>/<component>/``; when given, the only
        place searched. Otherwise each component comes from the first of
        ``$REMIX_CHECKPOINT_DIR``, the source checkout's ``checkpoints/`` (editable
        install, the repo's commands) and the MNIST / CIFAR-10 weights installed
        with the package (:func:`remix_jax.components.find_checkpoint`).
      inpainter: an inpainter checkpoint folder to use instead of the shipped one
        (a candidate or ablation); its n and mask layout come with it.

    Raises:
      FileNotFoundError: a component is nowhere searched (the message lists the
        places and the fixes) or its folder holds no checkpoint.
    """
    components.check_dataset(dataset)
    model, params = load_classifier(dataset, root)
    reformer_config, reformer, _ = load_autoencoder(dataset, "reformer", root)
    if inpainter is None:
        inpainter_config, inpainter, trained_with = load_autoencoder(dataset, "inpainter", root)
    else:
        inpainter_config, inpainter, trained_with = restore_autoencoder(
            inpainter, datasets.get(dataset).hw
        )
    remix = RemixParams(
        inpainter=inpainter,
        reformer=reformer,
        inpainter_config=inpainter_config,
        reformer_config=reformer_config,
        n_masks=trained_with.get("n_masks", datasets.get(dataset).n_masks),
        iterations=1,
        per_channel=trained_with.get("per_channel", False),
    )

    variables = as_variables(params)
    height, width, channels = datasets.get(dataset).image_shape

    def logits_fn(x):
        # shape and dtype only: values may not be concrete, and checking them here
        # would cost a host copy per call inside attack and evaluation loops
        check_image_shape("x", x, channels=channels, hw=(height, width))
        return model.apply(variables, x)

    return Pretrained(model, params, logits_fn, remix)
