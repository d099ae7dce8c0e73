"""Silently wrong answers (issue 35): every public function, given images of random
shapes, float dtypes, ranges, NaN placements and batch sizes 0, 1 and 3, either returns
a correct result or raises a ValueError / TypeError naming the argument and what it got.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from reliability import (
    DEFECTS,
    FLOAT_DTYPES,
    PGD_SETTINGS,
    PROFILES,
    SHAPE_DEFECTS,
    VALUE_DEFECTS,
    Case,
    batch_of,
    either,
    image_case,
    linear_logits,
    reliable,
    run_attack,
    tiny_params,
)

from remix_jax import defend, detector, evaluation, keys, mask_inpaint
from remix_jax.data import to_float
from remix_jax.defense import autoencoder_fn, combine_copies, inpaint_copies

SEEDS = st.integers(0, 2**31 - 1)
# every new shape compiles (jitted networks) or dispatches new operations (the eager
# masking): one spatial size per function keeps that to the batch sizes 0, 1 and 3
NET = ((8, 8),)
SMALL = ((4, 4),)
# (n, per_channel) of the eager masking tests, drawn together for the same reason
MASKINGS = ((1, False), (2, False), (3, True))


def as_float32(x) -> np.ndarray:
    """The batch as the library computes it: in float32, whatever its float dtype."""
    return np.asarray(x, np.float32)


def logits_of(x) -> np.ndarray:
    return np.asarray(linear_logits(jnp.asarray(x, jnp.float32)))


def assert_top_class(labels, x):
    """Each label is a class of largest logit, up to float rounding between batch sizes."""
    logits = logits_of(x)
    chosen = np.take_along_axis(logits, np.asarray(labels)[:, None], axis=1)[:, 0]
    assert np.all(chosen >= logits.max(axis=1, initial=-np.inf) - 1e-4)


def assert_images(out, like):
    """(B, H, W, C) float32 images of ``like``'s shape, finite and in [0, 1]."""
    out = np.asarray(out)
    assert out.shape == np.shape(like) and out.dtype == np.float32
    assert np.all(np.isfinite(out)) and np.all((out >= 0) & (out <= 1))


@pytest.mark.parametrize("kind", ["valid", *DEFECTS])
@reliable(8)
@given(data=st.data(), seed=SEEDS)
def test_defend(kind, data, seed):
    case = data.draw(image_case(kind, sizes=NET))
    params, key = tiny_params(), jax.random.key(seed)

    def check(out):
        assert_images(out, case.value)
        # another float dtype is the same batch in float32: the same output
        same = defend(params, key, jnp.asarray(as_float32(case.value)))
        np.testing.assert_array_equal(out, same)

    either(case, lambda x: defend(params, jax.random.clone(key), x), check)


@pytest.mark.parametrize("loop", ["unroll", "scan"])
@pytest.mark.parametrize("dtype", [np.float16, jnp.bfloat16])
def test_defend_runs_other_float_dtypes_in_either_loop(loop, dtype):
    # without a reformer the scan carries the input itself: float32 in, float32 out
    params = tiny_params().without_reformer()
    x = np.random.default_rng(0).uniform(size=(1, 8, 8, 1))
    key = jax.random.key(0)
    out = defend(params, jax.random.clone(key), x.astype(dtype), loop=loop)
    assert_images(out, x)
    np.testing.assert_array_equal(
        out, defend(params, key, x.astype(dtype).astype(np.float32), loop=loop)
    )


@pytest.mark.parametrize("dtype", [np.float16, jnp.bfloat16])
def test_mask_inpaint_with_the_network_takes_other_float_dtypes(dtype):
    # the network computes in its weights' float32: the same masked pixels, the same output
    params = tiny_params()
    inpaint = autoencoder_fn(params.inpainter_config, params.inpainter)
    x = np.random.default_rng(1).uniform(size=(1, 4, 4, 1)).astype(dtype)
    key = jax.random.key(0)
    out = mask_inpaint(inpaint, jax.random.clone(key), x, 2)
    assert out.dtype == jnp.float32
    np.testing.assert_array_equal(out, mask_inpaint(inpaint, key, x.astype(np.float32), 2))


