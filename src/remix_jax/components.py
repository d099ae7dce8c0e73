"""The project's standard components per dataset: architectures and checkpoint paths.

One place that says which classifier, reformer and inpainter architecture a dataset
uses, so training CLIs, ``load_pretrained`` and the evaluations agree.
"""

from __future__ import annotations

import dataclasses
import os

import flax.linen as nn

from remix_jax.data import DATASETS
from remix_jax.magnet import DetectorSpec
from remix_jax.models.autoencoder import AutoencoderConfig
from remix_jax.models.classifiers import CIFARResNet, MNISTClassifier
from remix_jax.models.magnet import MagNetAEConfig

# REMIX's mask count n per dataset (paper, Sec. IV).
N_MASKS = {"mnist": 2, "cifar10": 3}
# MagNet's reformer training noise per dataset (its official code).
REFORMER_NOISE = {"mnist": 0.1, "cifar10": 0.025}

CLASSIFIERS: dict[str, type[nn.Module]] = {"mnist": MNISTClassifier, "cifar10": CIFARResNet}

# MagNet as in its official MNIST code (train_defense.py / test_defense.py) and
# Carlini's reconstruction of its CIFAR-10 set-up: autoencoders, the reformer, the
# detectors with their clean drop rates. "JSD-T10"/"JSD-T40" on MNIST are extras
# (MagNet's MNIST code uses only I-L2 and II-L1); results report MagNet with the
# official set and, separately, with the extras added.
MAGNET_AUTOENCODERS = {
    "mnist": {"I": (3, "average", 3), "II": (3,)},
    "cifar10": {"I": (3,)},
}
MAGNET_REFORMER = {"mnist": "I", "cifar10": "I"}
MAGNET_DETECTORS = {
    "mnist": (DetectorSpec("I-L2", "I", "L2", 0.001), DetectorSpec("II-L1", "II", "L1", 0.001)),
    "cifar10": (
        DetectorSpec("I-L1", "I", "L1", 0.005),
        DetectorSpec("JSD-T10", "I", "JSD", 0.01, temperature=10.0),
        DetectorSpec("JSD-T40", "I", "JSD", 0.01, temperature=40.0),
    ),
}
MAGNET_OFFICIAL_NAMES = {ds: tuple(d.name for d in spec) for ds, spec in MAGNET_DETECTORS.items()}
MAGNET_EXTRA_DETECTORS = {
    "mnist": (
        DetectorSpec("JSD-T10", "I", "JSD", 0.001, temperature=10.0),
        DetectorSpec("JSD-T40", "I", "JSD", 0.001, temperature=40.0),
    ),
    "cifar10": (),
}


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


def magnet_autoencoder(dataset: str, name: str) -> MagNetAEConfig:
    """Architecture of MagNet's autoencoder ``name`` ("I", "II") for a dataset."""
    check_dataset(dataset)
    structures = MAGNET_AUTOENCODERS[dataset]
    if name not in structures:
        raise ValueError(f"MagNet on {dataset} has autoencoders {sorted(structures)}, not {name!r}")
    return MagNetAEConfig(channels=DATASETS[dataset][-1], structure=structures[name])


def classifier(dataset: str, **fields) -> nn.Module:
    """The dataset's classifier module; ``fields`` override its defaults (e.g. width)."""
    check_dataset(dataset)
    return CLASSIFIERS[dataset](**fields)


def module_fields(module: nn.Module) -> dict:
    """A module's hyperparameters (its dataclass fields), JSON-able, for meta.json."""
    return {f.name: getattr(module, f.name) for f in dataclasses.fields(module)
            if f.name not in ("parent", "name")}


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
