"""Data from anywhere: an ImageFolder, an .npz folder or a tensorflow-datasets builder is
a dataset; its spec is derived from the data, and bad data fails with one line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from remix_jax import data, datasets

Image = pytest.importorskip("PIL.Image")

# created in this order; the class index is the place in sorted order
CLASSES = ("tulip", "daisy", "rose", "iris", "lily")
SORTED = tuple(sorted(CLASSES))


@pytest.fixture(autouse=True)
def _isolated_registry(monkeypatch):
    """Sources a test registers are removed after it; REMIX_DATA_DIR cannot leak in."""
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)
    before = set(datasets.names())
    yield
    for name in set(datasets.names()) - before:
        datasets.unregister(name)


def class_images(label: int, n: int, shape: tuple[int, ...], seed) -> np.ndarray:
    """n images of class ``label``: faint noise with a bright band at a class's own rows."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 60, (n, *shape), dtype=np.uint8)
    rows = shape[0] // len(CLASSES)
    images[:, label * rows : (label + 1) * rows] += 180
    return images


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(path)


def image_folder(root: Path, per_class: dict, shape=(40, 48, 3)) -> dict:
    """``root/<split>/<class>/NN.png`` for CLASSES; returns split -> (images, labels)."""
    written = {}
    for split, n in per_class.items():
        images, labels = [], []
        for name in CLASSES:
            label = SORTED.index(name)
            batch = class_images(label, n, shape, seed=(label, int(split == "train")))
            for i, image in enumerate(batch):
                write_png(root / split / name / f"{i:02d}.png", image)
            images.append(batch)
            labels += [label] * n
        # loading takes the classes in turn: image i of every class (in label order), i + 1
        order = np.lexsort((labels, np.tile(np.arange(n), len(CLASSES))))
        written[split] = (np.concatenate(images)[order], np.asarray(labels)[order])
    return written


@pytest.fixture
def flowers(tmp_path) -> tuple[Path, dict]:
    root = tmp_path / "flowers"
    return root, image_folder(root, {"train": 4, "test": 2})


def test_an_image_folder_loads_with_its_shape_classes_and_sorted_class_order(flowers, capsys):
    root, written = flowers
    name = data.resolve(str(root))
    spec = datasets.get(name)
    assert (name, spec.display_name, spec.source) == ("flowers", "flowers", str(root))
    assert spec.image_shape == (40, 48, 3) and spec.num_classes == 5
    assert spec.class_names == SORTED
    for split, (want_images, want_labels) in written.items():
        images, labels = data.load(str(root), split)  # by path again: the same dataset
        assert images.dtype == np.uint8 and labels.dtype == np.int32
        np.testing.assert_array_equal(images, want_images)
        np.testing.assert_array_equal(labels, want_labels)
    assert data.load_split("flowers", "test").source == f"image folder {root / 'test'}"
    printed = capsys.readouterr().err
    assert printed.count("registered dataset 'flowers'") == 1  # once, with its defaults
    assert "40x48x3 images, 5 classes (daisy, iris, lily, rose, tulip)" in printed
    assert "n_masks=3" in printed


def test_grayscale_rgba_and_palette_images_are_converted_with_a_note(tmp_path, capsys):
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (3, 16, 20), dtype=np.uint8)
    for i, image in enumerate(gray):
        write_png(tmp_path / "mixed" / "train" / "a" / f"{i}.png", image[..., None])
    rgba = rng.integers(0, 256, (16, 20, 4), dtype=np.uint8)
    write_png(tmp_path / "mixed" / "train" / "b" / "0.png", rgba)
    Image.fromarray(rgba[..., :3]).convert("P").save(tmp_path / "mixed" / "train" / "b" / "1.png")
    images, labels = data.load(str(tmp_path / "mixed"), "train")
    # the classes in turn: a/0, b/0, a/1, b/1, a/2
    assert images.shape == (5, 16, 20, 3) and list(labels) == [0, 1, 0, 1, 0]
    for channel in range(3):  # gray copied to R, G and B
        np.testing.assert_array_equal(images[[0, 2, 4], ..., channel], gray)
    np.testing.assert_array_equal(images[1], rgba[..., :3])  # alpha dropped
    note = "converted to RGB: 3 L, 1 P, 1 RGBA images (alpha dropped, palette expanded, gray"
    assert note in capsys.readouterr().err
    # all grayscale: one channel, nothing to say
    for label in range(2):
        for i in range(2):
            write_png(tmp_path / "gray" / "train" / str(label) / f"{i}.png", gray[i][..., None])
    images, _ = data.load(str(tmp_path / "gray"), "train")
    assert images.shape == (4, 16, 20, 1)
    assert "converted" not in capsys.readouterr().err


