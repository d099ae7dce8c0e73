import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from remix_jax import RemixParams, defend, defense, mask_inpaint
from remix_jax.masking import batch_random_masks
from remix_jax.models import AutoencoderConfig, init_autoencoder

MNIST = ((28, 28), 1)
CIFAR = ((32, 32), 3)


def tiny_params(hw, channels, *, reformer=True, n_masks=2, iterations=1, mask_channel=False):
    cfg = AutoencoderConfig(
        channels=channels, features=(4, 4), strides=(1, 2), mask_channel=mask_channel
    )
    inpainter = init_autoencoder(jax.random.key(0), cfg, hw)
    ref_cfg = AutoencoderConfig(channels=channels, features=(4,), strides=(1,))
    return RemixParams(
        inpainter=inpainter,
        reformer=init_autoencoder(jax.random.key(1), ref_cfg, hw) if reformer else None,
        inpainter_config=cfg,
        reformer_config=ref_cfg if reformer else None,
        n_masks=n_masks,
        iterations=iterations,
    )


def images(hw, channels, batch=3, seed=0):
    return jax.random.uniform(jax.random.key(seed), (batch, *hw, channels))


@pytest.mark.parametrize("n", [2, 3])
def test_oracle_inpainter_restores_exactly(n):
    x = images(*CIFAR)
    out = jax.jit(lambda k, x: mask_inpaint(lambda xm, m: x, k, x, n))(jax.random.key(0), x)
    np.testing.assert_array_equal(out, x)


def test_each_output_pixel_comes_from_the_copy_that_hid_it():
    x = images(*MNIST, batch=2)
    n = 3
    key = jax.random.key(5)
    # the masks mask_inpaint will draw for this key, (n, B, H, W, 1)
    masks = jnp.moveaxis(batch_random_masks(jax.random.clone(key), 2, (28, 28, 1), n), 1, 0)
    copy_value = jnp.array([10.0, 20.0, 30.0])

    def answer_copy_index(xm, m):
        # copy i (recognised by its mask) answers the constant copy_value[i] everywhere
        index = jnp.argmax(jnp.all(masks == m[None], axis=(1, 2, 3, 4)))
        return jnp.full(xm.shape, copy_value[index])

    out = mask_inpaint(answer_copy_index, key, x, n)
    expected = jnp.sum(copy_value[:, None, None, None, None] * (1 - masks), axis=0)
    np.testing.assert_array_equal(out, expected)
    assert set(np.unique(out)) == {10.0, 20.0, 30.0}


def test_defend_without_reformer_and_zero_iterations_is_identity():
    params = tiny_params(*MNIST, reformer=False)
    x = images(*MNIST)
    np.testing.assert_array_equal(defend(params, jax.random.key(0), x, iterations=0), x)


@pytest.mark.parametrize(("hw", "channels"), [MNIST, CIFAR])
@pytest.mark.parametrize("reformer", [False, True])
def test_defend_shapes_and_range(hw, channels, reformer):
    params = tiny_params(hw, channels, reformer=reformer, n_masks=3 if channels == 3 else 2)
    x = images(hw, channels)
    out = defend(params, jax.random.key(0), x, iterations=2)
    chex.assert_shape(out, x.shape)
    assert out.dtype == jnp.float32
    assert float(out.min()) >= 0 and float(out.max()) <= 1


def test_same_key_is_bit_identical_and_new_key_differs():
    params = tiny_params(*MNIST)
    x = images(*MNIST)
    a = defend(params, jax.random.key(1), x)
    b = defend(params, jax.random.key(1), x)
    c = defend(params, jax.random.key(2), x)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_jit_with_params_argument_agrees_with_eager_and_traces_once():
    params = tiny_params(*MNIST, mask_channel=True)
    x = images(*MNIST)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(p, key, x):
        return defend(p, key, x)

    for seed in range(3):
        jitted = run(params, jax.random.key(seed), x)
        eager = defend(params, jax.random.key(seed), x)
        np.testing.assert_allclose(jitted, eager, atol=1e-6)


def test_iterations_use_fresh_masks():
    params = tiny_params(*MNIST, reformer=False)
    x = images(*MNIST)
    once = defend(params, jax.random.key(0), x, iterations=1)
    twice = defend(params, jax.random.key(0), x, iterations=2)
    manual = defend(params, jax.random.key(0), once, iterations=1)
    # round 2 must not reuse round 1's key (fold_in(key, 1) != fold_in(key, 0))
    assert not np.allclose(twice, manual)


