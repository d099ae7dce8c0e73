"""Misleading errors (issue 35): every argument besides the images, given a value of the
wrong kind, raises a ValueError / TypeError that names it, says what was expected and
what it got, instead of a JAX-internal or NumPy error (or a silently wrong answer).

Keys of every kind for every random function, real and integer settings, labels, the
shapes a ``logits_fn`` or ``inpaint_fn`` returns, mask shapes and image sizes.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from reliability import (
    BAD_KEYS,
    PGD_SETTINGS,
    VALID_KEYS,
    Case,
    either,
    key_case,
    linear_logits,
    reliable,
    run_attack,
    tiny_params,
)

from remix_jax import batch_random_masks, defend, detector, evaluation, mask_inpaint, random_masks
from remix_jax.attacks import apgd, cw_l2, ead, pgd
from remix_jax.attacks.adaptive import defended_logits
from remix_jax.defense import autoencoder_fn, combine_copies, inpaint_copies

# the shapes test_reliability_inputs compiles for too (the same session reuses them)
X4 = np.full((2, 4, 4, 1), 0.5, np.float32)
X8 = np.full((3, 8, 8, 1), 0.5, np.float32)
LABELS = np.array([0, 1], np.int32)
SEEDS = st.integers(0, 2**31 - 1)


def identity_inpainter(masked, masks):
    return masked


def copies_for(x, n=2):
    """``n`` inpainted copies of ``x`` (the identity inpainter) and their masks."""
    keys = jax.random.split(jax.random.key(0), len(x))
    return inpaint_copies(identity_inpainter, keys, x, n)


# every public function that draws random numbers, called with ``key``
RANDOM_FUNCTIONS = {
    "defend": lambda key: defend(tiny_params(), key, X8),
    "random_masks": lambda key: random_masks(key, (4, 4), 2),
    "batch_random_masks": lambda key: batch_random_masks(key, 2, (4, 4), 2),
    "mask_inpaint": lambda key: mask_inpaint(identity_inpainter, key, X4, 2),
    "remix_predict": lambda key: evaluation.remix_predict(linear_logits, tiny_params(), key, X8),
    "detector_scores": lambda key: detector.detector_scores(tiny_params(), linear_logits, key, X8),
    "inpainted_copies": lambda key: detector.inpainted_copies(tiny_params(), key, X8),
    "mask_inpaint_copies": lambda key: detector.mask_inpaint_copies(identity_inpainter, key, X4, 2),
    "batched_scores": lambda key: detector.batched_scores(tiny_params(), linear_logits, key, X8),
    "pgd": lambda key: pgd(linear_logits, X4, LABELS, key=key, epsilon=0.1, steps=1),
    "cw_l2": lambda key: cw_l2(lambda x, k: linear_logits(x), X4, LABELS, key=key),
    "ead": lambda key: ead(lambda x, k: linear_logits(x), X4, LABELS, key=key),
}
# the ones cheap enough to run on every valid key (one compilation per key kind)
CHEAP_RANDOM = ("defend", "random_masks", "batch_random_masks", "mask_inpaint", "remix_predict")


@pytest.mark.parametrize("kind", [*VALID_KEYS, *BAD_KEYS])
@pytest.mark.parametrize("name", CHEAP_RANDOM)
@reliable(2)
@given(seed=SEEDS)
def test_random_functions_take_typed_keys_of_any_kind(name, kind, seed):
    def check(out):
        assert np.all(np.isfinite(np.asarray(out, np.float32)))

    either(key_case(kind, seed), RANDOM_FUNCTIONS[name], check)


@pytest.mark.parametrize("kind", list(BAD_KEYS))
@pytest.mark.parametrize("name", sorted(RANDOM_FUNCTIONS))
@reliable(2)
@given(seed=SEEDS)
def test_every_random_function_names_a_bad_key(name, kind, seed):
    # valid keys: the test above, for the functions cheap enough to run
    if kind == "None" and name in ("cw_l2", "ead"):
        return  # key=None: a deterministic logits_fn, no mistake
    either(key_case(kind, seed), RANDOM_FUNCTIONS[name], lambda out: None)


@pytest.mark.parametrize("count", [1, 2, 3])
@pytest.mark.parametrize("kind", ["split", "one key", "raw", "ints"])
def test_inpaint_copies_names_bad_keys(count, kind):
    keys = {
        "split": jax.random.split(jax.random.key(0), count),
        "one key": jax.random.key(0),
        "raw": jax.random.split(jax.random.PRNGKey(0), count),
        "ints": np.arange(count),
    }[kind]
    case = Case(keys, label=kind)
    if kind != "split" or count != len(X4):
        error = ValueError if kind in ("split", "one key") else TypeError
        case = Case(keys, error, r"keys must (be typed PRNG keys|have shape \(2,\))", kind)

    def check(copies):
        assert copies[0].shape == (2, *X4.shape)

    either(case, lambda k: inpaint_copies(identity_inpainter, k, X4, 2), check)


# (function, argument) -> the bound of a real setting: ("low", v) for >= v, ("above", v) for > v
REAL_SETTINGS = {
    ("cw_l2", "confidence"): ("low", 0.0),
    ("cw_l2", "learning_rate"): ("above", 0.0),
    ("ead", "initial_const"): ("above", 0.0),
    ("ead", "beta"): ("low", 0.0),
    ("pgd", "epsilon"): ("above", 0.0),
    ("pgd", "step_size"): ("above", 0.0),
    ("scores_of_copies", "temperature"): ("above", 0.0),
}
NOT_REAL = [None, "1", True, 1 + 2j, np.array([1.0, 2.0]), [0.5]]


def call_with_setting(function, argument, value):
    if function != "scores_of_copies":
        return run_attack(function, X4, LABELS, **{argument: value})
    copies, masks = copies_for(X4)
    return detector.scores_of_copies(linear_logits, X4, copies, masks, **{argument: value})


def real_values(kind, bound, limit):
    """Values of a real setting of ``kind``, for a setting >= limit or > limit (``bound``)."""
    if kind == "not real":
        return st.sampled_from(NOT_REAL)
    if kind == "not finite":
        return st.sampled_from([np.nan, np.inf, -np.inf, np.float32(np.nan)])
    small = st.floats(max_value=limit, exclude_max=bound == "low", width=32, allow_nan=False)
    if kind == "too small":
        return small.filter(np.isfinite) | st.sampled_from([np.float32(limit - 1), -1])
    valid = st.floats(min_value=limit, exclude_min=bound == "above", width=32, allow_nan=False)
    numpy_scalars = [np.float64(limit + 0.25), jnp.float32(limit + 0.5), np.int64(limit + 1)]
    return valid.filter(np.isfinite) | st.integers(1, 3) | st.sampled_from(numpy_scalars)


REAL_ERRORS = {
    "not real": (TypeError, "must be a real number, got"),
    "not finite": (ValueError, "must be finite, got"),
    "too small": (ValueError, "must be >? ?=? ?0.0, got"),
}


@pytest.mark.parametrize("kind", ["valid", *REAL_ERRORS])
@pytest.mark.parametrize("setting", sorted(REAL_SETTINGS))
@reliable(4)
@given(data=st.data())
def test_real_settings_name_a_bad_value(setting, kind, data):
    function, argument = setting
    value = data.draw(real_values(kind, *REAL_SETTINGS[setting]))
    case = Case(value, label=kind)
    if kind in REAL_ERRORS and not (argument == "step_size" and value is None):  # the default
        error, pattern = REAL_ERRORS[kind]
        case = Case(value, error, f"{argument} {pattern}", kind)

    def check(result):
        leaves = jax.tree.leaves(result)
        assert leaves and all(not np.any(np.isnan(np.asarray(v, np.float32))) for v in leaves)

    either(case, lambda v: call_with_setting(function, argument, v), check)


# (function, argument) -> (low, high) of an integer setting; None: no upper bound
INT_SETTINGS = {
    ("cw_l2", "binary_search_steps"): (1, 100),
    ("ead", "max_iterations"): (1, 10**6),
    ("pgd", "steps"): (1, 10**6),
    ("defend", "iterations"): (0, 1000),
    ("defended_logits", "samples"): (1, 1000),
    ("apgd", "restarts"): (1, 1000),
    ("defend", "chunk"): (1, None),
    ("mask_inpaint", "n"): (2, 16),
    ("random_masks", "n"): (1, 16),
    ("batch_random_masks", "batch"): (0, None),
    ("predict", "batch_size"): (1, None),
    ("remix_predict", "batch_size"): (1, None),
    ("batched_scores", "batch_size"): (1, None),
}
NOT_INTS = [2.0, 1.5, True, None, "2", np.float32(2.0)]


def call_with_int(function, argument, value):
    key = jax.random.key(0)
    calls = {
        "cw_l2": lambda: cw_l2(linear_logits, X4, LABELS, **{argument: value}),
        "ead": lambda: ead(linear_logits, X4, LABELS, **{argument: value}),
        "pgd": lambda: pgd(linear_logits, X4, LABELS, key=key, epsilon=0.1, steps=value),
        "defend": lambda: defend(tiny_params(), key, X8, **{argument: value}),
        "defended_logits": lambda: defended_logits(linear_logits, tiny_params(), samples=value),
        "apgd": lambda: apgd(linear_logits, X4, LABELS, key=key, epsilon=0.1, restarts=value),
        "mask_inpaint": lambda: mask_inpaint(identity_inpainter, key, X4, value),
        "random_masks": lambda: random_masks(key, (4, 4), value),
        "batch_random_masks": lambda: batch_random_masks(key, value, (4, 4), 2),
        "predict": lambda: evaluation.predict(linear_logits, X4, batch_size=value),
        "remix_predict": lambda: evaluation.remix_predict(
            linear_logits, tiny_params(), key, X8, batch_size=value
        ),
        "batched_scores": lambda: detector.batched_scores(
            tiny_params(), linear_logits, key, X8, batch_size=value
        ),
    }
    return calls[function]()


@pytest.mark.parametrize("kind", ["not int", "out of range"])
@pytest.mark.parametrize("setting", sorted(INT_SETTINGS))
@reliable(4)
@given(data=st.data())
def test_integer_settings_name_a_bad_value(setting, kind, data):
    # valid values run in the other tests; each new one here would compile anew
    function, argument = setting
    low, high = INT_SETTINGS[setting]
    if kind == "not int":
        value = data.draw(st.sampled_from(NOT_INTS))
        if function == "defend" and value is None:
            return  # chunk=None: the whole batch in one pass; iterations=None: params'
        case = Case(value, TypeError, rf"{argument} must be an int, got", kind)
    else:
        too_big = st.nothing() if high is None else st.integers(high + 1, high + 10**9)
        value = data.draw(st.integers(low - 10**6, low - 1) | too_big)
        case = Case(value, ValueError, rf"{argument} must be .*, got {value}", kind)
    either(case, lambda v: call_with_int(function, argument, v), lambda out: None)


@pytest.mark.parametrize(
    "kind", ["valid", "int8", "uint8", "int64", "float", "long", "2-d", "list"]
)
@pytest.mark.parametrize("attack", ["cw_l2", "ead", "pgd"])
@reliable(4)
@given(label=st.integers(-2, 4))
def test_attacks_name_bad_labels(attack, kind, label):
    labels = {
        "valid": np.array([label, 1]),
        "int8": np.array([label, 1], np.int8),
        "uint8": np.array([abs(label), 1], np.uint8),
        "int64": np.array([label, 1], np.int64),
        "float": np.array([label, 1], np.float32),
        "long": np.array([label, 1, 2]),
        "2-d": np.array([[label], [1]]),
        "list": [label, 1],
    }[kind]
    if kind in ("long", "2-d", "list"):
        case = Case(labels, ValueError, r"labels must have shape \(2,\), got", kind)
    elif kind == "float":
        case = Case(labels, TypeError, r"labels must be integers, got dtype float32", kind)
    elif not 0 <= labels[0] < 3:
        case = Case(labels, ValueError, r"labels must be in \[0, 3\), got values in", kind)
    else:
        case = Case(labels, label=kind)

    def check(result):
        assert result.adversarial.shape == X4.shape and result.success.shape == (2,)

    either(case, lambda y: run_attack(attack, X4, y), check)


# what a classifier of the wrong kind returns: (B,), (B, 1), (B, K, 1), (1, K), (B * K,)
BAD_LOGITS = {
    "(B,)": lambda logits: logits[:, 0],
    "(B, 1)": lambda logits: logits[:, :1],
    "(B, K, 1)": lambda logits: logits[..., None],
    "(1, K)": lambda logits: logits[:1],
    "(B * K,)": lambda logits: logits.reshape(-1),
}


def call_with_logits(function, logits_fn):
    key = jax.random.key(0)
    if function == "cw_l2":
        return cw_l2(logits_fn, X4, LABELS)
    if function == "ead":
        return ead(logits_fn, X4, LABELS)
    if function == "pgd":
        return pgd(logits_fn, X4, LABELS, key=key, epsilon=0.1)
    if function == "predict":
        return evaluation.predict(logits_fn, X4)
    if function == "recheck_success":
        return evaluation.recheck_success(logits_fn, X4, LABELS, False, 0.0)
    copies, masks = copies_for(X4)
    return detector.scores_of_copies(logits_fn, X4, copies, masks)


@pytest.mark.parametrize(
    "function", ["cw_l2", "ead", "pgd", "predict", "recheck_success", "scores_of_copies"]
)
@pytest.mark.parametrize("shape", sorted(BAD_LOGITS))
def test_a_classifier_of_the_wrong_output_shape_is_named(function, shape):
    # a (B,) output used to read as "labels must be in [0, 1)", or argmax over nothing
    def logits_fn(x):
        return BAD_LOGITS[shape](linear_logits(x))

    case = Case(
        logits_fn, ValueError, r"logits_fn must return logits of shape \(B, num_classes >= 2\)"
    )
    either(case, lambda fn: call_with_logits(function, fn), lambda out: None)


# what an inpainter of the wrong kind returns, from (B, H, W, C)
BAD_INPAINTERS = {
    "same": lambda masked: masked,
    "no channels": lambda masked: masked[..., 0],
    "two channels": lambda masked: jnp.concatenate([masked, masked], axis=-1),
    "extra axis": lambda masked: masked[None],
    "one image": lambda masked: masked[:1],
    "half size": lambda masked: masked[:, ::2, ::2],
}


@pytest.mark.parametrize("function", ["mask_inpaint", "inpaint_copies", "mask_inpaint_copies"])
@pytest.mark.parametrize("kind", sorted(BAD_INPAINTERS))
def test_an_inpainter_of_the_wrong_output_shape_is_named(kind, function):
    # another shape would broadcast against the masks into a wrong image
    def inpaint_fn(masked, masks):
        return BAD_INPAINTERS[kind](masked)

    key = jax.random.key(0)
    call = {
        "mask_inpaint": lambda fn: mask_inpaint(fn, key, X4, 2),
        "inpaint_copies": lambda fn: inpaint_copies(fn, jax.random.split(key, 2), X4, 2),
        "mask_inpaint_copies": lambda fn: detector.mask_inpaint_copies(fn, key, X4, 2),
    }[function]
    case = Case(inpaint_fn, label=kind)
    if kind != "same":
        case = Case(inpaint_fn, ValueError, r"inpaint_fn must return images of the shape", kind)
    either(case, call, lambda out: None)


@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (8, 8, 1), (2, 8, 8, 2)])
def test_a_network_given_images_of_other_channels_names_them(shape):
    # e.g. CIFAR-10 images into the MNIST inpainter: named here, not as Flax's kernel
    # shape mismatch (and under jit too: the shapes are static)
    params = tiny_params(channels=1)
    inpaint = autoencoder_fn(params.inpainter_config, params.inpainter)
    x, mask = jnp.zeros(shape), jnp.ones(shape[:-1] + (1,))
    for call in (inpaint, jax.jit(inpaint)):
        with pytest.raises(ValueError, match=r"images must have shape \(B, H, W, 1\)"):
            call(x, mask)
    assert inpaint(jnp.zeros((2, 8, 8, 1)), jnp.ones((2, 8, 8, 1))).shape == (2, 8, 8, 1)


@pytest.mark.parametrize(
    "kind", ["pixel", "element", "rank 4", "other n", "other batch", "2 channels", "restored"]
)
@reliable(4)
@given(n=st.integers(1, 3), channels=st.sampled_from([1, 3]))
def test_combine_copies_names_shapes_that_do_not_pair(n, channels, kind):
    restored = jnp.asarray(np.random.default_rng(n).uniform(size=(n, 2, 4, 4, channels)))
    masks_shape = {
        "pixel": (n, 2, 4, 4, 1),
        "element": (n, 2, 4, 4, channels),
        "rank 4": (n, 2, 4, 4),
        "other n": (n + 1, 2, 4, 4, 1),
        "other batch": (n, 3, 4, 4, 1),
        "2 channels": (n, 2, 4, 4, 2),
        "restored": (n, 2, 4, 4, 1),  # with restored of one copy, (B, H, W, C)
    }[kind]
    masks = jnp.ones(masks_shape)
    if kind == "restored":
        restored = restored[0]
        case = Case(restored, ValueError, r"restored must have shape \(n, B, H, W, C\), got", kind)
    elif kind in ("pixel", "element"):
        case = Case(restored, label=kind)
    else:
        case = Case(restored, ValueError, r"masks must have shape .*, got", kind)

    def check(out):  # masks all 1: nothing hidden, so nothing comes from any copy
        np.testing.assert_array_equal(out, np.zeros((2, 4, 4, channels)))

    either(case, lambda r: combine_copies(r, masks), check)


@st.composite
def mask_shapes(draw, kind):
    """An (H, W) or (H, W, C) shape of ``kind``: valid or one of the mistakes users make."""
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=2, max_size=3)))
    if kind == "list":
        shape = list(shape)
    elif kind == "numpy ints":
        shape = tuple(np.int64(s) for s in shape)
    elif kind in ("float", "bool", "zero"):
        i = draw(st.integers(0, len(shape) - 1))
        bad = {"float": shape[i] + 0.5, "bool": True, "zero": draw(st.integers(-2, 0))}[kind]
        shape = (*shape[:i], bad, *shape[i + 1 :])
    elif kind == "rank":
        shape = draw(st.sampled_from([shape[:1], (*shape, 1, 1), (), "28x28", None]))
    return shape


@pytest.mark.parametrize(
    "kind", ["valid", "list", "numpy ints", "float", "bool", "zero", "rank"]
)  # every kind, whatever hypothesis draws
@reliable(5)
@given(data=st.data(), n=st.integers(0, 9), per_channel=st.booleans(), seed=st.integers(0, 99))
def test_random_masks_names_bad_shapes_and_counts(kind, data, n, per_channel, seed):
    shape = data.draw(mask_shapes(kind))
    if kind in ("float", "bool") or (kind == "rank" and not isinstance(shape, tuple)):
        case = Case(shape, TypeError, r"shape must be a tuple of ints .*, got", kind)
    elif kind in ("zero", "rank"):
        case = Case(shape, ValueError, r"shape must be \(H, W\) or \(H, W, C\) .*, got", kind)
    elif per_channel and len(shape) != 3:
        case = Case(shape, ValueError, r"per_channel=True needs shape \(H, W, C\), got", kind)
    else:
        positions = math.prod(shape) if per_channel else shape[0] * shape[1]
        case = Case(shape, label=kind)
        if not 1 <= n <= positions:
            case = Case(shape, ValueError, rf"n must be \[1, {positions}\], got {n}", "n")

    def check(masks):
        h, w = shape[:2]
        c = shape[2] if per_channel else 1
        assert masks.shape == (n, h, w, c) and masks.dtype == jnp.float32
        hidden = 1 - np.asarray(masks)
        np.testing.assert_array_equal(hidden.sum(axis=0), 1.0)  # each position hidden once
        sizes = hidden.reshape(n, -1).sum(axis=1)
        assert sizes.max() - sizes.min() <= 1

    call = lambda s: random_masks(jax.random.key(seed), s, n, per_channel=per_channel)  # noqa: E731
    either(case, call, check)


@pytest.mark.parametrize("hw", [(5, 8), (8, 7), (3, 3)])
def test_a_size_the_networks_cannot_take_is_named(hw):
    # the inpainter's stride-2 layer on an odd size used to fail inside Flax
    x = np.full((1, *hw, 1), 0.5, np.float32)
    match = r"x's height and width must divide by 2, .* got shape"
    for call in (
        lambda: defend(tiny_params(), jax.random.key(0), x),
        lambda: detector.detector_scores(tiny_params(), linear_logits, jax.random.key(0), x),
        lambda: evaluation.remix_predict(linear_logits, tiny_params(), jax.random.key(0), x),
    ):
        with pytest.raises(ValueError, match=match):
            call()


@pytest.mark.parametrize("kind", ["inside", "outside", "nan", "shape", "uint8"])
@reliable(4)
@given(index=st.tuples(st.integers(0, 1), st.integers(0, 3), st.integers(0, 3)))
def test_pgd_names_a_bad_start(kind, index):
    start = np.random.default_rng(index).uniform(-2, 3, size=X4.shape).astype(np.float32)
    case = Case(start, label=kind)
    if kind == "inside":
        case = Case(np.clip(start, 0, 1), label=kind)
    elif kind == "nan":
        start[(*index, 0)] = np.nan  # a NaN start used to make every iterate NaN
        case = Case(start, ValueError, r"start must be finite .*, got nan", kind)
    elif kind == "shape":
        case = Case(start[:1], ValueError, r"start must have the shape of x .*, got", kind)
    elif kind == "uint8":
        case = Case(start.astype(np.uint8), TypeError, r"start must be a float array", kind)

    def check(result):  # projected into the ball and the box, wherever it started
        delta = np.asarray(result.adversarial) - X4
        assert np.all(np.isfinite(delta))
        assert np.all(np.abs(delta) <= PGD_SETTINGS["epsilon"] + 1e-6)

    either(case, lambda s: run_attack("pgd", X4, LABELS, start=s), check)


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(clip_min=None), "clip_min must be a real number, got"),
        (dict(clip_max="1"), "clip_max must be a real number, got"),
        (dict(clip_max=np.inf), "clip_max must be finite, got inf"),
        (dict(clip_min=-np.inf), "clip_min must be finite, got -inf"),
        (dict(clip_min=np.nan), "clip_min must be finite, got nan"),
        (dict(clip_min=0.5, clip_max=0.5), r"clip_min must be < clip_max, got 0.5 and 0.5"),
    ],
)
@pytest.mark.parametrize("attack", [cw_l2, ead])
def test_attacks_name_a_bad_box(attack, options, match):
    # an infinite box made CW's change of variables NaN: no success, no error
    with pytest.raises((TypeError, ValueError), match=match):
        attack(linear_logits, X4, LABELS, **options)
