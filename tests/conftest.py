"""Strict JAX settings for the test suite: surface silent promotion and key misuse.

Rank promotion raises (a (B,) array never broadcasts against (B, 1) by accident),
dtype promotion is strict (no silent float64 or int -> float mixing), and a PRNG
key used twice raises (every random draw must come from its own split or fold_in).

Compiled programs go to a compilation cache that lives for this run only: a program
compiled again (each ``training.fit`` jits its step anew, so a resumed run, a second
trainer or a second test compiles the same step) is loaded from it instead. The cache
is keyed by the program, compiler options and flags, so it changes no result.

XLA compiles the suite's programs with two options that halve its compile time
(:data:`TEST_XLA_FLAGS`); tests/test_runtime_sharding.py computes the same programs
in a fresh process with the flags users get and checks that the results agree.
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

# One cache for the whole run, shared by pytest-xdist's workers and the subprocesses the
# tests start (JAX reads these variables at import): the process that starts the run
# makes it (and removes it at exit); its children inherit the variables.
if "REMIX_TESTS_XLA_CACHE" not in os.environ:
    os.environ["REMIX_TESTS_XLA_CACHE"] = tempfile.mkdtemp(prefix="remix-jax-tests-xla-")
    atexit.register(shutil.rmtree, os.environ["REMIX_TESTS_XLA_CACHE"], ignore_errors=True)
COMPILATION_CACHE = os.environ["REMIX_TESTS_XLA_CACHE"]
os.environ["JAX_COMPILATION_CACHE_DIR"] = COMPILATION_CACHE
os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0.2"
jax.config.update("jax_compilation_cache_dir", COMPILATION_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)

# Compiling takes ~77% of the suite's time (XLA's CPU compiler on many small programs;
# REMIX_TESTS_PROFILE below). XLA's older elemental emitters instead of its MLIR fusion
# emitters, and LLVM at -O1 instead of -O2, halve it (tests/test_defense.py serially:
# 51 s -> 24 s); the compiled programs compute the same functions, checked against the
# default flags by tests/test_runtime_sharding.py (defend, a classifier, CW, PGD with
# EOT, a training run), and they run at most a few times slower, which tiny models
# never notice. -O0 is not used: it miscompiles (the tfds end-to-end test's width-4
# toy classifier gives NaN from its second SGD step). Set REMIX_TESTS_XLA_FLAGS="" to
# test with users' flags.
TEST_XLA_FLAGS = os.environ.get(
    "REMIX_TESTS_XLA_FLAGS",
    "--xla_cpu_use_fusion_emitters=false --xla_backend_optimization_level=1",
)
if TEST_XLA_FLAGS and TEST_XLA_FLAGS not in os.environ.get("XLA_FLAGS", ""):
    # read by XLA when this process (and each subprocess a test starts) first computes
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The slowest test files (their seconds in a REMIX_TESTS_PROFILE run of the whole suite on
# a 2-core CPU) run first: pytest-xdist hands whole files to its workers in collection
# order (--dist loadfile, with --no-loadscope-reorder in pyproject's addopts: by default
# xdist re-sorts the files by their number of tests, which ran the one-test end-to-end
# files last), and starting the longest ones first keeps both cores busy to the end
# (longest-first scheduling: a long file picked up last would run alone). Only the
# order changes.
SLOWEST_FIRST = (
    "test_training.py",
    "test_attacks.py",
    "test_magnet.py",
    "test_runtime_sharding.py",
    "test_apegan.py",
    "test_eval_adaptive.py",
    "test_data_sources.py",
    "test_robustness.py",
    "test_defense.py",
    "test_new_dataset.py",
    "test_sweep.py",
    "test_bigger_images.py",
    "test_adaptive.py",
    "test_pretrained.py",
    "test_defensegan.py",
    "test_reliability_arguments.py",
    "test_models.py",
    "test_apgd.py",
    "test_own_classifier.py",
    "test_reliability_inputs.py",
    "test_readme.py",
    "test_detector.py",
    "test_visualize.py",
    "test_masking.py",
    "test_reliability_cli.py",
    "test_training_curves.py",
    "test_pgd.py",
    "test_tracing.py",
)


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOWEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: files keep
    # their own order


@pytest.fixture(autouse=True)
def fast_compiles(request):
    """Every test draws random bits laid out as before JAX 0.5 (other numbers from the
    same keys, drawn alike): XLA compiles a program that draws them 3-5x faster on a
    CPU (an autoencoder's init 6.5 s -> 1.9 s; the detector tests 70 -> 37 s of the
    suite's time). A test that reproduces a committed result made under JAX's default
    layout, or continues in this process a run that a subprocess (default layout)
    began, opts out with ``@pytest.mark.default_draws``."""
    if request.node.get_closest_marker("default_draws"):
        yield
        return
    with jax.threefry_partitionable(False):
        yield


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


# Opt-in profile of where the suite's time goes: REMIX_TESTS_PROFILE=<file> appends one
# JSON line per test (its duration and the seconds JAX spent tracing, lowering and
# compiling inside it) to <file>, to pick what to trim; off by default (no listener).
_PROFILE = os.environ.get("REMIX_TESTS_PROFILE")
_jax_seconds: dict = {}
if _PROFILE:
    import collections
    import json
    import time

    _jax_seconds = collections.defaultdict(float)

    def _count_jax_seconds(event, duration, **_):
        _jax_seconds[event.rsplit("/", 1)[-1]] += duration

    jax.monitoring.register_event_duration_secs_listener(_count_jax_seconds)

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_protocol(item, nextitem):
        _jax_seconds.clear()
        started = time.perf_counter()
        yield
        line = {"test": item.nodeid, "seconds": time.perf_counter() - started, **_jax_seconds}
        with open(_PROFILE, "a") as f:
            f.write(json.dumps(line) + "\n")