def test_without_reformer_drops_it():
    params = tiny_params(*MNIST).without_reformer()
    assert params.reformer is None and params.reformer_config is None


@pytest.mark.parametrize(
    ("x", "error", "match"),
    [
        (np.zeros((28, 28, 1), np.float32), ValueError, "shape"),
        (np.zeros((2, 28, 28, 3), np.float32), ValueError, "channel"),
        (np.zeros((2, 28, 28, 1), np.uint8), TypeError, "float"),
        (np.full((2, 28, 28, 1), 1.5, np.float32), ValueError, r"\[0.0, 1.0\]"),
        (np.full((2, 28, 28, 1), np.nan, np.float32), ValueError, "NaN"),
        ([[0.0]], TypeError, "array"),
    ],
)
def test_defend_rejects_bad_images(x, error, match):
    with pytest.raises(error, match=match):
        defend(tiny_params(*MNIST), jax.random.key(0), x)


def test_defend_rejects_bad_iterations_and_masks():
    params = tiny_params(*MNIST)
    x = images(*MNIST)
    with pytest.raises(ValueError, match="iterations"):
        defend(params, jax.random.key(0), x, iterations=-1)
    with pytest.raises(ValueError, match="n_masks"):
        defend(params.replace(n_masks=0), jax.random.key(0), x)
    with pytest.raises(ValueError, match="n_masks"):
        defend(params.replace(n_masks=28 * 28 + 1), jax.random.key(0), x)
    with pytest.raises(TypeError, match="RemixParams"):
        defend({"inpainter": None}, jax.random.key(0), x)


@pytest.mark.parametrize("chunk", [1, 3, 4, 100])
def test_chunked_defend_draws_the_same_masks_as_one_pass(chunk):
    # 7 images: chunks of 3 and 4 leave a remainder, 100 is more than the batch
    params = tiny_params(*MNIST, mask_channel=True)
    x = images(*MNIST, batch=7)
    key = jax.random.key(3)
    whole = defend(params, key, x, iterations=2, chunk=None)
    np.testing.assert_allclose(defend(params, key, x, iterations=2, chunk=chunk), whole, atol=1e-6)


def test_default_chunking_of_a_batch_larger_than_a_chunk_matches_one_pass():
    from remix_jax.defense import CPU_CHUNK

    params = tiny_params(*MNIST)
    x = images(*MNIST, batch=CPU_CHUNK + 5)  # on CPU: a full chunk and a remainder
    key = jax.random.key(6)
    np.testing.assert_allclose(
        defend(params, key, x), defend(params, key, x, chunk=None), atol=1e-6
    )


def test_chunked_round_is_mask_inpaint_with_the_folded_key():
    params = tiny_params(*MNIST, reformer=False, mask_channel=True)
    x = images(*MNIST, batch=5)
    key = jax.random.key(4)
    from remix_jax.defense import autoencoder_fn

    inpaint = autoencoder_fn(params.inpainter_config, params.inpainter)
    expected = mask_inpaint(inpaint, jax.random.fold_in(key, 0), x, params.n_masks)
    np.testing.assert_allclose(defend(params, key, x, iterations=1, chunk=2), expected, atol=1e-6)


def test_gradients_through_chunked_defend_are_finite_and_nonzero():
    params = tiny_params(*MNIST)
    x = images(*MNIST, batch=4)
    grad = jax.grad(lambda v: jnp.sum(defend(params, jax.random.key(0), v, chunk=2) ** 2))(x)
    assert bool(jnp.all(jnp.isfinite(grad))) and float(jnp.abs(grad).max()) > 0


@pytest.mark.parametrize("chunk", [0, -1, 2.5, "big"])
def test_bad_chunk_is_refused(chunk):
    with pytest.raises((TypeError, ValueError), match="chunk"):
        defend(tiny_params(*MNIST), jax.random.key(0), images(*MNIST), chunk=chunk)


