"""tensorflow-datasets image-classification datasets, named ``tfds:<name>[/<config>]``.

Any builder whose features hold an image and a class label (its ``supervised_keys``,
else its one ``Image`` and one ``ClassLabel`` feature) with a fixed image size. The
builder's code describes the dataset without its data; reading prepares the data
first (a download) unless it is already in the data folder. Imports
tensorflow-datasets only when called, and no JAX.
"""

from __future__ import annotations

import logging
import sys
from typing import NamedTuple

import numpy as np

PREFIX = "tfds:"
logger = logging.getLogger(__name__)


class Probe(NamedTuple):
    """A builder's image shape (H, W, 1 or 3), its class names, and its feature keys."""

    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    image_key: str
    label_key: str


def _local_hint(name: str) -> str:
    return (
        f"offline, the data must be local: prepare it where there is a network "
        f"(`tfds build {name} --data_dir DIR`, or the builder's download_and_prepare()) "
        "and set TFDS_DATA_DIR=DIR (or pass data_dir=DIR, --data-dir DIR)"
    )


def builder(name: str, data_dir: str | None = None):
    """tensorflow-datasets' builder of ``name`` ("mnist", "glue/cola").

    Raises:
      FileNotFoundError: tensorflow-datasets is not installed.
      ValueError: neither tensorflow-datasets' code nor ``data_dir`` knows the name.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:  # pragma: no cover - depends on the install
        raise FileNotFoundError(
            f"{PREFIX}{name} needs tensorflow-datasets ({e}): pip install 'remix-jax[tfds]'"
        ) from None
    try:
        return tfds.builder(name, data_dir=data_dir)
    except ValueError as e:  # DatasetNotFoundError, a bad config: long messages
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(
            f"tensorflow-datasets has no dataset {name!r} ({first}), nor is it prepared in "
            f"{data_dir or 'its data folder'}; {_local_hint(name)}"
        ) from None


def probe(name: str, data_dir: str | None = None) -> Probe:
    """Describes an image-classification dataset from its builder's features (no data read).

    Raises:
      FileNotFoundError, ValueError: see :func:`builder`; not image classification,
        images of varying size, not 8-bit, or not 1, 3 or 4 (RGBA) channels.
    """
    return _describe(name, builder(name, data_dir))


def _describe(name: str, build) -> Probe:
    import tensorflow_datasets as tfds

    info = build.info
    features = dict(info.features.items())
    keys = tuple(info.supervised_keys or ())
    if not (
        len(keys) == 2
        and isinstance(features.get(keys[0]), tfds.features.Image)
        and isinstance(features.get(keys[1]), tfds.features.ClassLabel)
    ):
        images = [k for k, v in features.items() if isinstance(v, tfds.features.Image)]
        labels = [k for k, v in features.items() if isinstance(v, tfds.features.ClassLabel)]
        if len(images) != 1 or len(labels) != 1:
            kinds = {k: type(v).__name__ for k, v in features.items()}
            raise ValueError(
                f"{PREFIX}{name} is not an image-classification dataset: it needs one Image "
                f"and one ClassLabel feature, it has {kinds}"
            )
        keys = (images[0], labels[0])
    image = features[keys[0]]
    shape = tuple(image.shape)
    if None in shape or len(shape) != 3 or shape[2] not in (1, 3, 4):
        raise ValueError(
            f"{PREFIX}{name}: images of shape {shape} (None: varying); REMIX needs one "
            "size with 1, 3 or 4 channels: resize them and save an image folder"
        )
    if np.dtype(image.np_dtype) != np.uint8:
        raise ValueError(f"{PREFIX}{name}: {np.dtype(image.np_dtype)} images; REMIX reads uint8")
    return Probe((*shape[:2], min(shape[2], 3)), tuple(features[keys[1]].names), *keys)


def read(
    name: str, split: str, data_dir: str | None = None, *, download: bool = True
) -> tuple[np.ndarray, np.ndarray, str]:
    """Reads one split, preparing the data first where ``download`` allows.

    Args:
      name: tensorflow-datasets' name, "name" or "name/config".
      split: a split as tensorflow-datasets names it ("train", "test", "validation").
      data_dir: tensorflow-datasets' data folder (None: its default, $TFDS_DATA_DIR
        or ~/tensorflow_datasets).
      download: download and prepare data that is not in ``data_dir`` yet.

    Returns:
      images (N, H, W, C) uint8 (RGBA loses its alpha, with a note on stderr), labels
      (N,) int32, and the origin ("tensorflow-datasets <name>:<version>").

    Raises:
      FileNotFoundError: the data is not prepared (and may not be, or could not be
        downloaded), or the split does not exist.
      ValueError: see :func:`probe`.
    """
    import tensorflow_datasets as tfds

    build = builder(name, data_dir)
    described = _describe(name, build)
    if not build.is_prepared():
        if not download:
            raise FileNotFoundError(
                f"{PREFIX}{name} is not prepared in {data_dir or 'its data folder'}; "
                + _local_hint(name)
            )
        # without a network tensorflow-datasets retries for minutes: say what it does
        logger.warning("preparing %s%s with tensorflow-datasets (downloads)", PREFIX, name)
        try:
            build.download_and_prepare()
        except Exception as e:
            raise FileNotFoundError(
                f"{PREFIX}{name} could not be prepared ({type(e).__name__}); {_local_hint(name)}"
            ) from e
    available = list(build.info.splits)
    if split.isidentifier() and split not in available:  # "train[:10%]" goes to tfds
        raise FileNotFoundError(f"{PREFIX}{name} has no split {split!r} (it has {available})")
    arrays = tfds.as_numpy(build.as_dataset(split=split, batch_size=-1))
    images, labels = arrays[described.image_key], arrays[described.label_key]
    if images.shape[-1] == 4:
        print(
            f"note: {PREFIX}{name}/{split}: RGBA converted to RGB (alpha dropped)", file=sys.stderr
        )
        images = images[..., :3]
    return (
        np.asarray(images),
        np.asarray(labels, np.int32),
        f"tensorflow-datasets {name}:{build.version}",
    )
