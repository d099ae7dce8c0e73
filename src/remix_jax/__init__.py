"""remix-jax: REMIX (reform, randomly mask, inpaint) and its evaluation in JAX.

The public names below are imported on first use (PEP 562), so that the
command-line tools can import jax-free helpers such as :mod:`remix_jax.cli` and
answer ``--help`` without starting JAX.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS = {
    "RemixParams": "remix_jax.defense",
    "defend": "remix_jax.defense",
    "mask_inpaint": "remix_jax.defense",
    "batch_random_masks": "remix_jax.masking",
    "checked": "remix_jax.validation",
    "random_masks": "remix_jax.masking",
    "image_checks": "remix_jax.validation",
    "load_pretrained": "remix_jax.pretrained",
    "load_classifier_fn": "remix_jax.pretrained",
    "load_remix": "remix_jax.pretrained",
}
__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from remix_jax.defense import RemixParams as RemixParams
    from remix_jax.defense import defend as defend
    from remix_jax.defense import mask_inpaint as mask_inpaint
    from remix_jax.masking import batch_random_masks as batch_random_masks
    from remix_jax.masking import random_masks as random_masks
    from remix_jax.pretrained import load_classifier_fn as load_classifier_fn
    from remix_jax.pretrained import load_pretrained as load_pretrained
    from remix_jax.pretrained import load_remix as load_remix
    from remix_jax.validation import checked as checked
    from remix_jax.validation import image_checks as image_checks


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'remix_jax' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