def _bad_folder(root: Path, fault: str) -> None:
    image_folder(root, {"train": 2, "test": 1})
    class_dir = root / "train" / SORTED[0]
    if fault == "sizes":
        write_png(class_dir / "small.png", np.zeros((32, 32, 3), np.uint8))
    elif fault == "empty":
        (root / "train" / "sunflower").mkdir()
    elif fault == "not an image":
        (class_dir / "notes.txt").write_text("not a picture")
    elif fault == "unreadable":
        (class_dir / "fake.png").write_bytes(b"hello")
    elif fault == "truncated":
        write_png(class_dir / "cut.png", class_images(0, 1, (40, 48, 3), seed=1)[0])
        content = (class_dir / "cut.png").read_bytes()
        (class_dir / "cut.png").write_bytes(content[: len(content) // 2])
    elif fault == "one class":
        for name in SORTED[1:]:
            for path in (root / "train" / name).iterdir():
                path.unlink()
            (root / "train" / name).rmdir()


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ("sizes", r"images of different sizes: .*small\.png is 32x32 \(H x W\), .*png 40x48"),
        ("empty", r"sunflower: empty class folder"),
        ("not an image", r"notes\.txt: not an image \(expected \.png, \.jpg, \.jpeg\)"),
        ("unreadable", r"fake\.png: not a readable image"),
        ("truncated", r"cut\.png: corrupt image"),
        ("one class", r"one class \(daisy\) only"),
    ],
)
def test_bad_image_folders_fail_with_one_line_naming_the_file(tmp_path, fault, message):
    root = tmp_path / "bad"
    _bad_folder(root, fault)
    with pytest.raises(ValueError, match=message) as caught:
        data.load(str(root), "train")
    assert "\n" not in str(caught.value)


def test_a_missing_split_or_unknown_class_is_named(flowers, tmp_path):
    root, _ = flowers
    with pytest.raises(
        FileNotFoundError, match=r"no split 'validation' \(it has \['test', 'train'\]\)"
    ):
        data.load(str(root), "validation")
    write_png(root / "test" / "sunflower" / "0.png", np.zeros((40, 48, 3), np.uint8))
    with pytest.raises(ValueError, match=r"class folders \['sunflower'\] are not among"):
        data.load(str(root), "test")
    with pytest.raises(ValueError, match="dataset must be one of.*got 'no/such/folder'"):
        data.load("no/such/folder", "train")
    image_folder(tmp_path / "mnist", {"train": 1})  # named like a project dataset
    with pytest.raises(ValueError, match="'mnist', a name taken by a project dataset"):
        data.resolve(str(tmp_path / "mnist"))


