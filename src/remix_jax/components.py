"""The project's standard components per dataset: architectures and checkpoint paths.

One place that says which classifier, reformer and inpainter architecture a dataset
uses, so training CLIs, ``load_pretrained`` and the evaluations agree.
"""

from __future__ import annotations

import os

import flax.linen as nn

from remix_jax.data import DATASETS
from remix_jax.models.autoencoder import AutoencoderConfig
from remix_jax.models.classifiers import MNISTClassifier

# REMIX's mask count n per dataset (paper, Sec. IV).
N_MASKS = {"mnist": 2, "cifar10": 3}
# MagNet's reformer training noise per dataset (its official code).
REFORMER_NOISE = {"mnist": 0.1, "cifar10": 0.025}

CLASSIFIERS: dict[str, type[nn.Module]] = {"mnist": MNISTClassifier}


def default_autoencoder(dataset: str, component: str) -> AutoencoderConfig:
    """Default reformer / inpainter architecture of a dataset."""
    check_dataset(dataset)
    channels = DATASETS[dataset][-1]
    if component == "reformer":
        return AutoencoderConfig(channels=channels, features=(32, 32, 32, 32), strides=(1, 1, 1, 1))
    if component == "inpainter":
        return AutoencoderConfig(
            channels=channels, features=(32, 32, 32, 32), strides=(1, 1, 1, 1), mask_channel=True
        )
    raise ValueError(f"component must be 'reformer' or 'inpainter', got {component!r}")


def classifier(dataset: str) -> nn.Module:
    check_dataset(dataset)
    if dataset not in CLASSIFIERS:
        raise NotImplementedError(f"no classifier architecture for {dataset} yet")
    return CLASSIFIERS[dataset]()


def check_dataset(dataset: str) -> None:
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {dataset!r}")


def checkpoint_root() -> str:
    """The shipped checkpoints: ``$REMIX_CHECKPOINT_DIR``, else the repo's ``checkpoints/``."""
    env = os.environ.get("REMIX_CHECKPOINT_DIR")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.normpath(os.path.join(here, "..", "..", "checkpoints"))


def checkpoint_dir(dataset: str, component: str, root: str | None = None) -> str:
    return os.path.join(root or checkpoint_root(), dataset, component)
