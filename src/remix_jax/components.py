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
import jax

from remix_jax import datasets
from remix_jax._checks import check_key
from remix_jax.datasets import DetectorSpec
from remix_jax.defense import RemixParams
from remix_jax.models.autoencoder import AutoencoderConfig, init_autoencoder
from remix_jax.models.magnet import MagNetAEConfig


def default_autoencoder(dataset: str, component: str) -> AutoencoderConfig:
    """Default reformer / inpainter architecture of a dataset."""
    spec = datasets.get(dataset)
    # full resolution up to 64 px (MNIST, CIFAR-10); larger images start with stride-2
    # layers (datasets.halvings: 224 px -> strides 2, 2, 1, 1), or the per-pixel cost of
    # four full-resolution 3x3 convolutions (x n masks) makes defend() 23 GFLOP an image
    k = min(datasets.halvings(spec.hw), 4)  # at most one per layer
    strides = (2,) * k + (1,) * (4 - k)
    if component == "reformer":
        return AutoencoderConfig(channels=spec.channels, features=(32,) * 4, strides=strides)
    if component == "inpainter":
        return AutoencoderConfig(
            channels=spec.channels, features=(32,) * 4, strides=strides, mask_channel=True
        )
    raise ValueError(f"component must be 'reformer' or 'inpainter', got {component!r}")


def init_remix(key: jax.Array, dataset: str, **fields) -> RemixParams:
    """REMIX with a dataset's standard reformer, inpainter and n, randomly initialised.

    The architectures ``train.reformer`` and ``train.inpainter`` build by default on that
    dataset, initialised as training initialises them (K = 1, masks over pixels): a
    defense to time or to test at the dataset's image size without trained weights (its
    cost does not depend on them).

    Args:
      key: PRNG key of the initial weights.
      dataset: a registered dataset (e.g. one :func:`remix_jax.datasets.derive_spec`
        made for an image size).
      **fields: :class:`AutoencoderConfig` fields that replace the standard ones in
        both networks, e.g. ``features=(4, 4), strides=(1, 1)`` for a tiny defense.

    Returns:
      :class:`RemixParams` for (B, H, W, C) images of the dataset's shape.

    Raises:
      ValueError: an unknown dataset, or fields that make no valid config.
    """
    check_key("key", key)
    spec = datasets.get(dataset)
    configs = {
        component: dataclasses.replace(default_autoencoder(dataset, component), **fields)
        for component in ("reformer", "inpainter")
    }
    reformer_key, inpainter_key = jax.random.split(key)
    return RemixParams(
        inpainter=init_autoencoder(inpainter_key, configs["inpainter"], spec.hw),
        reformer=init_autoencoder(reformer_key, configs["reformer"], spec.hw),
        inpainter_config=configs["inpainter"],
        reformer_config=configs["reformer"],
        n_masks=spec.n_masks,
        iterations=1,
    )


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


def classifier(dataset: str, *, from_checkpoint: bool = False, **fields) -> nn.Module:
    """The dataset's classifier module; ``fields`` override its defaults (e.g. width).

    Its number of classes is the dataset's. A module with ``stem_pools`` gets
    :func:`remix_jax.datasets.halvings` of the dataset's images, unless ``fields`` name
    it; ``from_checkpoint``: the fields are a checkpoint's recorded ones, and a
    checkpoint that records none was trained before the pools existed (0).
    """
    spec = datasets.get(dataset)
    path = spec.classifier
    if path is None:
        raise ValueError(f"the registry has no default classifier for dataset {dataset!r}")
    module_name, _, attribute = path.partition(":")
    module = getattr(importlib.import_module(module_name), attribute)
    defaults = {"num_classes": spec.num_classes}
    if "stem_pools" in {f.name for f in dataclasses.fields(module)}:
        defaults["stem_pools"] = 0 if from_checkpoint else datasets.halvings(spec.hw, exact=False)
    return module(**{**defaults, **fields})


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


