"""The project's standard components per dataset: architectures and checkpoint paths.

Built from the dataset registry (:mod:`remix_jax.datasets`), so that training CLIs,
``load_pretrained`` and the evaluations agree on which classifier, reformer,
inpainter and MagNet a dataset uses.
"""

from __future__ import annotations

import dataclasses
import importlib
import os

import flax.linen as nn

from remix_jax import datasets
from remix_jax.datasets import DetectorSpec
from remix_jax.models.autoencoder import AutoencoderConfig
from remix_jax.models.magnet import MagNetAEConfig


def default_autoencoder(dataset: str, component: str) -> AutoencoderConfig:
    """Default reformer / inpainter architecture of a dataset."""
    channels = datasets.get(dataset).channels
    if component == "reformer":
        return AutoencoderConfig(channels=channels, features=(32, 32, 32, 32), strides=(1, 1, 1, 1))
    if component == "inpainter":
        return AutoencoderConfig(
            channels=channels, features=(32, 32, 32, 32), strides=(1, 1, 1, 1), mask_channel=True
        )
    raise ValueError(f"component must be 'reformer' or 'inpainter', got {component!r}")


def magnet_autoencoder(dataset: str, name: str) -> MagNetAEConfig:
    """Architecture of MagNet's autoencoder ``name`` ("I", "II") for a dataset."""
    spec = datasets.get(dataset)
    structures = magnet_setup(dataset).autoencoders
    if name not in structures:
        raise ValueError(f"MagNet on {dataset} has autoencoders {sorted(structures)}, not {name!r}")
    return MagNetAEConfig(channels=spec.channels, structure=structures[name])


def magnet_setup(dataset: str) -> datasets.MagNetSetup:
    """The dataset's MagNet set-up; ValueError where it has none."""
    setup = datasets.get(dataset).magnet
    if setup is None:
        raise ValueError(f"the registry has no MagNet set-up for dataset {dataset!r}")
    return setup


def magnet_detectors(dataset: str, *, extras: bool = True) -> tuple[DetectorSpec, ...]:
    """MagNet's detectors on a dataset: the official ones, then (``extras``) the extras."""
    setup = magnet_setup(dataset)
    return setup.detectors + (setup.extra_detectors if extras else ())


def magnet_official_names(dataset: str) -> tuple[str, ...]:
    """Names of MagNet's official detectors on a dataset (results' "MagNet" row)."""
    return tuple(d.name for d in magnet_setup(dataset).detectors)


def classifier(dataset: str, **fields) -> nn.Module:
    """The dataset's classifier module; ``fields`` override its defaults (e.g. width).

    Its number of classes is the dataset's.
    """
    spec = datasets.get(dataset)
    path = spec.classifier
    if path is None:
        raise ValueError(f"the registry has no default classifier for dataset {dataset!r}")
    module_name, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module_name), attribute)(
        **{"num_classes": spec.num_classes, **fields}
    )


def module_fields(module: nn.Module) -> dict:
    """A module's hyperparameters (its dataclass fields), JSON-able, for meta.json."""
    return {
        f.name: getattr(module, f.name)
        for f in dataclasses.fields(module)
        if f.name not in ("parent", "name")
    }


def check_dataset(dataset: str) -> None:
    """ValueError naming the registered datasets unless ``dataset`` is one."""
    datasets.get(dataset)


def checkpoint_root() -> str:
    """The shipped checkpoints: ``$REMIX_CHECKPOINT_DIR``, else the repo's ``checkpoints/``."""
    env = os.environ.get("REMIX_CHECKPOINT_DIR")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.normpath(os.path.join(here, "..", "..", "checkpoints"))


def checkpoint_dir(dataset: str, component: str, root: str | None = None) -> str:
    return os.path.join(root or checkpoint_root(), dataset, component)
