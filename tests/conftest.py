"""Strict JAX settings for the test suite: surface silent promotion and key misuse.

Rank promotion raises (a (B,) array never broadcasts against (B, 1) by accident),
dtype promotion is strict (no silent float64 or int -> float mixing), and a PRNG
key used twice raises (every random draw must come from its own split or fold_in).
"""

import os

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_debug_key_reuse", True)
jax.config.update("jax_enable_checks", False)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def shared_data_dir() -> str | None:
    """The data folder the slow-truth tests read, or None if absent."""
    candidate = os.environ.get("REMIX_DATA_DIR") or os.path.join(REPO, "..", "shared", "data")
    return candidate if os.path.isdir(candidate) else None


@pytest.fixture(scope="session")
def data_dir() -> str:
    folder = shared_data_dir()
    if folder is None:
        pytest.skip("no data folder: set REMIX_DATA_DIR or provide ../shared/data")
    return folder
