"""The ImageFolder layout, ``<root>/<split>/<class name>/*.png|jpg|jpeg``, as uint8 arrays.

The layout torchvision's ``ImageFolder`` reads. A class's index is its folder name's
place among the sorted class folders of the split the dataset is described from
(:func:`probe`, the training split), so a test split that lacks a class still labels
the others alike. All images of a dataset share one size; grayscale images (Pillow
mode "L") give 1 channel, colour ones 3. Other modes are converted, with a note on
stderr: RGBA loses its alpha, palettes are expanded, and in a dataset with colour
images the grayscale ones are copied to three channels. Reads with Pillow; imports no
JAX.
"""

from __future__ import annotations

import collections
import os
import sys
import zlib
from typing import NamedTuple

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
# Pillow modes of one channel; every other 8-bit mode is colour
GRAY_MODES = ("1", "L", "LA")
# more than 8 bits per value: converting would clip or rescale silently
_UNSUPPORTED_MODES = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")
# what a broken file raises while Pillow decodes it (SyntaxError: a broken PNG chunk)
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, zlib.error)


class Probe(NamedTuple):
    """What a split's image headers tell: (H, W, C) shared by all, sorted class names."""

    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...]


def _visible(folder: str) -> list[str]:
    """Sorted entries of a folder, without hidden ones (.DS_Store, ._x)."""
    return sorted(name for name in os.listdir(folder) if not name.startswith("."))


def is_image_file(name: str) -> bool:
    return name.lower().endswith(IMAGE_SUFFIXES)


def splits(root: str) -> list[str]:
    """The split folders of ``root`` (sorted)."""
    return [name for name in _visible(root) if os.path.isdir(os.path.join(root, name))]


def class_files(root: str, split: str) -> dict[str, list[str]]:
    """Class name -> the sorted image paths in ``<root>/<split>/<class name>/``.

    Raises:
      FileNotFoundError: no folder ``<root>/<split>``.
      ValueError: no class folders, an empty class folder, a file that is not an
        image by its suffix, a folder inside a class folder, images outside class folders.
    """
    folder = os.path.join(root, split)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{root}: no split {split!r} (it has {splits(root)})")
    files = {}
    for name in _visible(folder):
        path = os.path.join(folder, name)
        if not os.path.isdir(path):
            if is_image_file(name):
                raise ValueError(f"{path}: images belong in class folders, {split}/<class>/")
            continue  # a README or a label file beside the class folders
        files[name] = [os.path.join(path, entry) for entry in _visible(path)]
        for entry in files[name]:
            if os.path.isdir(entry):
                raise ValueError(f"{entry}: a folder in a class folder (it holds images only)")
            if not is_image_file(entry):
                raise ValueError(f"{entry}: not an image (expected {', '.join(IMAGE_SUFFIXES)})")
        if not files[name]:
            raise ValueError(f"{path}: empty class folder (remove it or add images)")
    if not files:
        raise ValueError(f"{folder}: no class folders ({split}/<class>/*.png)")
    return files


def _open(path: str):
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
    except (UnidentifiedImageError, *_DECODE_ERRORS) as e:
        raise ValueError(f"{path}: not a readable image ({type(e).__name__})") from None
    if image.mode in _UNSUPPORTED_MODES:
        image.close()
        raise ValueError(f"{path}: {image.mode} images are not supported; save 8-bit images")
    return image


def _size_error(path: str, size: tuple[int, int], other: str, other_size) -> ValueError:
    return ValueError(
        f"images of different sizes: {path} is {size[1]}x{size[0]} (H x W), {other} "
        f"{other_size[1]}x{other_size[0]}; resize them to one size"
    )


def probe(root: str, split: str) -> Probe:
    """Reads the headers of a split's images (no decoding) to describe the dataset.

    Returns:
      (H, W, C): C = 3 if any image is colour, else 1; the sorted class names.

    Raises:
      FileNotFoundError, ValueError: see :func:`class_files`; images of different
        sizes, a file Pillow cannot open, one class only.
    """
    files = class_files(root, split)
    if len(files) < 2:
        raise ValueError(
            f"{os.path.join(root, split)}: one class ({next(iter(files))}) only; "
            "classification needs at least 2 class folders"
        )
    first, size, colour = None, None, False
    for path in (path for paths in files.values() for path in paths):
        with _open(path) as image:
            if size is None:
                first, size = path, image.size
            elif image.size != size:
                raise _size_error(path, image.size, first, size)
            colour = colour or image.mode not in GRAY_MODES
    return Probe((size[1], size[0], 3 if colour else 1), tuple(files))


def read(
    root: str, split: str, image_shape: tuple[int, int, int], class_names: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray]:
    """Decodes a split.

    Args:
      root: the dataset folder.
      split: a split folder's name.
      image_shape: (H, W, C) every image must have (after the conversions above).
      class_names: the dataset's classes; label i is ``class_names[i]``.

    Returns:
      images (N, H, W, C) uint8 and labels (N,) int32, the classes interleaved: the
      first file of every class (in label order), then the second, and so on (files
      sorted within a class). The tools take the first or last images of a split
      (--limit, the validation images held out of training, the first N test images an
      evaluation attacks): class by class, those would be a few classes only.

    Raises:
      FileNotFoundError, ValueError: see :func:`class_files`; a class not in
        ``class_names``, an image of another size, a colour image in a grayscale
        dataset, a file that does not decode.
    """
    files = class_files(root, split)
    if unknown := sorted(set(files) - set(class_names)):
        raise ValueError(
            f"{os.path.join(root, split)}: class folders {unknown} are not among the "
            f"dataset's classes {list(class_names)}"
        )
    h, w, c = image_shape
    target = "L" if c == 1 else "RGB"
    images, labels, converted = [], [], collections.Counter()
    in_turn = sorted(
        (rank, label, path)
        for label, name in enumerate(class_names)
        for rank, path in enumerate(files.get(name, ()))
    )
    for _, label, path in in_turn:
        with _open(path) as image:
            if image.size != (w, h):
                raise _size_error(path, image.size, "the dataset's images", (w, h))
            if c == 1 and image.mode not in GRAY_MODES:
                raise ValueError(f"{path}: a colour ({image.mode}) image in a grayscale dataset")
            if image.mode != target:
                converted[image.mode] += 1
            try:
                array = np.asarray(image.convert(target))
            except _DECODE_ERRORS as e:
                raise ValueError(f"{path}: corrupt image ({type(e).__name__}: {e})") from None
        images.append(array.reshape(h, w, c))
        labels.append(label)
    if converted:
        counts = ", ".join(f"{n} {mode}" for mode, n in sorted(converted.items()))
        print(
            f"note: {os.path.join(root, split)}: converted to {target}: {counts} images "
            f"({_conversion_effects(converted, target)})",
            file=sys.stderr,
        )
    return np.stack(images), np.asarray(labels, np.int32)


def _conversion_effects(modes, target: str) -> str:
    """What converting images of these Pillow modes to ``target`` does to them."""
    effects = {
        "alpha dropped": any(mode.endswith(("A", "a")) for mode in modes),
        "palette expanded": any(mode.startswith("P") for mode in modes),
        "1-bit as 0 / 255": "1" in modes,
        "gray copied to R, G, B": target == "RGB" and any(m in GRAY_MODES for m in modes),
        "colour space converted": any(m in ("CMYK", "YCbCr", "LAB", "HSV") for m in modes),
    }
    return ", ".join(effect for effect, applies in effects.items() if applies)
