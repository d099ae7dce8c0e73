"""eval.clean end to end on a few test images with the shipped MNIST checkpoints."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eval import clean


def test_clean_accuracy_cli_writes_every_row_and_honours_num_masks(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("REMIX_JAX_CPU_FLAGS", "0")
    out = tmp_path / "clean"
    clean.main(
        [
            "--data-dir",
            data_dir,
            "--limit",
            "16",
            "--iterations",
            "1",
            "--num-keys",
            "2",
            "--num-masks",
            "4",
            "--no-magnet",
            "--out",
            str(out),
        ]
    )
    result = json.loads((tmp_path / "clean.json").read_text())
    names = [row["defense"] for row in result["rows"]]
    assert names == ["none", "reformer", "mask-inpaint n=4 K=1", "reformer + mask-inpaint n=4 K=1"]
    assert result["num_masks"] == 4 and result["inpainter_trained_masks"] == 2
    assert result["images"] == 16
    for row in result["rows"]:
        value = row.get("mean", row.get("accuracy"))
        assert 0 <= value <= 100
    assert result["rows"][2]["runs"] == 2
    assert "mask-inpaint n=4 K=1" in (tmp_path / "clean.md").read_text()


def test_clean_accuracy_cli_rejects_a_single_mask(data_dir, capsys):
    with pytest.raises(SystemExit):
        clean.main(["--data-dir", data_dir, "--num-masks", "1"])
    assert "--num-masks: must be >= 2, got 1" in capsys.readouterr().err


def test_first_correct_predicts_only_the_batches_it_needs():
    """The first n images a classifier gets right, as predicting the whole split finds
    them, from only the batches that hold them."""
    from remix_jax import evaluation

    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (23, 2, 2, 1)).astype(np.float32)
    labels = rng.integers(0, 2, 23)
    seen = []

    def logits_fn(xb):  # class 1 iff the first pixel is bright; counts the images seen
        jax.debug.callback(lambda b: seen.append(b), xb.shape[0])
        return jnp.stack([0.5 - xb[:, 0, 0, 0], xb[:, 0, 0, 0] - 0.5], -1)

    right = np.flatnonzero(evaluation.predict(logits_fn, x) == labels)
    assert 6 < len(right) < 20
    for n in (1, 5, len(right), 30):
        seen.clear()
        chosen = evaluation.first_correct(logits_fn, x, labels, n, batch_size=5)
        jax.effects_barrier()
        np.testing.assert_array_equal(chosen, right[:n])
        needed = 23 if n > len(right) else min(23, 5 * (right[n - 1] // 5 + 1))
        assert sum(seen) == needed  # not one batch more
