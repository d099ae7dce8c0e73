"""Adding a dataset touches only the registry: one ``datasets.register`` call, and a
toy dataset goes through the CLIs, train (by its spec's recipe) -> defend (with its
n) -> a tiny sweep -> the figure of the stages, reading <data dir>/<name>/<split>.npz,
with nothing else changed.
(Datasets registered from their data, an image folder or a tfds builder, go the same
way in tests/test_data_sources.py.)"""

import json

import jax
import numpy as np
import pytest

from remix_jax import datasets

TOY = datasets.DatasetSpec(
    name="toy16",
    display_name="Toy-16",
    image_shape=(16, 16, 1),
    num_classes=3,
    n_masks=2,
    reformer_noise=0.05,
    kappa_grid=(0.0,),
    classifier="remix_jax.models.classifiers:MNISTClassifier",
    classifier_recipe=dict(
        epochs=3,
        batch_size=32,
        learning_rate=0.05,
        schedule="constant",
        weight_decay=0.0,
        label_smoothing=0.0,
        augment=False,
    ),
)


def toy_images(n, seed):
    """Three classes: a bright left half, right half or centre on faint noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    images = rng.uniform(0, 0.2, (n, 16, 16, 1))
    for i, label in enumerate(labels):
        region = [np.s_[:, :8], np.s_[:, 8:], np.s_[4:12, 4:12]][label]
        images[i][region] += 0.7
    return (np.clip(images, 0, 1) * 255).astype(np.uint8), labels


@pytest.fixture
def toy(tmp_path, monkeypatch):
    datasets.register(TOY)
    monkeypatch.setenv("REMIX_JAX_CPU_FLAGS", "0")  # the backend already runs here
    folder = tmp_path / "data" / "toy16"
    folder.mkdir(parents=True)
    for split, n, seed in (("train", 400, 0), ("test", 60, 1)):
        images, labels = toy_images(n, seed)
        np.savez(folder / f"{split}.npz", image=images, label=labels, source="toy")
    yield tmp_path
    datasets.unregister(TOY.name)


def test_a_registered_dataset_trains_defends_and_sweeps_through_the_clis(toy, capsys):
    from eval import sweep, visualize
    from remix_jax import checkpoints, defend, load_pretrained
    from train import classifier, inpainter, reformer

    data, root = str(toy / "data"), toy / "ckpt"
    common = ["--dataset", "toy16", "--data-dir", data, "--no-progress", "--validation-size", "50"]
    classifier.main([*common, "--checkpoint-dir", str(root / "toy16" / "classifier")])
    for trainer, name in ((reformer, "reformer"), (inpainter, "inpainter")):
        trainer.main(
            [
                *common,
                "--epochs",
                "1",
                "--batch-size",
                "50",
                "--features",
                "4",
                "4",
                "--checkpoint-dir",
                str(root / "toy16" / name),
            ]
        )
    pre = load_pretrained("toy16", str(root))
    assert pre.remix.n_masks == 2  # the registry's n
    x = jax.random.uniform(jax.random.key(0), (2, 16, 16, 1))
    assert pre.logits_fn(defend(pre.remix, jax.random.key(1), x)).shape == (2, 3)
    meta = checkpoints.read_metadata(str(root / "toy16" / "classifier"))
    assert datasets.spec_from_dict(meta["dataset_spec"]) == TOY
    # the recipe's 3 epochs of batches of 32 over the 350 training images (50 held out)
    assert meta["steps"] == 3 * (350 // 32) and meta["test"]["accuracy"] > 0.9

    out = toy / "out" / "cw"
    sweep.main(
        ["--attack", "cw", "--dataset", "toy16", "--num-examples", "8",
         "--binary-search-steps", "2", "--max-iterations", "100", "--initial-const", "100",
         "--num-keys", "2", "--no-magnet", "--data-dir", data, "--checkpoint-root", str(root),
         "--cache-dir", str(toy / "cache"), "--out", str(out)]
    )  # fmt: skip
    result = json.loads((toy / "out" / "cw.json").read_text())
    assert result["dataset"] == "toy16" and [r["confidence"] for r in result["rows"]] == [0.0]
    assert result["num_examples"] == 8 and result["rows"][0]["attack_success"] > 0
    assert "reformer + mask-inpaint K=1 | all" in result["rows"][0]
    assert result["data_source"] == "toy"  # the npz's own word, recorded with the table
    assert (toy / "out" / "cw.png").is_file()
    sources = ["--dataset", "toy16", "--data-dir", data, "--checkpoint-root", str(root)]
    # asked for more images than the classifier gets right of the 60 test images:
    # refused in one line before any crafting, not capped silently
    with pytest.raises(SystemExit, match=r"--num-examples 61: the classifier gets only"):
        sweep.main(["--attack", "cw", *sources, "--num-examples", "61", "--no-magnet",
                    "--cache-dir", str(toy / "cache"), "--out", str(out) + "-more"])  # fmt: skip

    # the figure of the stages, drawn from the sweep's cached examples
    capsys.readouterr()
    stages = toy / "out" / "stages.png"
    visualize.main([*sources, "--confidence", "0", "--cache-dir", str(toy / "cache"),
                    "--out", str(stages)])  # fmt: skip
    assert "x' from the " in capsys.readouterr().out  # the sweep's examples, not fresh ones
    assert stages.stat().st_size > 0 and stages.with_suffix(".pdf").stat().st_size > 0

    # a batch larger than the training set: refused in one line before any work
    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        reformer.main([*common, "--batch-size", "1000", "--checkpoint-dir", str(toy / "big")])
    assert info.value.code == 2
    assert "--batch-size 1000 exceeds the 350 training images" in capsys.readouterr().err