@pytest.mark.parametrize("kind", ["valid", *VALUE_DEFECTS, *SHAPE_DEFECTS])
@reliable(8)
@given(data=st.data(), masking=st.sampled_from(MASKINGS[1:]), seed=SEEDS)
def test_mask_inpaint_with_an_oracle_inpainter_returns_its_input(kind, data, masking, seed):
    case = data.draw(image_case(kind, channels=3, sizes=SMALL))
    n, per_channel = masking

    # an inpainter that knows the image: every hidden pixel comes back exactly
    def call(x):
        oracle = lambda masked, masks: jnp.asarray(x, masked.dtype)  # noqa: E731
        return mask_inpaint(oracle, jax.random.key(seed), x, n, per_channel=per_channel)

    def check(out):
        expected = jnp.asarray(case.value)  # float64 becomes float32, the rest stay
        assert out.dtype == expected.dtype
        np.testing.assert_array_equal(out, expected)

    either(case, call, check)


@pytest.mark.parametrize("kind", ["valid", *SHAPE_DEFECTS])
@reliable(8)
@given(data=st.data(), masking=st.sampled_from(MASKINGS), seed=SEEDS)
def test_inpaint_copies_and_combine_copies(kind, data, masking, seed):
    case = data.draw(image_case(kind, channels=3, sizes=SMALL))
    n, per_channel = masking

    # the shape-only primitives (free under jit): NaN and range are the callers' checks
    def call(x):
        keys = jax.random.split(jax.random.key(seed), batch_of(x))
        oracle = lambda masked, masks: jnp.asarray(x, masked.dtype)  # noqa: E731
        return inpaint_copies(oracle, keys, x, n, per_channel)

    def check(copies):
        restored, masks = copies
        b, h, w, c = np.shape(case.value)
        assert restored.shape == (n, b, h, w, c)
        assert masks.shape == (n, b, h, w, c if per_channel else 1)
        hidden = 1 - np.asarray(masks, np.float32)
        assert set(np.unique(hidden)) <= {0.0, 1.0}
        np.testing.assert_array_equal(hidden.sum(axis=0), 1.0)  # each hidden exactly once
        np.testing.assert_array_equal(combine_copies(restored, masks), jnp.asarray(case.value))

    either(case, call, check)


# valid batches are scored under jit, compiled once per shape: run eagerly, every
# operation of the networks is compiled for every new shape (~4x slower here); the
# checks are the defense's (test_defend runs them eagerly on valid batches)
_scores = jax.jit(detector.detector_scores, static_argnums=1)


@pytest.mark.parametrize("kind", ["valid", *DEFECTS])
@reliable(8)
@given(data=st.data(), seed=SEEDS)
def test_detector_scores(kind, data, seed):
    case = data.draw(image_case(kind, sizes=NET, profiles=PROFILES[:3]))  # float64: float32

    def call(x):
        score = detector.detector_scores if case.error else _scores
        return score(tiny_params(), linear_logits, jax.random.key(seed), x)

    def check(scores):
        assert sorted(scores) == sorted(detector.SCORES)
        for name, values in scores.items():
            values = np.asarray(values)
            assert values.shape == (len(case.value),) and values.dtype == np.float32, name
            assert np.all(np.isfinite(values)) and np.all(values >= 0), name
            if name != "inpaint-L2":  # a Jensen-Shannon divergence, in nats
                assert np.all(values <= math.log(2) + 1e-6), name

    either(case, call, check)


# predict takes any finite range (a classifier's inputs are its own business): a batch
# out of [0, 1] is a valid one for it
@pytest.mark.parametrize("kind", ["valid", "nan", "inf", "range", "0..255", *SHAPE_DEFECTS])
@reliable(8)
@given(data=st.data(), size=st.integers(1, 4))
def test_predict(kind, data, size):
    case = data.draw(image_case(kind, channels=3, sizes=SMALL))
    if kind in ("range", "0..255"):
        case = Case(case.value, label=kind)

    def check(labels):
        assert labels.shape == (len(case.value),) and labels.dtype == np.int32
        assert_top_class(labels, case.value)

    either(case, lambda x: evaluation.predict(linear_logits, x, batch_size=size), check)


