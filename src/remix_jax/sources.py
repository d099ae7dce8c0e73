"""Datasets named by where their data is: a folder or ``tfds:<name>[/<config>]``.

:func:`resolve` turns such a source into a registry name, registering a spec derived
from the data (:func:`remix_jax.datasets.derive_spec`) the first time; :func:`read`
reads a split of it. A folder holds either the project's ``<split>.npz`` files
(:mod:`remix_jax.npz_files`) or the ImageFolder layout ``<split>/<class name>/*.png``
(:mod:`remix_jax.image_folder`); a ``tfds:`` source is any tensorflow-datasets
image-classification dataset (:mod:`remix_jax.tfds_source`). Imports no JAX.
"""

from __future__ import annotations

import os
import re
import sys

import numpy as np

from remix_jax import datasets, image_folder, npz_files, tfds_source


def name_and_source(dataset: str) -> tuple[str, str]:
    """The registry name a source gets, and the source as the spec records it.

    A folder is recorded as its absolute path and named by its last component,
    ``"tfds:name/config"`` is named ``"tfds_name_config"`` (non-word characters as
    "_", so that the name also makes a checkpoint folder).

    Raises:
      ValueError: neither ``tfds:...`` nor an existing folder.
    """
    if dataset.startswith(tfds_source.PREFIX):
        return "tfds_" + _identifier(dataset[len(tfds_source.PREFIX) :]), dataset
    folder = os.path.abspath(os.path.expanduser(dataset))
    if not os.path.isdir(folder):
        raise ValueError(
            f"dataset must be one of {datasets.names()}, tfds:<name>[/<config>] or a data "
            f"folder; got {dataset!r}" + (" (a file)" if os.path.exists(folder) else "")
        )
    return _identifier(os.path.basename(folder)), folder


def _identifier(text: str) -> str:
    name = re.sub(r"\W+", "_", text).strip("_")
    if not name:
        raise ValueError(f"cannot name a dataset after {text!r}: rename it")
    return name


def _layout(folder: str) -> tuple[str, list[str]]:
    """A data folder's layout ("npz" or "images") and its split names."""
    if names := npz_files.splits(folder):
        return "npz", names
    if names := image_folder.splits(folder):
        return "images", names
    raise FileNotFoundError(
        f"{folder} holds neither <split>.npz files nor <split>/<class>/ image folders"
    )


def describe(source: str, data_dir: str | None = None) -> tuple[tuple, int, tuple[str, ...]]:
    """(image shape (H, W, C), number of classes, class names) of a source's data.

    A folder is described by its training split ("train", else the first split).

    Args:
      source: a folder (absolute path) or ``"tfds:<name>[/<config>]"``.
      data_dir: tensorflow-datasets' data folder for a ``tfds:`` source.

    Raises:
      ValueError, FileNotFoundError: data that does not make a dataset (the message
        names the file and the fault), or no data.
    """
    if source.startswith(tfds_source.PREFIX):
        probe = tfds_source.probe(source[len(tfds_source.PREFIX) :], data_dir)
        return probe.image_shape, len(probe.class_names), probe.class_names
    layout, names = _layout(source)
    split = "train" if "train" in names else names[0]
    if layout == "images":
        probe = image_folder.probe(source, split)
        return probe.image_shape, len(probe.class_names), probe.class_names
    files = npz_files.split_files(source, split)
    images, labels, _ = npz_files.read(files)
    class_names = npz_files.class_names(files[0])
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[3] not in (1, 3):
        raise ValueError(
            f"{files[0]}: images must be uint8 (N, H, W, 1 or 3), got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or not labels.size or labels.min() < 0:
        raise ValueError(f"{files[0]}: labels must be a 1-D array of class indices >= 0")
    num_classes = len(class_names) or int(labels.max()) + 1
    if num_classes < 2:
        raise ValueError(f"{files[0]}: one class only; classification needs at least 2")
    return images.shape[1:], num_classes, class_names


def resolve(dataset: str, data_dir: str | None = None) -> str:
    """The registry name of a dataset given by its name or by where its data is.

    A source seen for the first time is registered with a spec derived from its data
    (:func:`remix_jax.datasets.derive_spec`) and the spec's summary printed on stderr;
    later calls with the same source return the same name.

    Args:
      dataset: a registered name; ``"tfds:<name>[/<config>]"``; or a folder holding
        ``<split>.npz`` files (or shards) or ``<split>/<class name>/`` image folders.
      data_dir: tensorflow-datasets' data folder, for a ``tfds:`` source.

    Returns:
      ``dataset`` if registered, else the name of :func:`name_and_source`, which
      also names its checkpoint folders (``checkpoints/<name>/<component>``).

    Raises:
      ValueError: an unknown name, a name taken by another source, or data that does
        not make a dataset.
      FileNotFoundError: no data where it points.
    """
    if dataset in datasets.names():
        return dataset
    name, source = name_and_source(dataset)
    if name in datasets.names():
        taken = datasets.get(name).source
        if taken == source:
            return name
        raise ValueError(
            f"{dataset} would be registered as {name!r}, a name taken by "
            + (taken or f"a project dataset (its data: <data dir>/{name}/)")
            + "; rename the folder"
        )
    image_shape, num_classes, class_names = describe(source, data_dir)
    is_tfds = source.startswith(tfds_source.PREFIX)
    spec = datasets.register(
        datasets.derive_spec(
            name,
            image_shape,
            num_classes,
            source=source,
            display_name=source if is_tfds else os.path.basename(source),
            class_names=class_names,
        )
    )
    print(
        f"registered {datasets.summary(spec)}\n  (defaults derived from the images; "
        "flags override them)",
        file=sys.stderr,
    )
    return name


def read(
    spec: datasets.DatasetSpec, split: str, data_dir: str | None = None, *, download: bool = True
) -> tuple[np.ndarray, np.ndarray, str]:
    """One split of a dataset registered from its data (``spec.source``).

    Args:
      spec: the dataset's spec (its ``source``, shape and classes).
      split: the source's name for it ("train", "test", "validation", ...).
      data_dir: tensorflow-datasets' data folder, for a ``tfds:`` source.
      download: let tensorflow-datasets download and prepare missing data.

    Returns:
      images (N, H, W, C) uint8, labels (N,) int32, and their origin.

    Raises:
      FileNotFoundError: no such split (the message lists those there are).
      ValueError: see :func:`remix_jax.image_folder.read` and
        :func:`remix_jax.tfds_source.read`.
    """
    if spec.source.startswith(tfds_source.PREFIX):
        name = spec.source[len(tfds_source.PREFIX) :]
        return tfds_source.read(name, split, data_dir, download=download)
    if files := npz_files.split_files(spec.source, split):
        return npz_files.read(files)
    if os.path.isdir(os.path.join(spec.source, split)):
        images, labels = image_folder.read(spec.source, split, spec.image_shape, spec.class_names)
        return images, labels, f"image folder {os.path.join(spec.source, split)}"
    raise FileNotFoundError(f"{spec.source}: no split {split!r} (it has {_layout(spec.source)[1]})")
