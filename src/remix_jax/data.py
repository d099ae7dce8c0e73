"""Registered datasets as NHWC uint8 arrays, from a local folder or tensorflow-datasets.

A local data folder (argument ``data_dir`` or environment ``REMIX_DATA_DIR``) is
read first: ``<dir>/<dataset>/<split>.npz``, or its shards
``<split>-NNNNN-of-MMMMM.npz`` concatenated in order, each with arrays ``image``
(N, H, W, C) uint8, ``label`` (N,) and ``source`` (a string naming the origin).
Without one, tensorflow-datasets downloads and prepares the dataset (needs
TensorFlow: ``pip install 'remix-jax[tfds]'``).
"""

from __future__ import annotations

import glob
import logging
import os
import re
from typing import NamedTuple

import numpy as np

from remix_jax import datasets

SPLITS = ("train", "test")
logger = logging.getLogger(__name__)

DATA_DIR_ENV = "REMIX_DATA_DIR"


class Split(NamedTuple):
    """One split of a dataset: (N, H, W, C) uint8 images, (N,) int32 labels, origin."""

    images: np.ndarray
    labels: np.ndarray
    source: str


def _check_name(dataset: str, split: str) -> None:
    datasets.get(dataset)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _split_files(folder: str, split: str) -> list[str]:
    single = os.path.join(folder, f"{split}.npz")
    if os.path.isfile(single):
        return [single]
    pattern = re.compile(rf"{re.escape(split)}-(\d{{5}})-of-(\d{{5}})\.npz$")
    shards = sorted(
        p
        for p in glob.glob(os.path.join(folder, f"{split}-*-of-*.npz"))
        if pattern.search(os.path.basename(p))
    )
    if shards:
        numbers = [pattern.search(os.path.basename(p)).groups() for p in shards]
        totals = {int(total) for _, total in numbers}
        indices = sorted(int(index) for index, _ in numbers)
        if len(totals) != 1 or indices != list(range(next(iter(totals)))):
            raise FileNotFoundError(
                f"{folder}: the shards of split {split!r} are incomplete or mixed: "
                f"{[os.path.basename(p) for p in shards]}"
            )
    return shards


def _load_npz(files: list[str]) -> Split:
    images, labels, sources = [], [], []
    for path in files:
        try:
            with np.load(path, allow_pickle=False) as f:
                missing = {"image", "label"} - set(f.files)
                if missing:
                    raise ValueError(f"{path} lacks arrays {sorted(missing)}")
                images.append(f["image"])
                labels.append(f["label"])
                sources.append(str(f["source"]) if "source" in f.files else path)
        except (OSError, ValueError, EOFError) as e:
            if str(path) in str(e):
                raise
            # numpy's own message neither names the file nor should be followed (it
            # suggests allow_pickle=True, i.e. running code from the file)
            raise ValueError(
                f"{path} is not a readable dataset file (.npz with uint8 "
                f"'image' and int 'label' arrays): {type(e).__name__}"
            ) from e
    source = sources[0] if len(set(sources)) == 1 else "; ".join(dict.fromkeys(sources))
    return Split(np.concatenate(images), np.concatenate(labels).astype(np.int32), source)


def _load_tfds(dataset: str, split: str, tfds_dir: str | None, download: bool) -> Split:
    name = datasets.get(dataset).tfds_name
    if name is None:
        raise FileNotFoundError(
            f"dataset {dataset!r} has no tensorflow-datasets name: set {DATA_DIR_ENV} or pass "
            f"--data-dir to a folder holding {dataset}/{split}.npz"
        )
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:  # pragma: no cover - depends on the install
        raise FileNotFoundError(
            f"no local data for {dataset!r} and tensorflow-datasets cannot be imported ({e}); "
            f"set {DATA_DIR_ENV} or pass --data-dir, or pip install 'remix-jax[tfds]'"
        ) from e
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
        images, labels = tfds.as_numpy(
            tfds.load(
                name,
                split=split,
                as_supervised=True,
                batch_size=-1,
                data_dir=tfds_dir,
                download=download,
            )
        )
    except Exception as e:
        raise FileNotFoundError(
            f"tensorflow-datasets could not load {dataset}/{split} ({type(e).__name__}: {e}); "
            f"set {DATA_DIR_ENV} or pass --data-dir to a folder holding "
            f"{dataset}/{split}.npz, or install 'remix-jax[tfds]' and allow downloads"
        ) from e
    version = tfds.builder(name, data_dir=tfds_dir).version
    return Split(
        np.asarray(images), np.asarray(labels, np.int32), f"tensorflow-datasets {name}:{version}"
    )


def load_split(
    dataset: str,
    split: str,
    data_dir: str | None = None,
    *,
    tfds_dir: str | None = None,
    download: bool = True,
) -> Split:
    """Loads one split with its origin. See :func:`load`."""
    _check_name(dataset, split)
    origin = "argument data_dir" if data_dir else f"environment {DATA_DIR_ENV}"
    data_dir = data_dir or os.environ.get(DATA_DIR_ENV) or None
    if data_dir is not None:
        folder = os.path.join(data_dir, dataset)
        files = _split_files(folder, split)
        if not files:
            raise FileNotFoundError(
                f"no {split}.npz or {split}-NNNNN-of-MMMMM.npz shards in {folder} "
                f"(folder from {origin})"
            )
        result = _load_npz(files)
    else:
        result = _load_tfds(dataset, split, tfds_dir, download)
    spec = datasets.get(dataset)
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
        raise ValueError(
            f"{dataset}/{split}: labels must be a 1-D array of class indices in [0, {num_classes})"
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
    """Loads a registered dataset (:func:`remix_jax.datasets.names`).

    Args:
      dataset: its registry name, e.g. "mnist" or "cifar10".
      split: "train" or "test".
      data_dir: folder holding ``<dataset>/<split>.npz`` (or shards); defaults to
        the environment variable ``REMIX_DATA_DIR``; if neither is set,
        tensorflow-datasets is used.
      tfds_dir: tensorflow-datasets' data folder (its default if None).
      download: let tensorflow-datasets download and prepare the data.

    Returns:
      images (N, H, W, C) uint8 and labels (N,) int32.

    Raises:
      FileNotFoundError: the data is missing (the message says how to provide it).
    """
    split_ = load_split(dataset, split, data_dir, tfds_dir=tfds_dir, download=download)
    return split_.images, split_.labels


def to_float(images: np.ndarray) -> np.ndarray:
    """uint8 images -> float32 in [0, 1] (same shape)."""
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise TypeError(f"images must be uint8, got {images.dtype}")
    return images.astype(np.float32) / 255.0
