"""Adaptive attacks: EOT over REMIX's masks, fixed masks, BPDA, randomized models in the search."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_attacks import images_near_middle, linear_model
from test_defense import MNIST, images, tiny_params

from remix_jax import defend
from remix_jax.attacks import cw_l2, ead
from remix_jax.attacks.adaptive import attack_defended, defended_logits, fixed_masks


def linear_classifier(seed=0):
    w = jax.random.normal(jax.random.key(seed), (28 * 28, 10)) * 0.05
    return lambda x: x.reshape(x.shape[0], -1) @ w


@pytest.fixture(scope="module")
def setup():
    params = tiny_params(*MNIST)
    logits_fn = linear_classifier()
    x = images(*MNIST, batch=3)
    labels = jnp.argmax(logits_fn(x), axis=-1)
    return params, logits_fn, x, labels


def test_defended_logits_is_the_classifier_behind_defend_averaged_over_draws(setup):
    params, logits_fn, x, _ = setup
    key = jax.random.key(7)
    one = defended_logits(logits_fn, params)
    np.testing.assert_array_equal(
        jax.jit(one)(x, jax.random.clone(key)), logits_fn(defend(params, jax.random.clone(key), x))
    )
    three = defended_logits(logits_fn, params, samples=3)
    expected = np.mean(
        [logits_fn(defend(params, k, x)) for k in jax.random.split(jax.random.clone(key), 3)], 0
    )
    np.testing.assert_allclose(jax.jit(three)(x, key), expected, rtol=1e-5, atol=1e-6)


def test_eot_with_one_fixed_draw_is_the_plain_attack_on_the_fixed_key_defense(setup):
    params, logits_fn, x, labels = setup
    key = jax.random.key(8)
    # the device loop: one compiled iteration through defend, not an unrolled chunk
    settings = dict(binary_search_steps=2, max_iterations=20, initial_const=10.0, loop="device")
    adaptive = attack_defended(
        "cw", key, logits_fn, params, x, labels, samples=1, resample=False, **settings
    )
    plain = cw_l2(lambda z: logits_fn(defend(params, jax.random.key(8), z)), x, labels, **settings)
    np.testing.assert_allclose(adaptive.adversarial, plain.adversarial, atol=1e-6)
    np.testing.assert_array_equal(adaptive.success, plain.success)


def test_gradients_through_the_defended_model_are_finite_nonzero_and_bpda_changes_them(setup):
    params, logits_fn, x, labels = setup
    key = jax.random.key(9)

    def grad(**kwargs):
        model = defended_logits(logits_fn, params, samples=2, **kwargs)
        return jax.jit(
            jax.grad(lambda z: jnp.sum(model(z, jax.random.clone(key))[jnp.arange(3), labels]))
        )(x)

    exact = grad()
    assert bool(jnp.all(jnp.isfinite(exact))) and float(jnp.abs(exact).max()) > 0
    # identity backward everywhere: the gradient of the bare classifier
    bare = jax.grad(lambda z: jnp.sum(logits_fn(z)[jnp.arange(3), labels]))(x)
    np.testing.assert_allclose(grad(bpda=("reformer", "mask-inpaint")), bare, rtol=1e-5, atol=1e-7)
    assert float(jnp.abs(exact - bare).max()) > 1e-4


def noisy_linear_model(scale=0.05):
    base, _, _ = linear_model(seed=11)

    def logits_fn(z, key):
        return base(z) + scale * jax.random.normal(key, (z.shape[0], 3))

    return logits_fn


@pytest.mark.parametrize("attack", [cw_l2, ead])
def test_randomized_search_is_reproducible_and_the_same_on_host_and_device(attack):
    logits_fn = noisy_linear_model()
    x = images_near_middle(8, seed=12)
    labels = jnp.argmax(logits_fn(x, jax.random.key(0)), axis=-1)
    settings = dict(
        binary_search_steps=3,
        max_iterations=60,
        confidence=0.5,
        initial_const=1.0,
        learning_rate=0.05,
    )
    run = lambda key, loop: attack(logits_fn, x, labels, key=key, loop=loop, **settings)  # noqa: E731
    host = run(jax.random.key(1), "host")
    # every example succeeded during the search (c was bisected down from 1); the final
    # check draws fresh noise at the kappa boundary, so only some pass it
    assert bool((host.const < 1.0).all()) and bool(host.success.any())
    # the early abort fires at different times per example, so the host loop compacts
    np.testing.assert_allclose(
        run(jax.random.key(1), "device").adversarial, host.adversarial, atol=1e-5
    )
    np.testing.assert_array_equal(run(jax.random.key(1), "host").adversarial, host.adversarial)
    other = run(jax.random.key(2), "host")
    assert not (
        np.array_equal(other.adversarial, host.adversarial)
        and np.array_equal(other.const, host.const)
    )


def test_fixed_masks_ignore_the_attacks_keys(setup):
    params, logits_fn, x, _ = setup
    model = fixed_masks(defended_logits(logits_fn, params), jax.random.key(3))
    np.testing.assert_array_equal(model(x, jax.random.key(4)), model(x, jax.random.key(5)))


def test_adaptive_pgd_stays_in_its_ball_and_names_are_checked(setup):
    params, logits_fn, x, labels = setup
    result = attack_defended(
        "pgd", jax.random.key(6), logits_fn, params, x, labels, samples=2, epsilon=0.1, steps=3
    )
    assert float(result.linf.max()) <= 0.1 + 1e-6
    assert result.adversarial.shape == x.shape and result.success.shape == (3,)
    with pytest.raises(ValueError, match="attack"):
        attack_defended("fgsm", jax.random.key(6), logits_fn, params, x, labels)