def test_an_npz_folder_gets_its_shape_and_classes_from_the_data(tmp_path):
    folder = tmp_path / "scans"
    folder.mkdir()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 10, 12, 1), dtype=np.uint8)
    np.savez(folder / "train.npz", image=images, label=[0, 1, 2, 0, 1, 2])
    np.savez(folder / "test.npz", image=images[:2], label=[2, 7])
    spec = datasets.get(data.resolve(str(folder)))
    assert (spec.image_shape, spec.num_classes, spec.class_names) == ((10, 12, 1), 3, ())
    assert spec.n_masks == 2 and spec.reformer_noise == 0.1  # MNIST's, for grayscale
    np.testing.assert_array_equal(data.load(str(folder), "train")[0], images)
    with pytest.raises(ValueError, match=r"in \[0, 3\) \(counted in the training labels"):
        data.load(str(folder), "test")
    # a class_names array sets the number of classes; labels beyond it are refused
    named = tmp_path / "named"
    named.mkdir()
    np.savez(named / "train.npz", image=images, label=[0, 1, 5, 0, 1, 2], class_names=["a", "b"])
    assert datasets.get(data.resolve(str(named))).class_names == ("a", "b")
    with pytest.raises(ValueError, match=r"in \[0, 2\)"):
        data.load(str(named), "train")
    one = tmp_path / "one"
    one.mkdir()
    np.savez(one / "train.npz", image=images, label=np.zeros(6, int))
    with pytest.raises(ValueError, match="one class only"):
        data.resolve(str(one))


def test_the_cli_flag_takes_a_folder_and_reports_bad_data_in_one_line(flowers, tmp_path, capsys):
    from train import common

    root, _ = flowers
    parser = common.parser("x", epochs=1, batch_size=1, learning_rate=1.0)
    assert parser.parse_args(["--dataset", str(root)]).dataset == "flowers"
    _bad_folder(tmp_path / "bad", "empty")
    with pytest.raises(SystemExit) as caught:
        parser.parse_args(["--dataset", str(tmp_path / "bad")])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert "argument --dataset: " in err and "sunflower: empty class folder" in err


def test_derived_defaults_follow_channels_and_scale_l2_budgets_with_image_size():
    gray = datasets.derive_spec("g", (28, 28, 1), 3, source="/g")
    colour = datasets.derive_spec("c", (224, 224, 3), 1000, source="/c")
    mnist, cifar = datasets.get("mnist"), datasets.get("cifar10")
    assert (gray.n_masks, gray.reformer_noise) == (mnist.n_masks, mnist.reformer_noise)
    assert (colour.n_masks, colour.reformer_noise) == (cifar.n_masks, cifar.reformer_noise)
    assert gray.pgd_budgets == mnist.pgd_budgets  # MNIST's size: MNIST's budgets
    assert colour.pgd_budgets["linf"] == cifar.pgd_budgets["linf"]
    scale = math.sqrt(224 * 224 / (32 * 32))
    for got, base in zip(colour.pgd_budgets["l2"], cifar.pgd_budgets["l2"], strict=True):
        assert got == pytest.approx(base * scale, rel=1e-3)
    assert colour.classifier == datasets.DERIVED_CLASSIFIER and colour.magnet is None
    with pytest.raises(ValueError, match="too small"):
        datasets.derive_spec("t", (4, 4, 1), 2, source="/t")


@pytest.mark.parametrize("name", ["mnist", "cifar10", "derived"])
def test_a_spec_survives_the_json_of_a_checkpoint(name):
    spec = (
        datasets.derive_spec("d", (40, 48, 3), 5, source="/d", class_names=SORTED)
        if name == "derived"
        else datasets.get(name)
    )
    assert datasets.spec_from_dict(json.loads(json.dumps(datasets.spec_to_dict(spec)))) == spec
    with pytest.raises(ValueError, match="not DatasetSpec fields"):
        datasets.spec_from_dict({**datasets.spec_to_dict(spec), "colour": "blue"})


# --- tensorflow-datasets ------------------------------------------------------------------


def test_tfds_names_that_are_unknown_or_not_image_classification_are_refused(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(ValueError, match="no dataset 'no_such_dataset'.*must be local") as caught:
        data.resolve("tfds:no_such_dataset", str(tmp_path))
    assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match="not an image-classification dataset.*'text': 'Text'"):
        data.resolve("tfds:imdb_reviews", str(tmp_path))
    with pytest.raises(ValueError, match=r"images of shape \(None, None, 3\)"):
        data.resolve("tfds:tf_flowers", str(tmp_path))
    # known but not prepared, and no downloads: the data must be local
    with pytest.raises(FileNotFoundError, match="not prepared in .*must be local"):
        data.load("tfds:mnist", "test", str(tmp_path), download=False)


