import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from remix_jax.models import (
    AutoencoderConfig,
    MNISTClassifier,
    SkipAutoencoder,
    init_autoencoder,
    layers,
)
from remix_jax.models.autoencoder import autoencoder_module, interpolate_hidden
from remix_jax.models.layers import avg_pool_2x2, max_pool_2x2


@pytest.mark.parametrize("shape", [(2, 28, 28, 1), (2, 32, 32, 3), (1, 27, 27, 2)])
def test_reshape_max_pool_matches_flax(shape):
    x = jax.random.normal(jax.random.key(0), shape)
    with jax.numpy_dtype_promotion("standard"):  # flax's pooling divides by an int count
        reference_max = nn.max_pool(x, (2, 2), (2, 2))
        reference_avg = nn.avg_pool(x, (2, 2), (2, 2))
    np.testing.assert_array_equal(max_pool_2x2(x), reference_max)
    np.testing.assert_allclose(avg_pool_2x2(x), reference_avg, rtol=1e-6)


@pytest.mark.parametrize(
    ("kernel", "stride", "padding", "size"),
    [
        (5, 2, "SAME", 7),  # Defense-GAN's and APE-GAN's layers, odd input
        (2, 2, "VALID", 8),  # the U-Net's up-sampling
        (4, 3, "VALID", 7),  # stride > 2, kernel not a multiple of it
        (1, 2, "SAME", 5),  # phases with no tap at all
        (3, 2, ((1, 2), (0, 1)), 6),  # explicit, asymmetric pads
    ],
)
@pytest.mark.parametrize("transposed", [False, True])
def test_strided_convolutions_match_flax_in_values_gradients_and_parameters(
    kernel, stride, padding, size, transposed
):
    """layers.Conv / ConvTranspose compute their strided case another way (XLA's CPU
    path for Flax's is slow): same parameters, same outputs and gradients."""
    reference = (nn.ConvTranspose if transposed else nn.Conv)(
        4, (kernel, kernel), strides=(stride, stride), padding=padding
    )
    ours = (layers.ConvTranspose if transposed else layers.Conv)(
        4, (kernel, kernel), strides=(stride, stride), padding=padding
    )
    x = jax.random.normal(jax.random.key(0), (1, size, size + 1, 2))  # H != W
    variables = reference.init(jax.random.key(1), x)
    chex.assert_trees_all_equal(ours.init(jax.random.key(1), x), variables)
    want, got = reference.apply(variables, x), ours.apply(variables, x)
    chex.assert_equal_shape([got, want])
    np.testing.assert_allclose(got, want, atol=1e-5)

    # ...computed without the slow forms: no dilated input, no strided convolution
    jaxpr = str(jax.make_jaxpr(ours.apply)(variables, x))
    if transposed:
        assert "lhs_dilation=(1, 1)" in jaxpr and f"lhs_dilation=({stride}" not in jaxpr
    else:
        assert "conv_general_dilated" not in jaxpr  # a matrix product with the patches
    # plain jnp and lax operations, so autodiff follows; one derivative as a cross-check
    np.testing.assert_allclose(
        jax.grad(lambda v: (ours.apply(variables, v) ** 2).sum())(x),
        jax.grad(lambda v: (reference.apply(variables, v) ** 2).sum())(x),
        rtol=1e-4,
        atol=1e-4,
    )


def test_unsupported_convolutions_take_flaxs_path():
    """Dilated or grouped convolutions, integer padding, or stride 1, are Flax's own
    computation."""
    x = jax.random.normal(jax.random.key(0), (1, 9, 9, 4))
    for kwargs in (
        {"kernel_dilation": 2, "strides": 2},
        {"feature_group_count": 2, "strides": 2},
        {"padding": 1, "strides": 2},
        {},
    ):
        reference, ours = nn.Conv(4, (3, 3), **kwargs), layers.Conv(4, (3, 3), **kwargs)
        variables = reference.init(jax.random.key(1), x)
        np.testing.assert_array_equal(ours.apply(variables, x), reference.apply(variables, x))


@pytest.mark.parametrize(("hw", "c"), [((28, 28), 1), ((32, 32), 3)])
@pytest.mark.parametrize("strides", [(1, 1, 1), (1, 2, 1), (2, 1, 2)])
def test_autoencoder_shapes_and_range(hw, c, strides):
    cfg = AutoencoderConfig(channels=c, features=(4, 8, 8), strides=strides)
    params = init_autoencoder(jax.random.key(0), cfg, hw)
    x = jax.random.uniform(jax.random.key(1), (2, *hw, c))
    y = jax.jit(lambda p, x: SkipAutoencoder(cfg).apply({"params": p}, x))(params, x)
    chex.assert_shape(y, x.shape)
    assert float(y.min()) >= 0 and float(y.max()) <= 1


def test_skip_connections_are_wired_between_mirrored_layers():
    # the same weights with the skips switched off (skip_every beyond the depth) must
    # give a different output: the additive skips are really in the forward pass
    cfg = AutoencoderConfig(channels=1, features=(4, 4, 4), strides=(1, 1, 1), skip_every=1)
    params = init_autoencoder(jax.random.key(0), cfg, (8, 8))
    no_skip = AutoencoderConfig(channels=1, features=(4, 4, 4), strides=(1, 1, 1), skip_every=5)
    x = jax.random.uniform(jax.random.key(1), (1, 8, 8, 1))
    with_skip = SkipAutoencoder(cfg).apply({"params": params}, x)
    without = SkipAutoencoder(no_skip).apply({"params": params}, x)
    assert not np.allclose(with_skip, without)


