"""What the reliability tests share: tiny models, image cases and the either/or rule.

Every case is a valid input (the call must return a correct result) or a defective
one with the error it must raise: a ValueError / TypeError whose message names the
argument and says what it got. Shapes come from a small set so that the jitted
functions compile once per shape and the property tests stay fast.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context

from remix_jax import RemixParams
from remix_jax.attacks import cw_l2, ead, pgd
from remix_jax.models import AutoencoderConfig, init_autoencoder


def reliable(examples: int = 15):
    """Hypothesis settings: few examples, no deadline (a first call compiles), the same
    examples every run (no flaky CI) and no example database written into the checkout."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


RELIABLE = reliable()

SIZES = ((4, 4), (8, 8))  # even: the tiny inpainter has a stride-2 layer
# (batch size, dtype) pairs that valid batches are drawn from: every batch size (0, 1
# and more) and every float dtype appears, in few pairs, because every new pair
# compiles anew (jit) or dispatches new operations (eager); float64 arrives as float32
PROFILES = ((0, np.float32), (1, np.float16), (3, jnp.bfloat16), (3, np.float64))
FLOAT_DTYPES = (np.float32, np.float16, jnp.bfloat16, np.float64)


def random_weights(config: AutoencoderConfig, seed: int):
    """Random weights of the config's autoencoder for 8x8 images.

    Shapes from ``jax.eval_shape`` (a trace, no compilation): an eager Flax init
    compiles every layer's initialiser and took ~9 s on the loaded 2-core CPU.
    """
    shapes = jax.eval_shape(lambda: init_autoencoder(jax.random.key(0), config, (8, 8)))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(rng.normal(0, 0.3, s.shape), s.dtype), shapes)


@functools.cache
def tiny_params(channels: int = 1) -> RemixParams:
    """A random REMIX defense of 4-feature networks, one stride-2 layer in the inpainter."""
    cfg = AutoencoderConfig(channels=channels, features=(4, 4), strides=(1, 2), mask_channel=True)
    ref_cfg = AutoencoderConfig(channels=channels, features=(4,), strides=(1,))
    return RemixParams(
        inpainter=random_weights(cfg, 0),
        reformer=random_weights(ref_cfg, 1),
        inpainter_config=cfg,
        reformer_config=ref_cfg,
    )


def linear_logits(x):
    """A fixed 3-class linear classifier of any image size, computed in float32."""
    flat = x.reshape(x.shape[0], math.prod(x.shape[1:])).astype(jnp.float32)  # B may be 0
    w = jnp.sin(jnp.arange(flat.shape[1] * 3, dtype=jnp.float32)).reshape(-1, 3) * 3.0
    return flat @ w


# the attacks' static settings in every reliability test: one compilation per batch shape
ATTACK_SETTINGS = dict(max_iterations=4, binary_search_steps=2)
PGD_SETTINGS = dict(epsilon=0.3, steps=3)


def run_attack(name: str, x, labels, **options):
    """CW-L2, EAD or PGD (a fixed key) on ``linear_logits`` with the shared settings."""
    if name == "pgd":
        options = {**PGD_SETTINGS, **options}
        return pgd(linear_logits, x, labels, key=jax.random.key(0), **options)
    attack = {"cw_l2": cw_l2, "ead": ead}[name]
    return attack(linear_logits, x, labels, **{**ATTACK_SETTINGS, **options})


@dataclasses.dataclass(frozen=True)
class Case:
    """An input and what must come of it: ``error`` None for a correct result."""

    value: object
    error: type[Exception] | None = None
    pattern: str = ""
    label: str = "valid"


def either(case: Case, call, check):
    """The issue's rule: ``check(call(case.value))`` holds, or the named error is raised."""
    if currently_in_test_context():  # --hypothesis-show-statistics counts each kind
        event(case.label)
    if case.error is None:
        check(call(case.value))
        return
    with pytest.raises(case.error) as info:
        call(case.value)
    assert re.search(case.pattern, str(info.value)), (case.label, str(info.value))
    assert "got" in str(info.value), f"{case.label}: the message says no actual value"


@st.composite
def valid_images(draw, channels=(1,), sizes=SIZES, profiles=PROFILES):
    """(B, H, W, C) float images in [0, 1], some at exactly 0 or 1, (B, dtype) from
    ``profiles``."""
    (batch, dtype), hw = draw(st.sampled_from(profiles)), draw(st.sampled_from(sizes))
    c = draw(st.sampled_from(channels))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.uniform(size=(batch, *hw, c))
    extremes = draw(st.sampled_from(["none", "zeros", "ones", "some"]))
    if extremes == "some":
        x[rng.uniform(size=x.shape) < 0.3] = rng.integers(0, 2)
    elif extremes != "none":
        x[:] = float(extremes == "ones")
    return x.astype(dtype)


