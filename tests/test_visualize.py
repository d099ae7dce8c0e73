"""eval.visualize: the figure's layout on a tiny on-the-fly attack, the cache lookup, errors."""

import json
import os

import numpy as np
import pytest

from eval import visualize

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def need_checkpoints():
    if not os.path.isdir(os.path.join(REPO, "checkpoints", "mnist", "inpainter")):
        pytest.skip("no MNIST checkpoints committed")


@pytest.mark.slow
def test_figure_has_a_row_per_image_and_a_column_per_stage(tmp_path, data_dir, capsys):
    need_checkpoints()
    out = tmp_path / "figs" / "viz.png"
    visualize.main(
        [
            "--dataset",
            "mnist",
            "--index",
            "0",
            "3",
            "--iterations",
            "2",
            "--no-cache",
            "--binary-search-steps",
            "1",
            "--max-iterations",
            "20",
            "--out",
            str(out),
            "--data-dir",
            data_dir,
        ]
    )
    assert "crafted here (1 x 20 steps" in capsys.readouterr().out
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    assert (tmp_path / "figs" / "viz.pdf").read_bytes()[:5] == b"%PDF-"
    assert sorted(os.listdir(tmp_path / "figs")) == ["viz.pdf", "viz.png"]  # no temp files left

    import matplotlib.image

    height_px, width_px = matplotlib.image.imread(str(out)).shape[:2]
    # MNIST has n = 2 masks: clean, adversarial, reformer, (mask, masked copy, inpainted
    # copy) per mask, combined, after K = 2 rounds, perturbation
    columns = 3 + 3 * 2 + 1 + 1 + 1
    assert visualize.num_columns(2, 2) == columns
    geom = visualize.layout(2, columns)
    assert 10 <= geom.width <= visualize.MAX_WIDTH  # readable at README width
    assert abs(width_px - geom.width * visualize.DPI) <= 1
    assert abs(height_px - geom.height * visualize.DPI) <= 1
    # one more row or column would change the size by at least a whole image
    assert geom.height - visualize.layout(1, columns).height >= geom.cell
    assert geom.width - visualize.layout(2, columns - 1).width >= geom.cell


def test_cached_adversarials_are_looked_up_by_test_index(tmp_path):
    path = str(tmp_path / "kappa_10.npz")
    adversarial = np.arange(3 * 2 * 2 * 1, dtype=np.float32).reshape(3, 2, 2, 1)
    settings = {
        "indices": [7, 2, 9],
        "binary_search_steps": 9,
        "max_iterations": 10000,
        "confidence": 10,
    }
    np.savez(path, adversarial=adversarial, success=np.ones(3, bool), settings=json.dumps(settings))
    found, note = visualize.cached_adversarials(path, np.array([9, 5, 7]))
    assert sorted(found) == [7, 9]
    np.testing.assert_array_equal(found[9], adversarial[2])
    np.testing.assert_array_equal(found[7], adversarial[0])
    assert "9 x 10000 steps" in note
    assert visualize.cached_adversarials(str(tmp_path / "missing.npz"), np.array([1])) == ({}, "")


@pytest.mark.slow
def test_index_outside_the_test_set_exits_with_a_message(tmp_path, data_dir):
    need_checkpoints()
    with pytest.raises(SystemExit, match="outside the test set"):
        visualize.main(
            ["--index", "10000", "--data-dir", data_dir, "--out", str(tmp_path / "x.png")]
        )
    assert not os.listdir(tmp_path)


@pytest.mark.parametrize(
    "args",
    [["--confidence", "-1"], ["--iterations", "0"], ["--index", "1", "1"], ["--out", "fig.jpg"]],
)
def test_bad_arguments_exit(args):
    with pytest.raises(SystemExit):
        visualize.main(args)


def test_missing_checkpoints_exit_with_a_message(tmp_path, data_dir):
    with pytest.raises(SystemExit, match="error: "):
        visualize.main(["--checkpoint-root", str(tmp_path), "--data-dir", data_dir])


@pytest.mark.slow
def test_the_figure_shows_what_defend_computes():
    import jax

    from remix_jax import defend, load_pretrained

    pre = load_pretrained("mnist")
    x = np.asarray(jax.random.uniform(jax.random.key(0), (3, 28, 28, 1)))
    stages = visualize.remix_stages(pre, jax.random.key(5), x, iterations=1)
    defended = defend(pre.remix, jax.random.key(5), x, iterations=1)
    np.testing.assert_allclose(stages["combined"], defended, atol=1e-5)
    np.testing.assert_array_equal(stages["masked"], stages["masks"] * stages["reformed"][None])
