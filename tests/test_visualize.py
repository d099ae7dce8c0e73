"""eval.visualize: the figure of a tiny on-the-fly attack, errors (remix_jax.stages_figure's
parts: test_stages_figure.py)."""

import os

import numpy as np
import pytest

from eval import visualize
from remix_jax import stages_figure

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
    assert stages_figure.num_columns(2, 2) == columns
    geom = stages_figure.layout(2, columns)
    assert 10 <= geom.width <= stages_figure.MAX_WIDTH  # readable at README width
    assert abs(width_px - geom.width * stages_figure.DPI) <= 1
    assert abs(height_px - geom.height * stages_figure.DPI) <= 1
    # one more row or column would change the size by at least a whole image
    assert geom.height - stages_figure.layout(1, columns).height >= geom.cell
    assert geom.width - stages_figure.layout(2, columns - 1).width >= geom.cell


@pytest.mark.slow
def test_index_outside_the_test_set_exits_with_a_message(tmp_path, data_dir):
    need_checkpoints()
    with pytest.raises(SystemExit, match="outside the test set"):
        visualize.main(
            ["--index", "10000", "--data-dir", data_dir, "--out", str(tmp_path / "x.png")]
        )
    assert not os.listdir(tmp_path)


def test_cache_files_follow_the_flags():
    def paths(*flags):
        return visualize.cache_paths(visualize.parse(["--confidence", "20", *flags]))

    assert paths("--attack", "ead") == [
        os.path.join("results", "mnist", "cache", "ead", "kappa_20.npz"),
        os.path.join("results", "mnist", "cache", "ead-cpu", "kappa_20.npz"),
    ]
    assert paths("--cache-dir", "c") == [os.path.join("c", "kappa_20.npz")]
    assert paths("--no-cache") == []


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
    stages = stages_figure.remix_stages(pre.remix, jax.random.key(5), x, iterations=1)
    defended = defend(pre.remix, jax.random.key(5), x, iterations=1)
    np.testing.assert_allclose(stages["combined"], defended, atol=1e-5)
    np.testing.assert_array_equal(stages["masked"], stages["masks"] * stages["reformed"][None])