# the defects a batch of images can have: of its values, of its shape or dtype, and
# the wrong channel count (only for functions that know the channels)
VALUE_DEFECTS = ("nan", "inf", "range", "0..255")
SHAPE_DEFECTS = ("int", "rank", "non-array")
DEFECTS = (*VALUE_DEFECTS, *SHAPE_DEFECTS, "channels")


@st.composite
def defective_images(draw, kind, name="x", channels=1, batches=(1, 3), sizes=SIZES):
    """A batch with the defect ``kind`` and the error that must name ``name``."""
    profiles = tuple((b, np.float32) for b in batches)
    x = draw(valid_images(channels=(channels,), sizes=sizes, profiles=profiles))
    index = tuple(draw(st.integers(0, s - 1)) for s in x.shape)
    if kind in ("nan", "inf"):
        x[index] = draw(st.sampled_from([np.nan] if kind == "nan" else [np.inf, -np.inf]))
        # the message names the first non-finite value's index: here the only one
        return Case(
            x, ValueError, rf"{name} must be finite .*at index {re.escape(str(index))}", kind
        )
    if kind == "range":
        x[index] = draw(st.floats(1.01, 1e3) | st.floats(-1e3, -0.01))
        return Case(x, ValueError, rf"{name} must lie in \[0.0, 1.0\], got values in", kind)
    if kind == "0..255":
        x = x * 255
        x[index] = 255.0
        return Case(x, ValueError, rf"{name} must lie in \[0.0, 1.0\], got values in", kind)
    if kind == "int":
        dtype = draw(st.sampled_from([np.uint8, np.int32, np.bool_]))
        return Case((x * 255).astype(dtype), TypeError, rf"{name} must be a float array", kind)
    if kind == "rank":
        bad = draw(st.sampled_from([x[0], x[None], x[..., 0], x.reshape(-1)]))
        return Case(bad, ValueError, rf"{name} must have shape \(B, H, W, C\), got shape", kind)
    if kind == "non-array":
        bad = draw(st.sampled_from([x.tolist(), None, 0.5]))
        return Case(bad, TypeError, rf"{name} must be an array of shape \(B, H, W, C\)", kind)
    # "channels": three for a one-channel function, one for any other
    wrong = np.concatenate([x] * 3, -1) if channels == 1 else x[..., :1]
    return Case(wrong, ValueError, rf"{name} must have {channels} channel", kind)


def image_case(kind, channels=1, sizes=SIZES, profiles=PROFILES):
    """Cases of valid images (``kind`` "valid") or of batches with the defect ``kind``.

    The tests take ``kind`` as a pytest parameter, so every kind runs whatever
    hypothesis draws; defective batches raise before any compilation, so they cost
    nothing and take the non-empty batch sizes of ``profiles``.
    """
    if kind == "valid":
        return valid_images(channels=(channels,), sizes=sizes, profiles=profiles).map(Case)
    nonempty = tuple(sorted({b for b, _ in profiles if b})) or (1,)
    return defective_images(kind, channels=channels, batches=nonempty, sizes=sizes)


def batch_of(x) -> int:
    """B of an image batch, or 1 for an input that has none (it fails before use)."""
    return x.shape[0] if getattr(x, "ndim", 0) >= 1 else 1


# key kinds: valid ones (typed keys of two implementations) and what users pass by mistake
VALID_KEYS = {
    "threefry": lambda seed: jax.random.key(seed),
    "rbg": lambda seed: jax.random.key(seed, impl="rbg"),
}
BAD_KEYS = {
    "int": (lambda seed: seed, TypeError),
    "numpy uint32": (lambda seed: np.uint32(seed), TypeError),
    "raw PRNGKey": (lambda seed: jax.random.PRNGKey(seed), TypeError),
    "float array": (lambda seed: jnp.zeros(2), TypeError),
    "None": (lambda seed: None, TypeError),
    "split keys": (lambda seed: jax.random.split(jax.random.key(seed), 2), ValueError),
}


def key_case(kind: str, seed: int, name: str = "key") -> Case:
    """A key of ``kind`` (:data:`VALID_KEYS` or :data:`BAD_KEYS`) and what must come of it."""
    if kind in VALID_KEYS:
        return Case(VALID_KEYS[kind](seed), label=kind)
    make, error = BAD_KEYS[kind]
    return Case(make(seed), error, rf"{name} must be a (typed PRNG key|single key)", kind)
