"""The project's local data layout: a split as ``<folder>/<split>.npz`` or its shards.

A split is one file ``<split>.npz`` or shards ``<split>-NNNNN-of-MMMMM.npz``,
concatenated in order; each file holds arrays ``image`` (N, H, W, C) uint8,
``label`` (N,), optionally ``source`` (a string naming the origin) and, in a folder
given as a dataset source, ``class_names`` (the classes' names, in label order).
"""

from __future__ import annotations

import glob
import os
import re

import numpy as np

SHARD_SUFFIX = re.compile(r"-\d{5}-of-\d{5}$")


def splits(folder: str) -> list[str]:
    """The names of the splits stored in ``folder`` (sorted)."""
    return sorted(
        {SHARD_SUFFIX.sub("", name[:-4]) for name in os.listdir(folder) if name.endswith(".npz")}
    )


def class_names(path: str) -> tuple[str, ...]:
    """The ``class_names`` array of a file, or () where it has none."""
    with np.load(path, allow_pickle=False) as f:
        return tuple(str(n) for n in f["class_names"]) if "class_names" in f.files else ()


def split_files(folder: str, split: str) -> list[str]:
    """The files of one split: ``[<split>.npz]``, its shards in order, or [] if none.

    Raises:
      FileNotFoundError: shards missing, or of two sets (different totals).
    """
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


def read(files: list[str]) -> tuple[np.ndarray, np.ndarray, str]:
    """Concatenates the files of a split.

    Returns:
      images as stored (N, H, W, C), labels (N,) int32, and the origin: the files'
      ``source`` strings (once each, in order), else their paths.

    Raises:
      ValueError: a file that is not a readable .npz with ``image`` and ``label``.
    """
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
    return np.concatenate(images), np.concatenate(labels).astype(np.int32), source
