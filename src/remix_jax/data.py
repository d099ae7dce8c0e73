"""Datasets as NHWC uint8 arrays: registered ones, and any image data by where it lives.

A registered dataset (:mod:`remix_jax.datasets`) is read from a local data folder
(argument ``data_dir`` or environment ``REMIX_DATA_DIR``) first:
``<dir>/<dataset>/<split>.npz``, or its shards ``<split>-NNNNN-of-MMMMM.npz``
concatenated in order, each with arrays ``image`` (N, H, W, C) uint8, ``label`` (N,)
and ``source`` (a string naming the origin). Without one, tensorflow-datasets
downloads and prepares the dataset (needs TensorFlow: ``pip install 'remix-jax[tfds]'``).

Any other image-classification data is named by where it is (:func:`resolve`):
``tfds:<name>[/<config>]`` (:mod:`remix_jax.tfds_source`), or a folder holding
``<split>.npz`` files as above (an optional ``class_names`` array names the classes)
or the ImageFolder layout ``<split>/<class name>/*.png|jpg|jpeg``
(:mod:`remix_jax.image_folder`). Its spec is derived from the data
(:func:`remix_jax.datasets.derive_spec`) and registered on first use.
"""

from __future__ import annotations

import logging
import os
from typing import NamedTuple

import numpy as np

from remix_jax import datasets, npz_files, sources, tfds_source

SPLITS = ("train", "test")
logger = logging.getLogger(__name__)

DATA_DIR_ENV = "REMIX_DATA_DIR"


class Split(NamedTuple):
    """One split of a dataset: (N, H, W, C) uint8 images, (N,) int32 labels, origin."""

    images: np.ndarray
    labels: np.ndarray
    source: str


def _load_tfds(dataset: str, split: str, tfds_dir: str | None, download: bool) -> Split:
    name = datasets.get(dataset).tfds_name
    if name is None:
        raise FileNotFoundError(
            f"dataset {dataset!r} has no tensorflow-datasets name: set {DATA_DIR_ENV} or pass "
            f"--data-dir to a folder holding {dataset}/{split}.npz"
        )
    # a warning, so that it reaches stderr without logging set up: without a network
    # tensorflow-datasets retries for minutes before it fails, and users should know why
    logger.warning(
        "%s not set and no --data-dir: loading %s/%s with tensorflow-datasets%s",
        DATA_DIR_ENV,
        dataset,
        split,
        " (downloads on first use)" if download else "",
    )
    try:
        return Split(*tfds_source.read(name, split, tfds_dir, download=download))
    except (FileNotFoundError, ValueError) as e:
        raise FileNotFoundError(
            f"tensorflow-datasets could not load {dataset}/{split} ({e}); "
            f"set {DATA_DIR_ENV} or pass --data-dir to a folder holding "
            f"{dataset}/{split}.npz, or install 'remix-jax[tfds]' and allow downloads"
        ) from e


def resolve(dataset: str, data_dir: str | None = None, *, tfds_dir: str | None = None) -> str:
    """The registry name of ``dataset``: a registered name, a folder or ``tfds:<name>``.

    A source seen first is registered with a spec derived from its data and the spec
    printed (:func:`remix_jax.sources.resolve`). ``tfds_dir`` (else ``data_dir``) is
    tensorflow-datasets' data folder for a ``tfds:`` source.
    """
    return sources.resolve(dataset, tfds_dir or data_dir)


def _load_registered(
    dataset: str, split: str, data_dir: str | None, tfds_dir: str | None, download: bool
) -> Split:
    """One split of a registered dataset: ``<data dir>/<dataset>/``, else tensorflow-datasets."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    origin = "argument data_dir" if data_dir else f"environment {DATA_DIR_ENV}"
    data_dir = data_dir or os.environ.get(DATA_DIR_ENV) or None
    if data_dir is None:
        return _load_tfds(dataset, split, tfds_dir, download)
    folder = os.path.join(data_dir, dataset)
    files = npz_files.split_files(folder, split)
    if not files:
        raise FileNotFoundError(
            f"no {split}.npz or {split}-NNNNN-of-MMMMM.npz shards in {folder} "
            f"(folder from {origin})"
        )
    return Split(*npz_files.read(files))


def load_split(
    dataset: str,
    split: str,
    data_dir: str | None = None,
    *,
    tfds_dir: str | None = None,
    download: bool = True,
) -> Split:
    """Loads one split with its origin. See :func:`load`."""
    dataset = resolve(dataset, data_dir, tfds_dir=tfds_dir)
    spec = datasets.get(dataset)
    if spec.source is None:
        result = _load_registered(dataset, split, data_dir, tfds_dir, download)
    else:  # REMIX_DATA_DIR holds registered datasets: a source has its own data
        result = Split(*sources.read(spec, split, tfds_dir or data_dir, download=download))
    expected = spec.image_shape
    if result.images.shape[1:] != expected or result.images.dtype != np.uint8:
        raise ValueError(
            f"{dataset}/{split}: expected uint8 images of shape (N, *{expected}), "
            f"got {result.images.dtype} {result.images.shape}"
        )
    num_classes = spec.num_classes
    if result.labels.ndim != 1 or (
        result.labels.size and not 0 <= result.labels.min() <= result.labels.max() < num_classes
    ):
        # a folder of .npz files without class names: its classes were counted
        counted = " (counted in the training labels; a 'class_names' array sets it)"
        raise ValueError(
            f"{dataset}/{split}: labels must be a 1-D array of class indices in [0, {num_classes})"
            + (counted if spec.source and not spec.class_names else "")
        )
    if len(result.labels) != len(result.images):
        raise ValueError(
            f"{dataset}/{split}: {len(result.images)} images but {len(result.labels)} labels"
        )
    return result


def load(
    dataset: str,
    split: str,
    data_dir: str | None = None,
    *,
    tfds_dir: str | None = None,
    download: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Loads a dataset: a registered one, or any image-classification data by where it is.

    Args:
      dataset: a registry name (e.g. "mnist", "cifar10"); ``"tfds:<name>[/<config>]"``;
        or a folder with ``<split>.npz`` files or ``<split>/<class name>/`` images
        (see :func:`resolve`, which registers it on first use).
      split: "train" or "test" for a registered dataset; a source's own split names.
      data_dir: for a registered dataset, the folder holding ``<dataset>/<split>.npz``
        (or shards), default the environment variable ``REMIX_DATA_DIR``, and if
        neither is set tensorflow-datasets; for a ``tfds:`` dataset,
        tensorflow-datasets' data folder; unused for a folder.
      tfds_dir: tensorflow-datasets' data folder (its default if None; for a ``tfds:``
        dataset preferred over ``data_dir``).
      download: let tensorflow-datasets download and prepare the data.

    Returns:
      images (N, H, W, C) uint8 and labels (N,) int32.

    Raises:
      FileNotFoundError: the data or the split is missing (the message says how to
        provide it).
      ValueError: an unknown dataset, or data that does not fit its spec (the message
        names the file and the fault).
    """
    split_ = load_split(dataset, split, data_dir, tfds_dir=tfds_dir, download=download)
    return split_.images, split_.labels


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 images -> float32 in [0, 1] (same shape)."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"images must be uint8, got {images.dtype}")
    return images.astype(np.float32) / 255.0
