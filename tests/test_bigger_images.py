"""Training, defend() and the attacks at 64x64x3 and 224x224x3 (issue 31).

Each size is a dataset registered as the project registers unknown data
(``datasets.derive_spec``), with tiny networks (4 features) and batches of 2, so that
what is checked is that nothing assumes MNIST / CIFAR-10 sizes (strides, pooling,
masks, the classifier's global pool), not what a network learns.
"""

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from remix_jax import components, datasets, defend, objectives, training
from remix_jax.attacks.apgd import apgd
from remix_jax.attacks.cw import cw_l2
from remix_jax.attacks.pgd import pgd
from remix_jax.models.layers import max_pool_2x2

SIZES = [(64, 64, 3), (224, 224, 3)]
TINY = {"features": (4, 4), "strides": (1, 2)}  # one stride-2 layer: H, W must divide by 2
EPSILON = 8 / 255
LEARNING_RATE = 1e-3


@pytest.fixture(scope="module", params=SIZES, ids=lambda s: "{}x{}x{}".format(*s))
def dataset(request):
    """A dataset registered from its image shape, as ``sources.resolve`` does."""
    shape = request.param
    name = "bigger_{}x{}x{}".format(*shape)
    datasets.register(datasets.derive_spec(name, shape, 10, source=f"/{name}"))
    yield name
    datasets.unregister(name)


def uint8_images(shape, batch, seed):
    return np.random.default_rng(seed).integers(0, 256, (batch, *shape), dtype=np.uint8)


def random_like(shapes, seed):
    """Random normal weights (std 0.3) of the shapes of a ``jax.eval_shape`` result: a
    jitted Flax init compiles every layer's initialiser (~8 s per tiny autoencoder on
    the loaded 2-core CPU), a trace compiles nothing."""
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda s: jnp.asarray(rng.normal(0, 0.3, s.shape), s.dtype), shapes)


def fit_one_step(task, shape, folder):
    """One ``training.fit`` step (2 images, batch 2, one epoch) from random weights:
    (the initial weights as numpy arrays, the trained ones, the metadata)."""
    initial = random_like(jax.eval_shape(task.init, jax.random.key(0)), seed=0)
    before = jax.tree.map(np.array, initial)  # the step donates its inputs
    task = task._replace(init=lambda key: initial)
    train = (uint8_images(shape, 2, 1), np.zeros(2, np.int32))
    validation = (uint8_images(shape, 1, 2), np.zeros(1, np.int32))
    config = training.TrainConfig(epochs=1, batch_size=2, save_every=10)
    adam = optax.adam(LEARNING_RATE)
    params, meta = training.fit(
        jax.random.key(1), task, adam, train, validation, config, str(folder), {}, progress=False
    )
    return before, params, meta


def assert_trained(initial, params, meta):
    """One step ran, its validation metrics are finite and it moved the weights as one
    Adam step does: by at most the learning rate each."""
    assert meta["steps"] == 1
    assert all(np.isfinite(v) for v in meta["history"][-1].values())
    assert jax.tree.structure(initial) == jax.tree.structure(params)
    moved = []
    for before, after in zip(jax.tree.leaves(initial), jax.tree.leaves(params), strict=True):
        assert before.shape == after.shape
        moved.append(float(np.max(np.abs(np.asarray(after) - before))))
    assert 0 < max(moved) <= LEARNING_RATE * 1.001, max(moved)


@pytest.mark.parametrize("component", ["reformer", "inpainter"])
def test_one_training_step(dataset, component, tmp_path):
    spec = datasets.get(dataset)
    config = dataclasses.replace(components.default_autoencoder(dataset, component), **TINY)
    task = (
        objectives.denoiser_task(config, spec.hw, spec.reformer_noise)
        if component == "reformer"
        else objectives.inpainter_task(config, spec.hw, spec.n_masks)
    )
    assert_trained(*fit_one_step(task, spec.image_shape, tmp_path))


def test_the_default_classifier_trains_and_classifies_at_this_size(dataset):
    """The derived spec's CIFARResNet: its training loss, gradient and logits have the
    right shapes (traced only: compiling the ResNet would cost most of this file)."""
    spec = datasets.get(dataset)
    model = components.classifier(dataset, width=2)
    task = objectives.classifier_task(model, spec.image_shape)
    variables = jax.eval_shape(task.init, jax.random.key(0))
    images = jax.ShapeDtypeStruct((2, *spec.image_shape), jnp.uint8)
    labels = jax.ShapeDtypeStruct((2,), jnp.int32)

    def gradient(variables, key, images, labels):
        def loss(params):
            return task.loss({**variables, "params": params}, key, images, labels)[0]

        return jax.grad(loss)(variables["params"])

    grad = jax.eval_shape(gradient, variables, jax.random.key(1), images, labels)
    assert jax.tree.map(lambda g: g.shape, grad) == jax.tree.map(
        lambda v: v.shape, variables["params"]
    )
    x = jax.ShapeDtypeStruct((2, *spec.image_shape), jnp.float32)
    assert jax.eval_shape(model.apply, variables, x).shape == (2, spec.num_classes)


