"""Defense-GAN's projection onto a generator's range, on a toy generator."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from remix_jax import defensegan
from remix_jax.models.defensegan import DGCritic, DGGenerator, check_size

LATENT = 4
BASIS = jax.random.uniform(jax.random.key(0), (LATENT, 8 * 8))


def toy_generator(z):
    """A smooth 4-dimensional family of 8x8 images in (0, 1)."""
    return jax.nn.sigmoid(z @ BASIS - 0.5).reshape(z.shape[0], 8, 8, 1)


def test_projection_lowers_the_error_to_an_image_in_the_range_and_is_reproducible(
    fast_compiles,
):
    target_z = jax.random.normal(jax.random.key(1), (3, LATENT))
    x = toy_generator(target_z)  # images G can make exactly
    settings = defensegan.Projection(steps=100, restarts=4, learning_rate=1.0)
    # the starts are near z = 0 (std 1/2): G(0) is what the descent begins from
    at_zero = np.asarray(toy_generator(jnp.zeros((3, LATENT))))
    error_at_start = np.mean((at_zero - np.asarray(x)) ** 2, axis=(1, 2, 3))
    projected, error = defensegan.project(toy_generator, jax.random.key(2), x, LATENT, settings)
    assert projected.shape == x.shape and error.shape == (3,)
    assert np.all(np.asarray(error) < 0.1 * np.asarray(error_at_start))
    np.testing.assert_allclose(
        np.mean((np.asarray(projected) - np.asarray(x)) ** 2, axis=(1, 2, 3)), error, rtol=1e-5
    )
    again, _ = defensegan.project(toy_generator, jax.random.key(2), x, LATENT, settings)
    np.testing.assert_array_equal(again, projected)  # the same key: the same projection
    # an image's starts come from its own key: its projection ignores the images after it
    first, _ = defensegan.project(toy_generator, jax.random.key(2), x[:2], LATENT, settings)
    np.testing.assert_allclose(first, projected[:2], atol=1e-6)


def test_each_image_keeps_its_best_start(fast_compiles):
    """With (almost) no descent, the returned error is the lowest of the image's R
    starts, drawn from fold_in(key, start + i)."""
    x = jax.random.uniform(jax.random.key(5), (2, 8, 8, 1))
    frozen = defensegan.Projection(steps=1, restarts=5, learning_rate=1e-12)
    _, error = defensegan.project(toy_generator, jax.random.key(6), x, LATENT, frozen, start=7)
    for i in range(2):
        starts = jax.random.normal(jax.random.fold_in(jax.random.key(6), 7 + i), (5, LATENT))
        per_start = np.mean((np.asarray(toy_generator(starts * 0.5)) - np.asarray(x[i])) ** 2,
                            axis=(1, 2, 3))  # fmt: skip
        assert float(error[i]) == pytest.approx(per_start.min(), rel=1e-5)
        assert per_start.max() > per_start.min() * 1.01  # the choice matters


def test_bpda_is_the_projection_forward_and_the_identity_backward(fast_compiles):
    settings = defensegan.Projection(steps=20, restarts=2, learning_rate=1.0)
    fn = defensegan.straight_through_projection(toy_generator, LATENT, settings)
    x = jax.random.uniform(jax.random.key(3), (2, 8, 8, 1))
    projected, _ = defensegan.project(toy_generator, jax.random.key(4), x, LATENT, settings)
    np.testing.assert_allclose(fn(jax.random.key(4), x), projected, atol=1e-6)
    gradient = jax.grad(lambda v: fn(jax.random.key(4), v).sum())(x)
    np.testing.assert_array_equal(gradient, jnp.ones_like(x))


def test_bad_settings_and_inputs_are_refused():
    x = jnp.zeros((1, 8, 8, 1))
    with pytest.raises(ValueError, match="restarts must be >= 1"):
        defensegan.project(toy_generator, jax.random.key(0), x, LATENT,
                           defensegan.Projection(restarts=0))  # fmt: skip
    with pytest.raises(ValueError, match="x must"):
        defensegan.project(toy_generator, jax.random.key(0), x + 2, LATENT)
    with pytest.raises(TypeError, match="key must be a typed PRNG key"):
        defensegan.project(toy_generator, 0, x, LATENT)
    with pytest.raises(ValueError, match="28x28 or 32x32"):
        check_size(64)


@pytest.mark.parametrize("size,channels,batch_norm", [(28, 1, False), (32, 3, True)])
def test_generator_and_critic_shapes(size, channels, batch_norm, fast_compiles):
    generator = DGGenerator(channels, size, width=4, batch_norm=batch_norm)
    z = jax.random.normal(jax.random.key(2), (2, 8))
    variables = jax.jit(generator.init)(jax.random.key(0), z)  # eager: op by op
    images = jax.jit(generator.apply)(variables, z)
    assert images.shape == (2, size, size, channels)
    assert images.min() >= 0 and images.max() <= 1
    critic = DGCritic(width=4)
    scores = jax.jit(critic.apply)(jax.jit(critic.init)(jax.random.key(1), images), images)
    assert scores.shape == (2,)