# Where checkpoints are looked for (see find_checkpoint). The wheel carries the
# shipped MNIST / CIFAR-10 weights in the data-only package remix_jax._weights
# (pyproject.toml maps it onto the repo's checkpoints/).
CHECKPOINT_ENV = "REMIX_CHECKPOINT_DIR"
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
INSTALLED_CHECKPOINTS = os.path.join(_PACKAGE_DIR, "_weights")


def source_checkpoint_root() -> str | None:
    """The checkout's ``checkpoints/`` when the package runs from a source tree, else None.

    A source tree is ``<repo>/src/remix_jax`` beside ``<repo>/pyproject.toml`` (an
    editable install, ``PYTHONPATH=src``, the repo's own commands). An installed
    package sits in site-packages, whose ``../checkpoints`` is not ours.
    """
    src = os.path.dirname(_PACKAGE_DIR)
    repo = os.path.dirname(src)
    if os.path.basename(src) == "src" and os.path.isfile(os.path.join(repo, "pyproject.toml")):
        return os.path.join(repo, "checkpoints")
    return None


def checkpoint_roots() -> list[tuple[str, str]]:
    """The checkpoint roots searched when no ``root`` is given, in order.

    Returns:
      (label, folder) pairs: ``$REMIX_CHECKPOINT_DIR`` if set, the source checkout's
      ``checkpoints/`` when running from one, then the weights installed with the
      package.
    """
    roots = []
    if os.environ.get(CHECKPOINT_ENV):
        roots.append((f"${CHECKPOINT_ENV}", os.environ[CHECKPOINT_ENV]))
    source = source_checkpoint_root()
    if source is not None:
        roots.append(("the source checkout", source))
    roots.append(("the installed package", INSTALLED_CHECKPOINTS))
    return roots


def checkpoint_root() -> str:
    """The default checkpoint root, where training writes: the first of :func:`checkpoint_roots`."""
    return checkpoint_roots()[0][1]


def checkpoint_dir(dataset: str, component: str, root: str | None = None) -> str:
    """Where ``<root>/<dataset>/<component>`` is, found or not (training writes there)."""
    return os.path.join(root or checkpoint_root(), dataset, component)


def find_checkpoint(dataset: str, component: str, root: str | None = None) -> str:
    """The folder holding a component's checkpoint, for loading.

    Search order: (1) ``root`` when given, and only it: an explicit folder means
    those weights, and falling back to others would evaluate a different model
    unnoticed; otherwise the first of (2) ``$REMIX_CHECKPOINT_DIR``, (3) the source
    checkout's ``checkpoints/``, (4) the weights installed with the package, that
    has ``<dataset>/<component>/``. Each component is searched on its own, so a
    ``$REMIX_CHECKPOINT_DIR`` holding only your classifier still gets the shipped
    reformer and inpainter.

    Args:
      dataset: a dataset name ("mnist").
      component: "classifier", "reformer", "inpainter" or "magnet".
      root: a checkpoint root holding ``<dataset>/<component>/``.

    Raises:
      FileNotFoundError: no searched place has it; the message lists them and the fixes.
    """
    places = [("root=", root)] if root else checkpoint_roots()
    searched = []
    for label, place in places:
        folder = os.path.join(place, dataset, component)
        if os.path.isdir(folder):
            return folder
        searched.append(f"  {label}: {os.path.abspath(folder)}")
    train = f"python -m train.{component} --dataset {dataset}"
    raise FileNotFoundError(
        f"no checkpoint for {dataset}/{component}; searched\n"
        + "\n".join(searched)
        + f"\nFix: pass root= a folder holding {dataset}/{component}/ (what `{train}` "
        f"writes: orbax step folders and meta.json), set {CHECKPOINT_ENV} to such a "
        "folder, reinstall remix-jax if its shipped mnist/cifar10 weights are missing, "
        "or train it with that command."
    )