def test_mask_channel_config_requires_the_mask():
    cfg = AutoencoderConfig(channels=1, features=(4,), strides=(1,), mask_channel=True)
    params = init_autoencoder(jax.random.key(0), cfg, (8, 8))
    assert params["Conv_0"]["kernel"].shape[2] == 2  # image + mask channel
    x = jnp.zeros((1, 8, 8, 1))
    with pytest.raises(ValueError, match="mask"):
        SkipAutoencoder(cfg).apply({"params": params}, x)


def test_config_round_trips_through_dict_and_validates():
    cfg = AutoencoderConfig(channels=3, features=(8, 16), strides=(1, 2), mask_channel=True)
    assert AutoencoderConfig.from_dict(cfg.to_dict()) == cfg
    assert hash(cfg) == hash(AutoencoderConfig.from_dict(cfg.to_dict()))
    with pytest.raises(ValueError, match="strides"):
        AutoencoderConfig(features=(8,), strides=(3,))
    with pytest.raises(ValueError, match="equal length"):
        AutoencoderConfig(features=(8, 8), strides=(1,))


def test_mnist_classifier_logits_and_dropout():
    model = MNISTClassifier()
    apply = jax.jit(model.apply, static_argnames="train")  # one compile, not one per op
    x = jax.random.uniform(jax.random.key(0), (3, 28, 28, 1))
    params = jax.jit(model.init)(jax.random.key(1), x)["params"]
    logits = apply({"params": params}, x)
    chex.assert_shape(logits, (3, 10))
    # layer sizes of MagNet's network: 28-2-2=24 -> 12 -> 8 -> 4, 4*4*64 = 1024 inputs
    assert params["Dense_0"]["kernel"].shape == (1024, 200)
    a = apply({"params": params}, x, train=True, rngs={"dropout": jax.random.key(2)})
    np.testing.assert_array_equal(apply({"params": params}, x), logits)
    assert not np.allclose(a, logits)


def test_cifar_resnet_logits_and_batch_independence_in_inference():
    from remix_jax.models.classifiers import CIFARResNet

    model = CIFARResNet(width=4)
    apply = jax.jit(model.apply)  # one compile per batch size, not one per op
    variables = jax.jit(model.init)(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    x = jax.random.uniform(jax.random.key(1), (3, 32, 32, 3))
    logits = apply(variables, x)
    chex.assert_shape(logits, (3, 10))
    # inference uses the running statistics: an image's logits do not depend on the
    # rest of the batch (attacks rely on it)
    np.testing.assert_allclose(apply(variables, x[:1]), logits[:1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("hw", "c"), [((28, 28), 1), ((32, 32), 3)])
def test_unet_shapes_range_and_mask_use(hw, c):
    cfg = AutoencoderConfig(
        channels=c, features=(4, 8, 8), strides=(1, 2, 2), mask_channel=True, architecture="unet"
    )
    params = init_autoencoder(jax.random.key(0), cfg, hw)
    x = jax.random.uniform(jax.random.key(1), (2, *hw, c))
    ones = jnp.ones((2, *hw, 1))
    module = autoencoder_module(cfg)
    assert type(module).__name__ == "UNet"
    y = jax.jit(lambda p, x, m: module.apply({"params": p}, x, m))(params, x, ones)
    chex.assert_shape(y, x.shape)
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    # the mask channel reaches the network: another mask, another output
    assert not np.allclose(y, module.apply({"params": params}, x, 0 * ones))


def test_unet_config_validates():
    with pytest.raises(ValueError, match="first stride"):
        AutoencoderConfig(features=(4, 8), strides=(2, 2), architecture="unet")
    with pytest.raises(ValueError, match="architecture"):
        AutoencoderConfig(features=(4,), strides=(1,), architecture="vit")
    with pytest.raises(ValueError, match="needs the mask"):
        AutoencoderConfig(features=(4,), strides=(1,), fill="interpolate")
    cfg = AutoencoderConfig(
        channels=3,
        features=(4, 8),
        strides=(1, 2),
        mask_channel=True,
        architecture="unet",
        fill="interpolate",
    )
    assert AutoencoderConfig.from_dict(cfg.to_dict()) == cfg
    # a meta.json written before these fields existed reads as the RED-Net it was
    old = {k: v for k, v in cfg.to_dict().items() if k not in ("architecture", "fill")}
    assert AutoencoderConfig.from_dict(old).architecture == "rednet"


def test_interpolate_fills_hidden_pixels_from_visible_neighbours():
    x = jnp.arange(25.0).reshape(1, 5, 5, 1) / 25
    mask = jnp.ones((1, 5, 5, 1)).at[0, 2, 2, 0].set(0)  # centre hidden
    filled = interpolate_hidden(x * mask, mask)
    neighbours = [x[0, i, j, 0] for i in (1, 2, 3) for j in (1, 2, 3) if (i, j) != (2, 2)]
    np.testing.assert_allclose(filled[0, 2, 2, 0], np.mean(neighbours), rtol=1e-6)
    np.testing.assert_array_equal(filled * mask, x * mask)  # visible pixels untouched
    # an isolated hidden 3x3 block: its centre sees no visible pixel in 3x3, so 5x5
    block = jnp.ones((1, 5, 5, 1)).at[0, 1:4, 1:4, 0].set(0)
    ring = np.asarray(x[0, :, :, 0])[np.asarray(block[0, :, :, 0]) == 1]
    centre = interpolate_hidden(x * block, block)[0, 2, 2, 0]
    np.testing.assert_allclose(centre, ring.mean(), rtol=1e-6)
    # nothing visible: zeros, not NaN
    assert np.isfinite(interpolate_hidden(x, jnp.zeros_like(x))).all()