def test_defend_keeps_the_shape_and_the_range(dataset):
    spec = datasets.get(dataset)
    params_key, image_key, defend_key = jax.random.split(jax.random.key(1), 3)
    shapes = jax.eval_shape(lambda: components.init_remix(params_key, dataset, **TINY))
    assert shapes.n_masks == 3 and shapes.iterations == 1  # the colour defaults (CIFAR-10's)
    assert shapes.inpainter_config.mask_channel and shapes.inpainter_config.features == (4, 4)
    remix = shapes.replace(
        reformer=random_like(shapes.reformer, 1), inpainter=random_like(shapes.inpainter, 2)
    )
    x = jax.random.uniform(image_key, (2, *spec.image_shape))
    out = jax.jit(defend)(remix, defend_key, x)
    assert out.shape == x.shape and out.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(out))) and float(out.min()) >= 0 and float(out.max()) <= 1
    assert float(jnp.max(jnp.abs(out - x))) > 0


class TinyClassifier(nn.Module):
    """A strided conv, the project's 2x2 max-pool and a dense layer on every feature."""

    @nn.compact
    def __call__(self, x):
        x = max_pool_2x2(nn.relu(nn.Conv(4, (3, 3), strides=2)(x)))
        return nn.Dense(10)(x.reshape(x.shape[0], -1))


@pytest.fixture(scope="module")
def classifier(dataset):
    """A tiny randomly initialised classifier: (logits_fn, two images (2, H, W, C),
    its labels for them (2,))."""
    spec = datasets.get(dataset)
    model = TinyClassifier()
    x = jax.random.uniform(jax.random.key(2), (2, *spec.image_shape))
    variables = random_like(jax.eval_shape(model.init, jax.random.key(3), x), 3)

    def logits_fn(x):
        return model.apply(variables, x)

    logits = logits_fn(x)
    assert logits.shape == (2, spec.num_classes)
    return logits_fn, x, jnp.argmax(logits, axis=-1)


def assert_moved_within(x, adversarial, epsilon):
    assert adversarial.shape == x.shape
    assert float(adversarial.min()) >= 0 and float(adversarial.max()) <= 1
    distance = jnp.max(jnp.abs(adversarial - x), axis=(1, 2, 3))
    assert float(distance.max()) <= epsilon + 1e-6
    assert float(distance.min()) > 0, "an example did not move"


@pytest.mark.parametrize("attack", [pgd, apgd])
def test_ball_attacks_move_within_the_budget(classifier, attack):
    logits_fn, x, labels = classifier
    result = attack(logits_fn, x, labels, key=jax.random.key(3), epsilon=EPSILON, steps=2)
    assert_moved_within(x, result.adversarial, EPSILON)
    assert result.success.shape == (2,)


def test_cw_l2_finds_examples(classifier):
    logits_fn, x, labels = classifier
    result = cw_l2(
        logits_fn,
        x,
        labels,
        binary_search_steps=1,
        max_iterations=5,
        initial_const=10.0,
    )
    assert result.adversarial.shape == x.shape
    assert float(result.adversarial.min()) >= 0 and float(result.adversarial.max()) <= 1
    assert bool(jnp.all(result.success))
    l2 = jnp.sqrt(jnp.sum((result.adversarial - x) ** 2, axis=(1, 2, 3)))
    np.testing.assert_allclose(result.l2, l2, rtol=1e-4)
    assert float(l2.min()) > 0
    predicted = jnp.argmax(logits_fn(result.adversarial), axis=-1)
    assert bool(jnp.all(predicted != labels))


def test_the_default_networks_halve_big_images_first_and_leave_small_ones_alone(dataset):
    """Issue 31's "defaults derived from the image size": 64 px stays at full
    resolution (as MNIST's and CIFAR-10's shipped networks), 224 px is halved twice
    before the main layers (the autoencoders' first strides, the classifier's stem
    pools), and the derived spec's summary says so."""
    spec = datasets.get(dataset)
    expected = {64: 0, 224: 2}[spec.image_shape[0]]
    assert datasets.halvings(spec.hw) == expected
    assert f"stem pools {expected}, the autoencoders' stride-2 layers {expected}" in (
        datasets.summary(spec)
    )
    for component in ("reformer", "inpainter"):
        strides = components.default_autoencoder(dataset, component).strides
        assert strides == (2,) * expected + (1,) * (4 - expected)
    model = components.classifier(dataset)
    assert model.stem_pools == expected  # recorded with the checkpoint's module fields
    x = jax.ShapeDtypeStruct((1, *spec.image_shape), jnp.float32)
    variables = jax.eval_shape(model.init, jax.random.key(0), x)  # pools add no weights

    def flops(module):
        cost = jax.jit(module.apply).lower(variables, x).cost_analysis()
        return (cost[0] if isinstance(cost, list) else cost)["flops"]

    # 224 px: two halvings cut the classifier's cost ~16x (the stem conv stays full-size)
    ratio = flops(model.clone(stem_pools=0)) / flops(model)
    assert ratio == pytest.approx(1.0) if expected == 0 else ratio > 8
    for name in ("mnist", "cifar10"):
        assert datasets.halvings(datasets.get(name).hw) == 0  # the shipped nets unchanged
    # a checkpoint from before the pools were recorded had none, whatever its size
    assert components.classifier(dataset, from_checkpoint=True).stem_pools == 0
    # odd sides (ImageNet's 299 px): the autoencoders keep full resolution, the
    # classifier's pools floor them
    assert (datasets.halvings((299, 299)), datasets.halvings((299, 299), exact=False)) == (0, 3)
    # a side of 2048 px would ask 5 halvings: the four autoencoder layers take 4
    assert datasets.halvings((2048, 2048)) == 5
    spec_2048 = datasets.derive_spec("big2048", (2048, 2048, 3), 2, source="/big2048")
    datasets.register(spec_2048)
    try:
        assert components.default_autoencoder("big2048", "inpainter").strides == (2, 2, 2, 2)
    finally:
        datasets.unregister("big2048")
