"""Tests for remix_jax.data: local .npz layouts, the real shared data, and tensorflow-datasets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from remix_jax import data

SHARED_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def _images(n: int, seed: int, shape: tuple[int, ...] = (28, 28, 1)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, *shape), dtype=np.uint8)


def _write(path: Path, image: np.ndarray, label: np.ndarray, source: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, image=image, label=label, source=np.array(source))


@pytest.fixture(autouse=True)
def _no_env_data_dir(monkeypatch):
    """Each test starts without REMIX_DATA_DIR, so the developer's shell cannot leak in."""
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)


@pytest.fixture
def fake_dir(tmp_path: Path) -> dict:
    """A data folder with mnist/test.npz (one file) and mnist/train as two shards."""
    test_img, test_lab = _images(3, 0), np.array([7, 2, 1], np.uint8)
    train_a, lab_a = _images(4, 1), np.array([0, 1, 2, 3], np.uint8)
    train_b, lab_b = _images(2, 2), np.array([9, 8], np.uint8)
    _write(tmp_path / "mnist" / "test.npz", test_img, test_lab, "fake test")
    _write(tmp_path / "mnist" / "train-00000-of-00002.npz", train_a, lab_a, "fake shard a")
    _write(tmp_path / "mnist" / "train-00001-of-00002.npz", train_b, lab_b, "fake shard b")
    return {
        "dir": tmp_path,
        "test": (test_img, test_lab),
        "train": (np.concatenate([train_a, train_b]), np.concatenate([lab_a, lab_b])),
    }


# --- local layouts -------------------------------------------------------------------------


def test_single_file_split_loads_pixels_labels_and_dtypes(fake_dir):
    images, labels = data.load("mnist", "test", str(fake_dir["dir"]))
    want_img, want_lab = fake_dir["test"]
    assert images.dtype == np.uint8
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(images, want_img)
    np.testing.assert_array_equal(labels, want_lab)


def test_single_file_split_reports_its_source(fake_dir):
    split = data.load_split("mnist", "test", str(fake_dir["dir"]))
    assert split.source == "fake test"


def test_shards_are_concatenated_in_order(fake_dir):
    images, labels = data.load("mnist", "train", str(fake_dir["dir"]))
    want_img, want_lab = fake_dir["train"]
    assert images.shape == (6, 28, 28, 1)
    assert images.dtype == np.uint8
    assert labels.dtype == np.int32
    np.testing.assert_array_equal(images, want_img)
    np.testing.assert_array_equal(labels, want_lab)


def test_shards_with_distinct_sources_join_them_in_order(fake_dir):
    split = data.load_split("mnist", "train", str(fake_dir["dir"]))
    assert split.source == "fake shard a; fake shard b"


def test_shards_with_one_source_report_it_once(tmp_path):
    for i in range(2):
        _write(
            tmp_path / "mnist" / f"train-0000{i}-of-00002.npz",
            _images(1, i),
            np.array([i]),
            "same origin",
        )
    assert data.load_split("mnist", "train", str(tmp_path)).source == "same origin"


def test_data_dir_from_environment_variable(fake_dir, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(fake_dir["dir"]))
    # download=False: if the variable were ignored, fail fast instead of trying the network.
    images, labels = data.load("mnist", "test", download=False)
    np.testing.assert_array_equal(images, fake_dir["test"][0])
    np.testing.assert_array_equal(labels, fake_dir["test"][1])


def test_argument_data_dir_overrides_environment(fake_dir, monkeypatch, tmp_path_factory):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path_factory.mktemp("empty")))
    images, _ = data.load("mnist", "test", str(fake_dir["dir"]))
    np.testing.assert_array_equal(images, fake_dir["test"][0])


def test_missing_shard_raises_file_not_found(tmp_path):
    _write(
        tmp_path / "mnist" / "train-00000-of-00002.npz",
        _images(2, 0),
        np.array([0, 1]),
        "only shard",
    )
    with pytest.raises(FileNotFoundError, match="incomplete"):
        data.load("mnist", "train", str(tmp_path))


