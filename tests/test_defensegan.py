"""Defense-GAN's projection onto a generator's range, on a toy generator."""

import dataclasses

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


def test_projection_lowers_the_error_to_an_image_in_the_range_and_is_reproducible():
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


def test_each_image_keeps_its_best_start():
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


def test_bpda_is_the_projection_forward_and_the_identity_backward():
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
def test_generator_and_critic_shapes(size, channels, batch_norm):
    generator = DGGenerator(channels, size, width=4, batch_norm=batch_norm)
    z = jax.random.normal(jax.random.key(2), (2, 8))
    variables = jax.jit(generator.init)(jax.random.key(0), z)  # eager: op by op
    images = jax.jit(generator.apply)(variables, z)
    assert images.shape == (2, size, size, channels)
    assert images.min() >= 0 and images.max() <= 1
    critic = DGCritic(width=4)
    scores = jax.jit(critic.apply)(jax.jit(critic.init)(jax.random.key(1), images), images)
    assert scores.shape == (2,)


def test_gradient_penalty_is_the_squared_distance_of_each_images_gradient_norm_to_one():
    """A linear critic has the gradient w at every point: the penalty is (||w|| - 1)^2
    wherever the interpolation lands; a critic scaled per image shows the norm is taken
    per image, over all its pixels."""
    w = jax.random.normal(jax.random.key(0), (8, 8, 1))
    real, fake = jnp.zeros((3, 8, 8, 1)), jnp.ones((3, 8, 8, 1))
    penalty = defensegan.gradient_penalty(
        lambda v: jnp.sum(v * w[None], axis=(1, 2, 3)), real, fake, jax.random.key(1)
    )
    norm = float(jnp.sqrt(jnp.sum(w**2)))
    assert float(penalty) == pytest.approx((norm - 1) ** 2, rel=1e-5)
    scale = jnp.array([1.0, 2.0, 3.0])[:, None, None, None]  # image i's gradient: (i+1) w
    penalty = defensegan.gradient_penalty(
        lambda v: jnp.sum(v * w[None] * scale, axis=(1, 2, 3)), real, fake, jax.random.key(1)
    )
    expected = np.mean([(k * norm - 1) ** 2 for k in (1, 2, 3)])
    assert float(penalty) == pytest.approx(expected, rel=1e-5)


TINY = defensegan.DefenseGANConfig(channels=1, size=28, latent=8, width=4, critic_steps=3)


@pytest.fixture(scope="module")
def wgan():
    """(the tiny WGAN-GP task, its optimizer): one pair, so that training._step_of
    builds and compiles their step once for the tests below."""
    import optax

    return defensegan.wgan_gp_task(TINY), optax.adam(1e-3, b1=0.5, b2=0.9)


def toy_digits(n, seed=0):
    """uint8 28x28 images: a bright square at one of four places, labels unused."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 28, 28, 1), np.uint8)
    for i, place in enumerate(rng.integers(0, 4, n)):
        r, c = divmod(int(place), 2)
        images[i, 4 + 12 * r : 12 + 12 * r, 4 + 12 * c : 12 + 12 * c] = 255
    return images, np.zeros(n, np.int32)


def test_the_critic_steps_every_step_and_the_generator_every_critic_steps_th(wgan):
    from remix_jax import training

    task, optimizer = wgan
    init_state, step = training._step_of(task, optimizer)
    params = task.init(jax.random.key(0))
    opt_state = init_state(params)
    images, labels = toy_digits(4)  # fit's batch below: one compiled step
    for i in range(1, 7):
        before = jax.tree.map(np.asarray, params)
        params, opt_state, metrics = step(params, opt_state, jax.random.key(i), images, labels)
        assert int(opt_state["count"]) == i
        assert np.isfinite(float(metrics["loss"])) and float(metrics["penalty"]) >= 0
        changed = {
            name: not all(
                np.array_equal(a, b)
                for a, b in zip(
                    jax.tree.leaves(before[name]), jax.tree.leaves(params[name]), strict=True
                )
            )
            for name in ("critic", "generator")
        }
        assert changed == {"critic": True, "generator": i % TINY.critic_steps == 0}, i


def test_wgan_gp_training_resumes_exactly_and_the_defense_projects_per_image(wgan, tmp_path):
    from remix_jax import training

    # 5 steps an epoch, 3 critic steps per generator step: the resume at step 5 falls
    # between generator steps, so a critic count lost in the checkpoint would show
    train, validation = toy_digits(20), toy_digits(8, seed=1)
    task, optimizer = wgan

    def fit(epochs, folder):
        config = training.TrainConfig(epochs=epochs, batch_size=4, save_every=100)
        return training.fit(jax.random.key(0), task, optimizer, train, validation, config,
                            str(folder), {}, progress=False)  # fmt: skip

    straight, meta = fit(2, tmp_path / "straight")
    assert [h["epoch"] for h in meta["history"]] == [1, 2]
    assert all(np.isfinite(h["wasserstein"]) for h in meta["history"])
    fit(1, tmp_path / "resumed")
    resumed, _ = fit(2, tmp_path / "resumed")  # the critic count resumes with the rest
    for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)

    defense = defensegan.DefenseGAN(
        TINY, straight["generator"], defensegan.Projection(steps=3, restarts=2)
    )
    x = validation[0][:4].astype(np.float32) / 255
    out = defensegan.reconstruct(defense, jax.random.key(3), x, batch_size=2)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    # image i's starts come from fold_in(key, i): the batching changes nothing
    np.testing.assert_allclose(
        defensegan.reconstruct(defense, jax.random.key(3), x, batch_size=4), out, atol=1e-6
    )
    assert not np.allclose(defensegan.reconstruct(defense, jax.random.key(4), x), out)
    with pytest.raises(ValueError, match="28x28"):
        defensegan.reconstruct(defense, jax.random.key(3), np.zeros((1, 32, 32, 1), np.float32))
    with pytest.raises(ValueError, match="x must"):
        defensegan.reconstruct(defense, jax.random.key(3), x + 2)


def test_config_for_images_and_its_checks():
    assert defensegan.DefenseGANConfig.for_images((32, 32, 3)).batch_norm
    mnist = defensegan.DefenseGANConfig.for_images((28, 28, 1))
    assert not mnist.batch_norm and mnist.size == 28 and mnist.latent == 128
    assert defensegan.DefenseGANConfig.from_dict({**mnist.to_dict(), "other": 1}) == mnist
    with pytest.raises(ValueError, match="square"):
        defensegan.DefenseGANConfig.for_images((28, 32, 1))
    with pytest.raises(ValueError, match="28x28 or 32x32"):
        defensegan.DefenseGANConfig.for_images((64, 64, 3)).check()
    with pytest.raises(ValueError, match="critic_steps"):
        defensegan.wgan_gp_task(dataclasses.replace(mnist, critic_steps=0))
