"""The opt-in check under jit (issue 35): under ``jax.jit`` the public functions cannot
see values, so NaN and 0..255 batches pass them; :mod:`remix_jax.validation` reports
them through ``checkify``, and clean batches pass unchanged."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jax.experimental import checkify
from reliability import RELIABLE, tiny_params, valid_images

import remix_jax
from remix_jax import validation

# one jitted, checkified defense for every test, compiled once per batch shape and
# dtype: an empty batch, a bfloat16 one and the float32 one the bad batches share
_checked_defend = jax.jit(remix_jax.checked(remix_jax.defend, argnum=2, channels=1))
CLEAN = ((0, np.float32), (3, jnp.bfloat16), (3, np.float32))
BAD = ((3, np.float32),)


@pytest.fixture(scope="module")
def params():
    return tiny_params()


@RELIABLE
@given(x=valid_images(sizes=((8, 8),), profiles=CLEAN), seed=st.integers(0, 2**31 - 1))
def test_clean_batches_pass_and_give_the_unchecked_output(x, seed):
    key = jax.random.key(seed)
    err, y = _checked_defend(tiny_params(), jax.random.clone(key), x)
    err.throw()  # nothing to report
    assert err.get() is None
    np.testing.assert_array_equal(y, remix_jax.defend(tiny_params(), key, x))


@RELIABLE
@given(
    x=valid_images(sizes=((8, 8),), profiles=BAD),
    where=st.tuples(st.integers(0, 2), st.integers(0, 7), st.integers(0, 7)),
    value=st.sampled_from([np.nan, np.inf, -np.inf]),
)
def test_nan_anywhere_is_caught_under_jit(x, where, value):
    x[(where[0] % len(x), *where[1:], 0)] = value
    err, _ = _checked_defend(tiny_params(), jax.random.key(0), x)
    with pytest.raises(checkify.JaxRuntimeError, match=r"x must be finite \(no NaN or inf\)"):
        err.throw()


@RELIABLE
@given(
    x=valid_images(sizes=((8, 8),), profiles=BAD),
    scale=st.sampled_from([255.0, 2.0, -1.0]),
)
def test_out_of_range_batches_are_caught_under_jit_with_their_range(x, scale):
    x = x * scale
    x.flat[0] = scale  # at least one value out of [0, 1]
    err, _ = _checked_defend(tiny_params(), jax.random.key(0), x)
    with pytest.raises(checkify.JaxRuntimeError) as info:
        err.throw()
    message = str(info.value)
    assert "x must lie in [0.0, 1.0], got values in" in message
    low, high = map(float, re.search(r"got values in \[(\S+), (\S+)\]", message).groups())
    np.testing.assert_allclose([low, high], [x.min(), x.max()], rtol=1e-6)


@pytest.mark.parametrize(
    "bad, error, match",
    [
        (np.zeros((8, 8, 1), np.float32), ValueError, r"x must have shape \(B, H, W, C\)"),
        (np.zeros((1, 8, 8, 3), np.float32), ValueError, "x must have 1 channel"),
        (np.zeros((1, 8, 8, 1), np.uint8), TypeError, "x must be a float array, got dtype uint8"),
    ],
)
def test_shapes_and_dtypes_fail_at_trace_time(bad, error, match):
    # known before the run: raised while tracing, as by the unchecked functions (around
    # a function that checks nothing itself)
    with pytest.raises(error, match=match):
        jax.jit(remix_jax.checked(lambda x: x * 2, channels=1))(bad)


def test_image_checks_take_a_range_and_a_name_and_run_eagerly_too():
    def f(images):
        validation.image_checks(images, low=-1.0, high=1.0, name="images")
        return images * 2

    checked = jax.jit(checkify.checkify(f))
    err, y = checked(jnp.full((1, 2, 2, 1), -0.5))
    err.throw()
    np.testing.assert_array_equal(y, -1.0)
    err, _ = checked(jnp.full((1, 2, 2, 1), 1.5))
    with pytest.raises(checkify.JaxRuntimeError, match=r"images must lie in \[-1.0, 1.0\]"):
        err.throw()
    # without jit the check raises at once (checkify's eager behaviour)
    with pytest.raises(checkify.JaxRuntimeError, match="images must be finite"):
        validation.image_checks(jnp.full((1, 2, 2, 1), jnp.nan), name="images")


def test_checked_needs_the_images_among_the_positional_arguments(params):
    with pytest.raises(TypeError, match=r"needs the images as positional argument 2, got 1"):
        remix_jax.checked(remix_jax.defend, argnum=2)(params)


def test_the_docstring_examples_run(params):
    # the module docstring's two examples, in order as a reader runs them (the second
    # uses the first's imports): the first reports a NaN batch, the second passes a
    # clean one
    blocks = re.findall(r"::\n\n((?:    .*\n|\n)+)", validation.__doc__)
    assert len(blocks) == 2
    first, second = ["\n".join(line[4:] for line in block.splitlines()) for block in blocks]
    # (each defines a new function, compiled anew: one batch apiece)
    scope = {"params": params, "key": jax.random.key(0), "x": np.full((3, 8, 8, 1), np.nan)}
    with pytest.raises(checkify.JaxRuntimeError, match="x must be finite"):
        exec(first, scope)
    assert scope["y"].shape == (3, 8, 8, 1)  # computed, then reported
    scope.update(key=jax.random.key(1), x=np.full((3, 8, 8, 1), 0.5, np.float32), y=None)
    exec(second, scope)
    assert scope["y"].shape == (3, 8, 8, 1)
