"""Strict JAX settings for the test suite: surface silent promotion and key misuse.

Rank promotion raises (a (B,) array never broadcasts against (B, 1) by accident),
dtype promotion is strict (no silent float64 or int -> float mixing), and a PRNG
key used twice raises (every random draw must come from its own split or fold_in).

Compiled programs go to a compilation cache that lives for this run only: a program
compiled again (each ``training.fit`` jits its step anew, so a resumed run, a second
trainer or a second test compiles the same step) is loaded from it instead. The cache
is keyed by the program, compiler options and flags, so it changes no result.
"""

import atexit
import os
import shutil
import tempfile

import jax
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_numpy_dtype_promotion", "strict")
jax.config.update("jax_debug_key_reuse", True)
jax.config.update("jax_enable_checks", False)

COMPILATION_CACHE = tempfile.mkdtemp(prefix="remix-jax-tests-xla-")
atexit.register(shutil.rmtree, COMPILATION_CACHE, ignore_errors=True)
jax.config.update("jax_compilation_cache_dir", COMPILATION_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)

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
