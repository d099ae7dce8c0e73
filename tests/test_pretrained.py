"""The shipped checkpoints: they load, and their committed metrics are true."""

import json
import os

import jax
import numpy as np
import pytest

from remix_jax import checkpoints, components, data, datasets, evaluation, progress
from remix_jax.models.classifiers import as_variables
from remix_jax.pretrained import load_classifier, load_pretrained

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MNIST_DIR = os.path.join(REPO, "checkpoints", "mnist")


@pytest.fixture(scope="module")
def mnist():
    if not os.path.isdir(os.path.join(MNIST_DIR, "inpainter")):
        pytest.skip("no MNIST checkpoints committed")
    return load_pretrained("mnist", os.path.join(REPO, "checkpoints"))


@pytest.fixture(scope="module")
def mnist_test(data_dir):
    return data.load("mnist", "test", data_dir)


@pytest.mark.slow
def test_shipped_mnist_classifier_scores_at_least_99_3_percent(mnist, mnist_test):
    images, labels = mnist_test
    accuracy = np.mean(evaluation.predict(mnist.logits_fn, data.to_float(images)) == labels)
    assert accuracy >= 0.993
    recorded = checkpoints.read_metadata(os.path.join(MNIST_DIR, "classifier"))["test"]
    assert abs(recorded["accuracy"] - accuracy) < 1e-3  # meta.json tells the truth


@pytest.mark.slow
def test_shipped_remix_keeps_clean_accuracy_within_one_point(mnist, mnist_test):
    images, labels = mnist_test
    x = data.to_float(images[:1000])  # all 10,000: results/mnist/clean.json (-0.28 points)
    bare = np.mean(evaluation.predict(mnist.logits_fn, x) == labels[:1000])
    defended = evaluation.remix_predict(mnist.logits_fn, mnist.remix, jax.random.key(0), x)
    assert bare - np.mean(defended == labels[:1000]) < 0.01