def test_bpda_keeps_the_forward_pass_and_makes_the_backward_the_identity():
    params = tiny_params(*MNIST)
    x = images(*MNIST, batch=2)
    key = jax.random.key(3)
    both = ("reformer", "mask-inpaint")
    # x + (f(x) - x): f(x) up to one rounding
    np.testing.assert_allclose(defend(params, key, x, bpda=both), defend(params, key, x), atol=1e-6)
    weights = jax.random.normal(jax.random.key(4), x.shape)

    def grad(bpda):
        return jax.jit(jax.grad(lambda v: jnp.sum(defend(params, key, v, bpda=bpda) * weights)))(x)

    np.testing.assert_allclose(grad(both), weights, rtol=1e-6)
    exact, reformer_only = grad(()), grad(("reformer",))
    assert bool(jnp.all(jnp.isfinite(exact))) and float(jnp.abs(exact).max()) > 0
    # BPDA on one component changes the gradient, and differs from the exact one
    assert float(jnp.abs(reformer_only - exact).max()) > 1e-4
    assert float(jnp.abs(reformer_only - weights).max()) > 1e-4


@pytest.mark.parametrize("bpda", ["reformer", ("inpainter",)])
def test_bad_bpda_is_refused(bpda):
    params = tiny_params(*MNIST)
    with pytest.raises(ValueError, match="bpda"):
        defend(params, jax.random.key(0), images(*MNIST), bpda=bpda)


@pytest.mark.parametrize("bpda", [(), ("mask-inpaint",)])
def test_unrolled_and_scanned_rounds_agree(bpda):
    params = tiny_params(*MNIST, mask_channel=True)
    x = images(*MNIST, batch=2)
    out = {
        loop: defend(params, jax.random.key(3), x, iterations=3, chunk=None, loop=loop, bpda=bpda)
        for loop in ("unroll", "scan")
    }
    np.testing.assert_allclose(out["unroll"], out["scan"], atol=1e-6)


def test_many_rounds_run_in_a_loop_of_constant_program_size():
    # unrolled, K = 1000 rounds would take minutes to compile; "auto" loops past 8
    params = tiny_params(*MNIST, reformer=False)
    x = images(*MNIST, batch=1)

    def program(k):
        return (
            jax.jit(lambda key, v: defend(params, key, v, iterations=k, chunk=None))
            .lower(jax.random.key(0), x)
            .as_text()
        )

    looped = program(defense.MAX_ROUNDS)
    # one scan whatever K (the trip count's constant aside): unrolled, 9 rounds alone
    # would be 9 copies of a round
    assert "while" in looped and len(looped) < 1.05 * len(program(9))
    with pytest.raises(ValueError, match="loop must be one of"):
        defend(params, jax.random.key(0), x, loop="fori")
    # a K that would run for hours is a typo: refused at once
    with pytest.raises(ValueError, match=r"iterations must be .*, got 1000000"):
        defend(params, jax.random.key(0), x, iterations=10**6)


@pytest.mark.parametrize(
    "bad_key", [0, np.uint32(3), jax.random.PRNGKey(0), jax.random.split(jax.random.key(0), 2)]
)
def test_every_random_function_names_a_bad_key(bad_key):
    from remix_jax import random_masks

    params = tiny_params(*MNIST)
    x = images(*MNIST, batch=1)
    for call in (
        lambda: defend(params, bad_key, x),
        lambda: random_masks(bad_key, (28, 28), 2),
        lambda: mask_inpaint(lambda xm, m: xm, bad_key, x, 2),
    ):
        with pytest.raises((TypeError, ValueError), match="key must be a"):
            call()


def test_one_mask_and_fractional_shapes_are_refused():
    from remix_jax import random_masks

    x = images(*MNIST, batch=1)
    with pytest.raises(ValueError, match=r"params.n_masks must be >= 2"):
        defend(tiny_params(*MNIST, n_masks=1), jax.random.key(0), x)
    with pytest.raises(ValueError, match=r"n must be \[2, "):
        mask_inpaint(lambda xm, m: xm, jax.random.key(0), x, 1)
    with pytest.raises(TypeError, match="shape must be a tuple of ints"):
        random_masks(jax.random.key(0), (28.5, 28), 2)


@pytest.mark.parametrize(
    "bad, error, match",
    [
        (np.zeros((1, 28, 28, 1), np.uint8), TypeError, "float"),
        (np.full((1, 28, 28, 1), 255.0, np.float32), ValueError, r"\[0.0, 1.0\]"),
        (np.full((1, 28, 28, 1), np.nan, np.float32), ValueError, "NaN"),
        (np.zeros((28, 28, 1), np.float32), ValueError, r"\(B, H, W, C\)"),
    ],
)
def test_mask_inpaint_checks_its_images(bad, error, match):
    with pytest.raises(error, match=match):
        mask_inpaint(lambda xm, m: xm, jax.random.key(0), bad, 2)