TOY36_CLASSES = ("circle", "square", "star")


def build_toy36(data_dir: Path, content: dict) -> None:
    """Prepares ``tfds:toy36`` in ``data_dir`` with tensorflow-datasets' own builder API:
    36x36 grayscale, 3 classes, ``content`` split -> (images, labels); afterwards it is
    found from its files alone (the builder is not registered)."""
    tfds = pytest.importorskip("tensorflow_datasets")
    pytest.importorskip("tensorflow")

    class Toy36(tfds.core.GeneratorBasedBuilder, skip_registration=True):
        VERSION = tfds.core.Version("1.0.0")

        def _info(self):
            return tfds.core.DatasetInfo(
                builder=self,
                features=tfds.features.FeaturesDict(
                    {
                        "image": tfds.features.Image(shape=(36, 36, 1)),
                        "label": tfds.features.ClassLabel(names=list(TOY36_CLASSES)),
                    }
                ),
                supervised_keys=("image", "label"),
                disable_shuffling=True,  # generation order, so that the test can compare
            )

        def _split_generators(self, dl_manager):
            return {split: self._generate_examples(split) for split in content}

        def _generate_examples(self, split):
            images, labels = content[split]
            for i, (image, label) in enumerate(zip(images, labels, strict=True)):
                yield i, {"image": image, "label": int(label)}

    Toy36(data_dir=str(data_dir)).download_and_prepare()


