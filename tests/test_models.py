import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from remix_jax.models import AutoencoderConfig, MNISTClassifier, SkipAutoencoder, init_autoencoder
from remix_jax.models.layers import avg_pool_2x2, max_pool_2x2


@pytest.mark.parametrize("shape", [(2, 28, 28, 1), (2, 32, 32, 3), (1, 27, 27, 2)])
def test_reshape_max_pool_matches_flax(shape):
    x = jax.random.normal(jax.random.key(0), shape)
    np.testing.assert_array_equal(max_pool_2x2(x), nn.max_pool(x, (2, 2), (2, 2)))
    np.testing.assert_allclose(avg_pool_2x2(x), nn.avg_pool(x, (2, 2), (2, 2)), rtol=1e-6)


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
    x = jax.random.uniform(jax.random.key(0), (3, 28, 28, 1))
    params = model.init(jax.random.key(1), x)["params"]
    logits = model.apply({"params": params}, x)
    chex.assert_shape(logits, (3, 10))
    # layer sizes of MagNet's network: 28-2-2=24 -> 12 -> 8 -> 4, 4*4*64 = 1024 inputs
    assert params["Dense_0"]["kernel"].shape == (1024, 200)
    a = model.apply({"params": params}, x, train=True, rngs={"dropout": jax.random.key(2)})
    np.testing.assert_array_equal(model.apply({"params": params}, x), logits)
    assert not np.allclose(a, logits)


def test_cifar_resnet_logits_and_batch_independence_in_inference():
    from remix_jax.models.classifiers import CIFARResNet

    model = CIFARResNet(width=4)
    variables = model.init(jax.random.key(0), jnp.zeros((1, 32, 32, 3)))
    x = jax.random.uniform(jax.random.key(1), (3, 32, 32, 3))
    logits = model.apply(variables, x)
    chex.assert_shape(logits, (3, 10))
    # inference uses the running statistics: an image's logits do not depend on the
    # rest of the batch (attacks rely on it)
    np.testing.assert_allclose(model.apply(variables, x[:1]), logits[:1], rtol=1e-5, atol=1e-6)
