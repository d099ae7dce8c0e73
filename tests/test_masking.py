import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remix_jax.masking import batch_random_masks, random_masks


@settings(max_examples=25, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 9), n=st.integers(1, 5), seed=st.integers(0, 10**6))
def test_masks_partition_the_pixels(h, w, n, seed):
    n = min(n, h * w)
    masks = np.asarray(random_masks(jax.random.key(seed), (h, w), n))
    assert masks.shape == (n, h, w, 1) and masks.dtype == np.float32
    assert set(np.unique(masks)) <= {0.0, 1.0}
    hidden = 1 - masks
    # disjoint and covering: every pixel is hidden in exactly one mask
    np.testing.assert_array_equal(hidden.sum(axis=0), np.ones((h, w, 1)))
    sizes = hidden.reshape(n, -1).sum(axis=1)
    assert sizes.max() - sizes.min() <= 1


def test_same_key_same_masks_and_different_keys_differ():
    a = random_masks(jax.random.key(3), (28, 28), 2)
    b = random_masks(jax.random.key(3), (28, 28), 2)
    c = random_masks(jax.random.key(4), (28, 28), 2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_each_pixel_is_uniform_over_the_sets():
    n, trials = 3, 3000
    keys = jax.random.split(jax.random.key(0), trials)
    masks = jax.vmap(lambda k: random_masks(k, (4, 4), n))(keys)
    freq = np.asarray((1 - masks).mean(axis=0))[..., 0]  # (n, 4, 4)
    # 16 positions, sets of size 6/5/5: P(pixel in set i) = size_i / 16 on average
    expected = np.array([6, 5, 5])[:, None, None] / 16
    std = np.sqrt(expected * (1 - expected) / trials)
    assert np.all(np.abs(freq - expected) < 5 * std)


def test_pixel_mask_is_shared_across_channels_by_default():
    key = jax.random.key(1)
    masks = batch_random_masks(jax.random.clone(key), 5, (8, 8, 3), 3)
    chex.assert_shape(masks, (5, 3, 8, 8, 1))
    per_channel = random_masks(key, (8, 8, 3), 3, per_channel=True)
    chex.assert_shape(per_channel, (3, 8, 8, 3))
    np.testing.assert_array_equal((1 - per_channel).sum(axis=0), np.ones((8, 8, 3)))
    # per-channel masks do differ between the channels of a pixel
    assert not np.array_equal(per_channel[..., 0], per_channel[..., 1])


def test_batch_draws_are_independent_per_image():
    masks = batch_random_masks(jax.random.key(2), 4, (10, 10), 2)
    assert not np.array_equal(masks[0], masks[1])


def test_masks_jit_and_trace_once():
    @jax.jit
    @chex.assert_max_traces(n=1)
    def draw(key):
        return random_masks(key, (28, 28), 2)

    for seed in range(3):
        draw(jax.random.key(seed))
    np.testing.assert_array_equal(
        draw(jax.random.key(7)), random_masks(jax.random.key(7), (28, 28), 2)
    )


@pytest.mark.parametrize(
    ("shape", "n", "error"),
    [
        ((4, 4), 0, ValueError),
        ((4, 4), 17, ValueError),
        ((4, 4), 2.0, TypeError),
        ((4,), 2, ValueError),
        ((4, 4), True, TypeError),
    ],
)
def test_bad_arguments_are_rejected(shape, n, error):
    with pytest.raises(error, match="n|shape"):
        random_masks(jax.random.key(0), shape, n)


def test_per_channel_needs_channels():
    with pytest.raises(ValueError, match="per_channel"):
        random_masks(jax.random.key(0), (4, 4), 2, per_channel=True)


def test_masks_are_float32_zero_one():
    m = random_masks(jax.random.key(0), (5, 5), 2)
    assert m.dtype == jnp.float32
