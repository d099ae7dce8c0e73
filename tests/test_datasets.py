"""The dataset registry: one place names a dataset; registering one more is one call."""

import os
import subprocess
import sys

import numpy as np
import pytest

from remix_jax import components, data, datasets

TOY = datasets.DatasetSpec(
    name="toy5",
    display_name="Toy-5",
    image_shape=(8, 8, 3),
    num_classes=5,
    n_masks=2,
    reformer_noise=0.05,
    kappa_grid=(0, 1),
    classifier="remix_jax.models.classifiers:MNISTClassifier",
)


@pytest.fixture
def toy():
    datasets.register(TOY)
    yield TOY
    datasets.unregister(TOY.name)


def test_the_shipped_datasets_are_registered_with_their_settings():
    assert datasets.names()[:2] == ["mnist", "cifar10"] and datasets.default() == "mnist"
    mnist, cifar = datasets.get("mnist"), datasets.get("cifar10")
    assert (mnist.image_shape, mnist.n_masks, cifar.image_shape, cifar.n_masks) == (
        (28, 28, 1),
        2,
        (32, 32, 3),
        3,
    )
    assert cifar.kappa_grid == tuple(range(0, 101, 10))
    assert mnist.detector_drop_rates[0] == 0.001 and cifar.detector_drop_rates[0] == 0.005
    assert datasets.file_suffix("mnist") == "" and datasets.file_suffix("cifar10") == "_cifar10"


def test_unknown_names_and_bad_specs_are_refused():
    with pytest.raises(ValueError, match=r"one of \['mnist', 'cifar10'.*got 'svhn'"):
        datasets.get("svhn")
    with pytest.raises(ValueError, match="already registered"):
        datasets.register(datasets.get("mnist"))
    with pytest.raises(TypeError, match="DatasetSpec"):
        datasets.register({"name": "x"})
    good = dict(
        name="x",
        display_name="X",
        image_shape=(8, 8, 1),
        num_classes=3,
        n_masks=2,
        reformer_noise=0.1,
        kappa_grid=(0,),
    )
    for field, value, message in [
        ("image_shape", (8, 8), "image_shape"),
        ("image_shape", (8, 8, 2), "image_shape"),
        ("num_classes", 1, "num_classes"),
        ("n_masks", 1, "n_masks"),
        ("name", "a/b", "name"),
    ]:
        with pytest.raises(ValueError, match=message):
            datasets.DatasetSpec(**{**good, field: value})


def test_a_registered_dataset_loads_and_gets_its_components(toy, tmp_path):
    rng = np.random.default_rng(0)
    folder = tmp_path / "toy5"
    folder.mkdir()
    images = rng.integers(0, 256, (6, 8, 8, 3), dtype=np.uint8)
    np.savez(folder / "test.npz", image=images, label=np.arange(6) % 5, source="made here")
    got, labels = data.load("toy5", "test", str(tmp_path))
    np.testing.assert_array_equal(got, images)
    # labels beyond the dataset's classes are refused: num_classes comes from the spec
    np.savez(folder / "train.npz", image=images, label=np.full(6, 5), source="made here")
    with pytest.raises(ValueError, match=r"\[0, 5\)"):
        data.load("toy5", "train", str(tmp_path))
    assert components.default_autoencoder("toy5", "inpainter").channels == 3
    assert components.classifier("toy5").num_classes == 5
    assert components.checkpoint_dir("toy5", "inpainter", "/r") == os.path.join(
        "/r", "toy5", "inpainter"
    )
    with pytest.raises(ValueError, match="no MagNet"):
        components.magnet_official_names("toy5")
    from train import common  # a CLI's --dataset choices come from the registry

    assert (
        common.parser("x", epochs=1, batch_size=1, learning_rate=1.0)
        .parse_args(["--dataset", "toy5"])
        .dataset
        == "toy5"
    )


def test_registry_imports_no_jax():
    code = "import sys, remix_jax.datasets; assert 'jax' not in sys.modules, 'jax imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