@pytest.mark.slow
def test_shipped_cifar10_classifier_scores_at_least_88_percent(data_dir):
    """The first 1000 test images here; all 10,000 in the committed eval.clean run,
    whose bare row must be what the checkpoint's meta.json records."""
    folder = os.path.join(REPO, "checkpoints", "cifar10", "classifier")
    if not os.path.isdir(folder):
        pytest.skip("no CIFAR-10 classifier committed")
    model, weights = load_classifier("cifar10", os.path.join(REPO, "checkpoints"))
    images, labels = data.load("cifar10", "test", data_dir)
    variables = as_variables(weights)
    x = data.to_float(images[:1000])
    predictions = evaluation.predict(lambda x: model.apply(variables, x), x)
    assert np.mean(predictions == labels[:1000]) >= 0.88
    meta = checkpoints.read_metadata(folder)
    assert meta["test"]["images"] == 10000 and meta["test"]["accuracy"] >= 0.88
    _, rows = committed_clean_results("cifar10")
    assert abs(100 * meta["test"]["accuracy"] - rows["none"]["accuracy"]) < 0.1
    train = meta["train"]
    assert meta["steps"] == train["epochs"] * (train["train_images"] // train["batch_size"])


def test_remix_params_carry_the_trained_settings(mnist):
    assert mnist.remix.n_masks == datasets.get("mnist").n_masks == 2
    assert mnist.remix.reformer is not None and mnist.remix.iterations == 1
    meta = checkpoints.read_metadata(os.path.join(MNIST_DIR, "inpainter"))
    for key in ("command", "git_commit", "machine", "train_seconds", "test"):
        assert key in meta


def committed_clean_results(dataset):
    """results/<dataset>/clean.json and its rows by defense (skips if not committed)."""
    path = os.path.join(REPO, "results", dataset, "clean.json")
    if not os.path.isfile(path):
        pytest.skip(f"results/{dataset}/clean.json not committed yet")
    with open(path) as f:
        result = json.load(f)
    assert result["images"] == 10000 and "command" in result and "machine" in result
    return result, {row["defense"]: row for row in result["rows"]}


def test_committed_clean_results_are_consistent(mnist):
    result, rows = committed_clean_results("mnist")
    # scored with the shipped REMIX's very weights
    assert result["inpainter_weights"] == progress.fingerprint(mnist.remix.inpainter)
    assert result["reformer_weights"] == progress.fingerprint(mnist.remix.reformer)
    bare = rows["none"]["accuracy"]
    assert bare >= 99.3
    for name, row in rows.items():
        value = row.get("mean", row.get("accuracy"))
        assert 0 <= value <= 100, name
    assert bare - rows["mask-inpaint n=2 K=1"]["mean"] <= 1.0
    assert bare - rows["reformer + mask-inpaint n=2 K=1"]["mean"] <= 1.0
    # MagNet: its clean cost is its detectors' false positives (0.001 per detector)
    for name in ("MagNet reformer", "MagNet"):
        assert bare - rows[name]["accuracy"] <= 1.0, name
    assert 0 < rows["MagNet"]["rejected"] <= 1.0


def test_missing_checkpoint_gives_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint for mnist/classifier") as info:
        load_pretrained("mnist", str(tmp_path))
    assert str(tmp_path / "mnist" / "classifier") in str(info.value)


def make_component(root, component="inpainter", dataset="mnist"):
    """Creates ``<root>/<dataset>/<component>/`` and returns it as a string."""
    (root / dataset / component).mkdir(parents=True)
    return str(root / dataset / component)


@pytest.fixture
def four_roots(tmp_path, monkeypatch):
    """Stand-ins for root=, $REMIX_CHECKPOINT_DIR, the checkout and the installed weights."""
    roots = {name: tmp_path / name for name in ("explicit", "env", "checkout", "installed")}
    monkeypatch.setenv("REMIX_CHECKPOINT_DIR", str(roots["env"]))
    monkeypatch.setattr(components, "source_checkpoint_root", lambda: str(roots["checkout"]))
    monkeypatch.setattr(components, "INSTALLED_CHECKPOINTS", str(roots["installed"]))
    return roots


def test_checkpoints_are_searched_in_the_documented_order(four_roots):
    def find(component="inpainter", root=None):
        return components.find_checkpoint("mnist", component, root)

    # each rung wins over those after it, per component (the folder is made first)
    assert make_component(four_roots["installed"]) == find()
    assert make_component(four_roots["checkout"]) == find()
    assert make_component(four_roots["env"]) == find()
    assert make_component(four_roots["installed"], "reformer") == find("reformer")
    # an explicit root is the only place searched: no silent fallback to other weights
    with pytest.raises(FileNotFoundError, match="root="):
        find(root=str(four_roots["explicit"]))
    explicit = make_component(four_roots["explicit"])
    assert find(root=str(four_roots["explicit"])) == explicit
    # training writes to the first default root
    assert components.checkpoint_dir("mnist", "inpainter") == find()


def test_search_without_the_env_variable_starts_at_the_checkout(four_roots, monkeypatch):
    monkeypatch.delenv("REMIX_CHECKPOINT_DIR")
    labels = [label for label, _ in components.checkpoint_roots()]
    assert labels == ["the source checkout", "the installed package"]
    assert components.checkpoint_root() == str(four_roots["checkout"])


def test_nothing_found_lists_every_place_and_the_fixes(four_roots):
    with pytest.raises(FileNotFoundError) as info:
        load_pretrained("mnist")
    message = str(info.value)
    for name in ("env", "checkout", "installed"):
        assert str(four_roots[name] / "mnist" / "classifier") in message
    for fix in ("root=", "REMIX_CHECKPOINT_DIR", "reinstall", "python -m train.classifier"):
        assert fix in message


def test_the_checkout_rung_exists_only_in_a_source_tree(tmp_path, monkeypatch):
    assert components.source_checkpoint_root() == os.path.join(REPO, "checkpoints")
    installed = tmp_path / "lib" / "python3.11" / "site-packages" / "remix_jax"
    monkeypatch.setattr(components, "_PACKAGE_DIR", str(installed))
    assert components.source_checkpoint_root() is None


def test_committed_cifar10_clean_results_are_consistent():
    result, rows = committed_clean_results("cifar10")
    classifier = checkpoints.read_metadata(
        os.path.join(REPO, "checkpoints", "cifar10", "classifier")
    )
    assert abs(rows["none"]["accuracy"] - 100 * classifier["test"]["accuracy"]) < 0.01
    for name in (
        "reformer",
        "MagNet reformer",
        "MagNet",
        "mask-inpaint n=3 K=1",
        "reformer + mask-inpaint n=3 K=1",
    ):
        row = rows[name]
        value = row.get("mean", row.get("accuracy"))
        assert 0 <= value <= rows["none"]["accuracy"] + 1.0, name
    # MagNet's CIFAR-10 detectors drop 0.5% + 1% + 1% of clean validation images
    assert 0 < rows["MagNet"]["rejected"] <= 2.5 + 1.0
    with open(os.path.join(REPO, "checkpoints", "cifar10", "magnet", "detectors.json")) as f:
        detectors = json.load(f)
    assert abs(detectors["test"]["rejected_percent"] - rows["MagNet"]["rejected"]) < 1e-6


@pytest.mark.slow
@pytest.mark.default_draws
def test_shipped_cifar10_remix_reproduces_its_committed_accuracy_on_500_images(data_dir):
    """The shipped CIFAR-10 REMIX (reformer + mask-inpaint, n=3, K=1) on the first 500
    test images, under the evaluation key eval.clean uses, scores what the committed
    ``results/cifar10/clean-first500`` run records; that run and the committed
    10,000-image table scored these very weights (their fingerprints)."""
    if not os.path.isdir(os.path.join(REPO, "checkpoints", "cifar10", "inpainter")):
        pytest.skip("no CIFAR-10 checkpoints committed")
    with open(os.path.join(REPO, "results", "cifar10", "clean-first500.json")) as f:
        subset = json.load(f)
    full, full_rows = committed_clean_results("cifar10")
    pre = load_pretrained("cifar10", os.path.join(REPO, "checkpoints"))
    for result in (subset, full):
        assert result["inpainter_weights"] == progress.fingerprint(pre.remix.inpainter)
        assert result["reformer_weights"] == progress.fingerprint(pre.remix.reformer)
    images, labels = data.load("cifar10", "test", data_dir)
    x, y = data.to_float(images[: subset["images"]]), labels[: subset["images"]]
    defense = evaluation.defense_suite(pre.logits_fn, pre.remix)["reformer + mask-inpaint K=1"]
    [correct] = defense.correct_over_keys(x, y, False, 1, subset["seed"])
    name = "reformer + mask-inpaint n=3 K=1"
    committed = {row["defense"]: row for row in subset["rows"]}[name]["mean"]
    assert subset["images"] == 500 and abs(100 * np.mean(correct) - committed) <= 0.1
    # what issue 30 shipped: the classifier-aware inpainter keeps >= 80% on all 10,000
    assert full_rows[name]["mean"] >= 80.0


def test_logits_fn_names_wrong_input_instead_of_returning_garbage(mnist):
    x = np.zeros((2, 28, 28, 1), np.float32)
    assert mnist.logits_fn(x).shape == (2, 10)
    assert jax.jit(mnist.logits_fn)(x).shape == (2, 10)  # the checks are static
    with pytest.raises(TypeError, match="to_float"):
        mnist.logits_fn(np.zeros((2, 28, 28, 1), np.uint8))
    with pytest.raises(ValueError, match="spatial size"):
        mnist.logits_fn(np.zeros((2, 32, 32, 1), np.float32))
    with pytest.raises(ValueError, match=r"\(B, H, W, C\)"):
        mnist.logits_fn(np.zeros((28, 28, 1), np.float32))