@pytest.mark.parametrize("kind", ["valid", *DEFECTS])
@reliable(8)
@given(data=st.data(), seed=SEEDS, size=st.sampled_from([1, 1000]))
def test_remix_predict(kind, data, seed, size):
    case = data.draw(image_case(kind, sizes=NET))
    params, key = tiny_params(), jax.random.key(seed)

    def check(labels):
        x = case.value
        assert labels.shape == (len(x),) and labels.dtype == np.int32
        # image i is defended under its own key fold_in(key, i), then classified
        for start in range(0, len(x), size):
            batch = x[start : start + size]
            defended = defend(params, keys.image_keys(key, start, len(batch)), batch)
            assert_top_class(labels[start : start + size], defended)

    call = lambda x: evaluation.remix_predict(  # noqa: E731
        linear_logits, params, jax.random.clone(key), x, batch_size=size
    )
    either(case, call, check)


# the batch sizes each attack compiles for (the attacks cast any float dtype to
# float32 first); batch 2 is the one test_reliability_arguments uses too
ATTACK_BATCHES = {"cw_l2": (0, 1, 2), "ead": (0, 2), "pgd": (0, 2)}


@pytest.mark.parametrize("kind", ["valid", *VALUE_DEFECTS, *SHAPE_DEFECTS])
@pytest.mark.parametrize("attack", sorted(ATTACK_BATCHES))
@reliable(8)
@given(data=st.data())
def test_attacks(attack, kind, data):
    profiles = tuple((b, dtype) for b in ATTACK_BATCHES[attack] for dtype in FLOAT_DTYPES)
    case = data.draw(image_case(kind, sizes=((4, 4),), profiles=profiles))
    if case.error is None and not len(case.value):
        # an attack on nothing is a caller's mistake (it used to divide by zero)
        case = Case(case.value, ValueError, r"x must hold at least one image, got an empty", "0")
    labels = np.zeros(batch_of(case.value), np.int32)
    if case.error is None:
        labels = np.argmax(logits_of(case.value), axis=1).astype(np.int32)

    def check(result):
        x = as_float32(case.value)
        adv = np.asarray(result.adversarial)
        assert_images(adv, x)
        success = np.asarray(result.success)
        logits = logits_of(adv)
        true = np.take_along_axis(logits, labels[:, None], axis=1)[:, 0]
        others = np.where(np.arange(3) == labels[:, None], -np.inf, logits).max(axis=1)
        # a success is misclassified (its margin may sit at 0, up to rounding)
        assert np.all((others - true)[success] >= -1e-4)
        flat = (adv - x).reshape(len(x), -1)
        np.testing.assert_allclose(result.l2, np.linalg.norm(flat, axis=1), rtol=1e-5, atol=1e-6)
        if attack == "pgd":
            assert np.all(np.abs(flat) <= PGD_SETTINGS["epsilon"] + 1e-6)
        else:  # CW and EAD return the original where they failed
            np.testing.assert_array_equal(adv[~success], x[~success])

    # a large first c: the few iterations find examples, so both branches are checked
    options = {} if attack == "pgd" else {"initial_const": 10.0}
    either(case, lambda x: run_attack(attack, x, labels, **options), check)


@reliable(25)
@given(
    images=hnp.arrays(
        st.sampled_from([np.uint8, np.int8, np.int32, np.float32, np.bool_]),
        hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=3),
    )
)
def test_to_float(images):
    case = Case(images)
    if images.dtype != np.uint8:
        case = Case(images, TypeError, r"images must be uint8, got", str(images.dtype))

    def check(out):
        assert out.shape == images.shape and out.dtype == np.float32
        np.testing.assert_array_equal(out, images.astype(np.float32) / np.float32(255))
        assert np.all((out >= 0) & (out <= 1))

    either(case, to_float, check)