def toy36_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n 36x36x1 images, classes in turn (0, 1, 2, 0, ...), each with its own band."""
    labels = np.arange(n) % len(TOY36_CLASSES)
    images = np.concatenate(
        [class_images(int(label), 1, (36, 36, 1), seed=(seed, i)) for i, label in enumerate(labels)]
    )
    return images, labels


@pytest.mark.slow
def test_a_tfds_dataset_built_locally_loads_through_its_tfds_name(tmp_path):
    content = {"train": toy36_split(6, 0), "test": toy36_split(3, 1)}
    build_toy36(tmp_path, content)
    name = data.resolve("tfds:toy36", str(tmp_path))
    spec = datasets.get(name)
    assert name == "tfds_toy36" and spec.source == "tfds:toy36"
    assert (spec.image_shape, spec.class_names) == ((36, 36, 1), TOY36_CLASSES)
    for split, (want_images, want_labels) in content.items():
        split_ = data.load_split("tfds:toy36", split, str(tmp_path), download=False)
        np.testing.assert_array_equal(split_.images, want_images)
        np.testing.assert_array_equal(split_.labels, want_labels)
    assert split_.source == "tensorflow-datasets toy36:1.0.0"
    with pytest.raises(FileNotFoundError, match=r"no split 'validation' \(it has"):
        data.load("tfds:toy36", "validation", str(tmp_path), download=False)


# --- end to end ----------------------------------------------------------------------------


def _image_folder_source(tmp_path: Path) -> tuple[list[str], str, dict, tuple, tuple]:
    """The flags naming the data, its registry name, each split's origin, the image
    shape and the class names: an ImageFolder of 40x48 RGB PNGs, 5 classes."""
    root = tmp_path / "flowers"
    image_folder(root, {"train": 10, "test": 2})  # 50 + 10 images
    origins = {split: f"image folder {root / split}" for split in ("train", "test")}
    return ["--dataset", str(root)], "flowers", origins, (40, 48, 3), SORTED


def _tfds_source(tmp_path: Path) -> tuple[list[str], str, dict, tuple, tuple]:
    """The same for a tensorflow-datasets dataset built locally with tfds's own builder
    API (36x36 grayscale, 3 classes); --data-dir after --dataset names its folder."""
    build_toy36(tmp_path / "tfds", {"train": toy36_split(50, 0), "test": toy36_split(10, 1)})
    origin = "tensorflow-datasets toy36:1.0.0"
    flags = ["--dataset", "tfds:toy36", "--data-dir", str(tmp_path / "tfds")]
    return flags, "tfds_toy36", {"train": origin, "test": origin}, (36, 36, 1), TOY36_CLASSES


@pytest.mark.slow
@pytest.mark.parametrize("source", [_image_folder_source, _tfds_source], ids=["folder", "tfds"])
def test_a_data_source_trains_and_defends_through_the_clis(source, tmp_path, monkeypatch):
    """train.classifier, .reformer, .inpainter -> load_pretrained -> defend, each as its
    command line runs it, on data that the registry does not know: an ImageFolder of
    PNGs (40x48 RGB, 5 classes), and a tensorflow-datasets dataset (its spec derived
    from the builder: grayscale 36x36, so n = 2), whose run stops after the classifier:
    every trainer reads its data through train/common.py. From here on the commands
    read their data as the trainers did (data.load_split, by the registry name the
    first command gave it): tests/test_new_dataset.py goes on to the sweep and the
    figure."""
    import jax

    from remix_jax import checkpoints, defend, load_pretrained, pretrained, runtime
    from train import classifier, inpainter, reformer

    monkeypatch.setenv("REMIX_JAX_CPU_FLAGS", "0")  # the backend already runs here
    monkeypatch.setattr(runtime, "use_full_precision", lambda: None)  # process-wide
    monkeypatch.chdir(tmp_path)  # nothing lands in the checkout's results/
    dataset, name, origins, shape, class_names = source(tmp_path)
    ckpt = tmp_path / "ckpt"
    # validation as large as the test split: one evaluation program serves both
    common = [*dataset, "--no-progress", "--validation-size", "10"]
    classifier.main(
        [*common, "--epochs", "3", "--batch-size", "8", "--width", "4",
         "--checkpoint-dir", str(ckpt / name / "classifier")]
    )  # fmt: skip
    components = ["classifier"]
    if source is _image_folder_source:
        for trainer, component in ((reformer, "reformer"), (inpainter, "inpainter")):
            trainer.main(
                [*common, "--epochs", "1", "--batch-size", "8", "--features", "4", "4",
                 "--checkpoint-dir", str(ckpt / name / component)]
            )  # fmt: skip
            components.append(component)
    spec = datasets.get(name)  # derived from the data when the first command parsed it
    assert (spec.image_shape, spec.class_names) == (shape, class_names)
    assert spec.num_classes == len(class_names)
    assert spec.n_masks == (3 if shape[2] == 3 else 2)  # derived from the channels
    meta_of = {}
    for component in components:
        meta = meta_of[component] = checkpoints.read_metadata(str(ckpt / name / component))
        assert (meta["dataset"], meta["test"]["images"]) == (name, 10)
        assert meta["data_source"] == origins["train"]
        assert datasets.spec_from_dict(meta["dataset_spec"]) == spec
    # held out of the classes in turn, the validation images are of every class: they
    # are classified above chance (class by class, they were the last class, never trained)
    assert meta_of["classifier"]["history"][-1]["accuracy"] > 1 / len(class_names)
    x = jax.random.uniform(jax.random.key(0), (3, *shape))
    if source is _tfds_source:
        model, weights = pretrained.load_classifier(name, str(ckpt))
        logits = model.apply(pretrained.as_variables(weights), x)
        assert logits.shape == (3, len(class_names))
        return

    pre = load_pretrained(name, str(ckpt))
    assert pre.remix.n_masks == spec.n_masks  # the inpainter trained with the derived n
    restored = defend(pre.remix, jax.random.key(1), x)
    assert restored.shape == x.shape and restored.min() >= 0 and restored.max() <= 1
    assert pre.logits_fn(restored).shape == (3, len(class_names))