def test_shards_of_different_sets_are_rejected(tmp_path):
    for name in ("train-00000-of-00002.npz", "train-00000-of-00003.npz"):
        _write(tmp_path / "mnist" / name, _images(2, 0), np.array([0, 1]), "mixed")
    with pytest.raises(FileNotFoundError, match="mixed"):
        data.load("mnist", "train", str(tmp_path))


def test_labels_out_of_range_are_rejected(tmp_path):
    _write(tmp_path / "mnist" / "test.npz", _images(2, 0), np.array([0, 10]), "bad labels")
    with pytest.raises(ValueError, match="labels"):
        data.load("mnist", "test", str(tmp_path))


@pytest.mark.parametrize("content", [b"not a zip file", None])
def test_unreadable_file_is_named_without_numpy_s_pickle_advice(tmp_path, content):
    path = tmp_path / "mnist" / "test.npz"
    os.makedirs(path.parent)
    if content is None:  # an object array: numpy would suggest allow_pickle=True
        np.savez(path, image=np.array([object()]), label=np.array([0]))
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError, match="test.npz") as info:
        data.load("mnist", "test", str(tmp_path))
    assert "allow_pickle" not in str(info.value)


def test_missing_folder_from_argument_names_data_dir(tmp_path):
    with pytest.raises(FileNotFoundError, match="data_dir"):
        data.load("mnist", "test", str(tmp_path / "nowhere"))


def test_missing_folder_from_environment_names_the_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=data.DATA_DIR_ENV):
        data.load("mnist", "test", download=False)


def test_missing_split_in_existing_folder_raises_file_not_found(fake_dir):
    with pytest.raises(FileNotFoundError, match="test"):
        data.load("cifar10", "test", str(fake_dir["dir"]))


@pytest.mark.parametrize("shape", [(28, 28), (28, 28, 3), (32, 32, 1)])
def test_wrong_image_shape_raises_value_error(tmp_path, shape):
    _write(tmp_path / "mnist" / "test.npz", _images(2, 0, shape), np.array([0, 1]), "bad")
    with pytest.raises(ValueError, match="expected uint8 images"):
        data.load("mnist", "test", str(tmp_path))


def test_non_uint8_images_raise_value_error(tmp_path):
    image = _images(2, 0).astype(np.float32)
    _write(tmp_path / "mnist" / "test.npz", image, np.array([0, 1]), "float")
    with pytest.raises(ValueError, match="uint8"):
        data.load("mnist", "test", str(tmp_path))


def test_label_count_mismatch_raises_value_error(tmp_path):
    _write(tmp_path / "mnist" / "test.npz", _images(3, 0), np.array([0, 1]), "short labels")
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        data.load("mnist", "test", str(tmp_path))


def test_file_without_labels_raises_value_error(tmp_path):
    (tmp_path / "mnist").mkdir()
    np.savez(tmp_path / "mnist" / "test.npz", image=_images(2, 0))
    with pytest.raises(ValueError, match="label"):
        data.load("mnist", "test", str(tmp_path))


@pytest.mark.parametrize(
    ("dataset", "split", "word"),
    [
        ("fashion_mnist", "test", "dataset"),
        ("MNIST", "test", "dataset"),
        ("mnist", "validation", "split"),
        ("cifar10", "Train", "split"),
    ],
)
def test_bad_dataset_or_split_name_raises_value_error(fake_dir, dataset, split, word):
    with pytest.raises(ValueError, match=word):
        data.load(dataset, split, str(fake_dir["dir"]))


def test_to_float_scales_uint8_to_unit_float32():
    images = np.array([[0, 51], [128, 255]], np.uint8).reshape(1, 2, 2, 1)
    out = data.to_float(images)
    assert out.dtype == np.float32
    assert out.shape == images.shape
    assert out.min() == 0.0 and out.max() == 1.0
    np.testing.assert_allclose(out.ravel(), [0.0, 0.2, 128 / 255, 1.0], rtol=1e-6)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.uint16])
def test_to_float_rejects_non_uint8(dtype):
    with pytest.raises(TypeError, match="uint8"):
        data.to_float(np.zeros((1, 28, 28, 1), dtype))


