"""Shared bench plumbing: the shipped models and images, atomic result files."""

from __future__ import annotations

import json
import os

from remix_jax.timing import timed  # noqa: F401  (the benches import the timer from here)


def setup(dataset: str, num_examples: int, data_dir: str | None = None):
    """A dataset's shipped models and the first N test images its classifier gets right."""
    from remix_jax import data, evaluation
    from remix_jax.pretrained import load_pretrained

    pre = load_pretrained(dataset)
    images, labels = data.load(dataset, "test", data_dir)
    x = data.to_float(images[: 2 * num_examples + 100])
    right = evaluation.predict(pre.logits_fn, x) == labels[: len(x)]
    return pre, x[right][:num_examples], labels[: len(x)][right][:num_examples]


def write_json(path: str, payload: dict) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(payload, f, indent=2)
        f.write("\n")
    os.replace(path + ".tmp", path)
