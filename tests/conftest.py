"""Strict JAX settings for the test suite: surface silent rank promotion and key misuse."""

import os

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")
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