# --- the real data in the shared folder ----------------------------------------------------


# The autouse fixture removes REMIX_DATA_DIR before each test, so the user's value is read
# once, at import.
_USER_DATA_DIR = os.environ.get(data.DATA_DIR_ENV)


@pytest.fixture
def real_dir() -> str:
    """The shared data folder (user's REMIX_DATA_DIR, else <repo>/../shared/data) or skip."""
    folder = _USER_DATA_DIR or str(SHARED_DATA)
    if not os.path.isdir(folder):
        pytest.skip(f"no shared data folder at {folder} (set {data.DATA_DIR_ENV} to run)")
    return folder


@pytest.mark.slow
def test_real_mnist_test_split_is_official_order(real_dir):
    split = data.load_split("mnist", "test", real_dir)
    assert split.images.shape == (10000, 28, 28, 1)
    assert split.images.dtype == np.uint8
    assert split.labels.dtype == np.int32
    np.testing.assert_array_equal(split.labels[:10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9])
    assert split.source


@pytest.mark.slow
def test_real_cifar10_test_split_is_official_order(real_dir):
    images, labels = data.load("cifar10", "test", real_dir)
    assert images.shape == (10000, 32, 32, 3)
    assert images.dtype == np.uint8
    np.testing.assert_array_equal(labels[:5], [3, 8, 8, 0, 6])


@pytest.mark.slow
def test_real_cifar10_train_shards_hold_all_images(real_dir):
    images, labels = data.load("cifar10", "train", real_dir)
    assert images.shape == (50000, 32, 32, 3)
    assert labels.shape == (50000,)
    assert set(np.unique(labels)) == set(range(10))


# --- tensorflow-datasets, offline ----------------------------------------------------------


def _prepare_fake_tfds_mnist(tfds_dir: str) -> dict:
    """Writes a tiny "mnist" with tfds's builder API into ``tfds_dir``; returns its content."""
    import tensorflow_datasets as tfds

    content = {
        "train": (_images(4, 10), np.array([1, 2, 3, 4])),
        "test": (_images(3, 11), np.array([7, 0, 9])),
    }

    class FakeMnist(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        """Stands in for tfds' mnist: same name, version and features, a few images."""

        name = "mnist"
        VERSION = tfds.builder_cls("mnist").VERSION

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict(
                    {
                        "image": tfds.features.Image(shape=(28, 28, 1)),
                        "label": tfds.features.ClassLabel(num_classes=10),
                    }
                ),
                supervised_keys=("image", "label"),
                disable_shuffling=True,  # keep generation order, so the test can check it
            )

        def _split_generators(self, dl_manager):
            return {name: self._generate_examples(name) for name in content}

        def _generate_examples(self, split):
            images, labels = content[split]
            for i, (image, label) in enumerate(zip(images, labels, strict=True)):
                yield i, {"image": image, "label": int(label)}

    FakeMnist(data_dir=tfds_dir).download_and_prepare()
    return content


@pytest.mark.slow
def test_tfds_path_reads_prepared_dataset_offline(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    pytest.importorskip("tensorflow")
    content = _prepare_fake_tfds_mnist(str(tmp_path))
    for split_name, (want_img, want_lab) in content.items():
        images, labels = data.load(
            "mnist", split_name, data_dir=None, tfds_dir=str(tmp_path), download=False
        )
        assert images.dtype == np.uint8
        assert labels.dtype == np.int32
        np.testing.assert_array_equal(images, want_img)
        np.testing.assert_array_equal(labels, want_lab)
    split = data.load_split("mnist", "test", tfds_dir=str(tmp_path), download=False)
    assert split.source.startswith("tensorflow-datasets")


def test_tfds_path_without_data_or_download_names_the_variable(tmp_path, caplog):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(FileNotFoundError, match=data.DATA_DIR_ENV):
        data.load("mnist", "test", tfds_dir=str(tmp_path), download=False)
    # said before tensorflow-datasets starts, as without a network it retries for minutes
    assert any(data.DATA_DIR_ENV in r.getMessage() for r in caplog.records)
