"""Finished pieces of a long scoring run on disk, so that a killed run resumes.

A :class:`ProgressFile` is a JSON file beside a run's output that stores its finished
pieces (e.g. one scored kappa) under an identity: everything the pieces depend on
(settings, images, keys, a fingerprint of the weights). A rerun with the same identity
reuses them; any other identity starts afresh. The file is rewritten atomically after
each piece and removed once the run has written its result.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any


def fingerprint(*trees: Any) -> str:
    """A short hash of the arrays in pytrees (weights, thresholds): equal weights, equal
    fingerprint."""
    import jax
    import numpy as np

    digest = hashlib.sha1()
    for tree in trees:
        for leaf in jax.tree.leaves(tree):
            array = np.asarray(leaf)
            digest.update(str((array.shape, array.dtype.str)).encode())
            digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()[:16]


class ProgressFile:
    """Finished pieces of one run, keyed by strings.

    Args:
      path: the file (e.g. ``<out>.progress.json``).
      identity: JSON-able description of everything the pieces depend on.
    """

    def __init__(self, path: str, identity: dict):
        self.path = path
        self.identity = json.loads(json.dumps(identity))
        self.pieces: dict[str, Any] = {}
        try:
            with open(path) as f:
                stored = json.load(f)
            if stored.get("identity") == self.identity:
                self.pieces = stored.get("pieces", {})
        except (OSError, ValueError, AttributeError):
            pass  # absent, unreadable or another run's: start afresh

    def get(self, key: str) -> Any:
        """A finished piece, or None."""
        return self.pieces.get(key)

    def put(self, key: str, value: Any) -> None:
        """Stores a finished piece (atomically)."""
        self.pieces[key] = json.loads(json.dumps(value))
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"identity": self.identity, "pieces": self.pieces}, f)
        os.replace(tmp, self.path)

    def finish(self) -> None:
        """Removes the file: the run's result is written."""
        if os.path.exists(self.path):
            os.remove(self.path)
