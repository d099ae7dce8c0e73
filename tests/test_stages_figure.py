"""remix_jax.stages_figure: the stages, the cache lookup, the columns, the drawing, the files."""

import json
import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_defense import tiny_params

from remix_jax import defend, stages_figure
from remix_jax.stages_figure import Column

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def write_cache(path, indices, adversarial, **settings):
    np.savez(
        path,
        adversarial=adversarial,
        success=np.ones(len(indices), bool),
        settings=json.dumps({"indices": indices, **settings}),
    )


def test_cached_adversarials_are_looked_up_by_test_index(tmp_path):
    path = str(tmp_path / "kappa_10.npz")
    adversarial = np.arange(3 * 2 * 2 * 1, dtype=np.float32).reshape(3, 2, 2, 1)
    write_cache(path, [7, 2, 9], adversarial, binary_search_steps=9, max_iterations=10000)
    found, note = stages_figure.cached_adversarials(path, np.array([9, 5, 7]))
    assert sorted(found) == [7, 9]
    np.testing.assert_array_equal(found[9], adversarial[2])
    np.testing.assert_array_equal(found[7], adversarial[0])
    assert "9 x 10000 steps" in note
    missing = str(tmp_path / "missing.npz")
    assert stages_figure.cached_adversarials(missing, np.array([1])) == ({}, "")


def test_adversarial_images_take_the_first_cache_holding_a_row_and_craft_the_rest(tmp_path):
    x = np.zeros((3, 2, 2, 1), np.float32)
    y = np.array([4, 5, 6])
    empty, cached = str(tmp_path / "empty.npz"), str(tmp_path / "kappa_1.npz")
    write_cache(empty, [99], np.full((1, 2, 2, 1), 0.9, np.float32))
    write_cache(cached, [8], np.full((1, 2, 2, 1), 0.5, np.float32), beta=0.1)
    calls = []

    def craft(xs, ys):
        calls.append(ys.tolist())
        return xs + 0.25

    paths = [str(tmp_path / "absent.npz"), empty, cached]
    adv, note = stages_figure.adversarial_images(
        np.array([3, 8, 1]), x, y, paths, craft, "crafted here"
    )
    assert calls == [[4, 6]]  # only the rows no cache holds
    np.testing.assert_array_equal(adv[:, 0, 0, 0], [0.25, 0.5, 0.25])
    assert note == (
        f"x' from the sweep cache {cached} (None x None steps, β 0.1) for #8; "
        "the others crafted here"
    )

    adv, note = stages_figure.adversarial_images(np.array([8]), x[:1], y[:1], paths, craft, "c")
    assert len(calls) == 1 and note.startswith("x' from the sweep cache") and "#" not in note
    _, note = stages_figure.adversarial_images(np.array([1]), x[:1], y[:1], [], craft, "c")
    assert note == "x' c"


def test_choose_indices_checks_requests_and_picks_the_first_right_ones():
    x = jnp.arange(6, dtype=jnp.float32).reshape(6, 1, 1, 1)

    def logits_fn(images):  # predicts class 1 above 2: right on 0, 4 and 5
        v = images.reshape(-1, 1)
        return jnp.concatenate([2 - v, v - 2], axis=-1)

    labels = np.array([0, 1, 1, 0, 1, 1])
    right = stages_figure.choose_indices(None, logits_fn, np.asarray(x), labels, rows=2)
    np.testing.assert_array_equal(right, [0, 4])
    np.testing.assert_array_equal(
        stages_figure.choose_indices([5, 1], logits_fn, np.asarray(x), labels, rows=2), [5, 1]
    )
    with pytest.raises(ValueError, match=r"\[6\] outside the test set \[0, 6\)"):
        stages_figure.choose_indices([0, 6], logits_fn, np.asarray(x), labels, rows=2)


def test_stages_are_what_defend_computes():
    params = tiny_params((8, 8), 1)
    x = np.asarray(jax.random.uniform(jax.random.key(0), (2, 8, 8, 1)))
    stages = stages_figure.remix_stages(params, jax.random.key(5), x, iterations=1)
    assert sorted(stages) == ["combined", "inpainted", "masked", "masks", "reformed"]
    assert stages["masks"].shape == (2, 2, 8, 8, 1) and stages["inpainted"].shape == (2, 2, 8, 8, 1)
    np.testing.assert_array_equal(stages["masks"].sum(axis=0), np.ones((2, 8, 8, 1)))
    np.testing.assert_array_equal(stages["masked"], stages["masks"] * stages["reformed"][None])
    defended = defend(params, jax.random.key(5), x, iterations=1)
    np.testing.assert_allclose(stages["combined"], defended, atol=1e-6)


def fake_stages(n_masks, iterations, batch=2, hw=4):
    shape = (batch, hw, hw, 1)
    stages = {
        "reformed": np.full(shape, 0.3, np.float32),
        "masks": np.zeros((n_masks, *shape), np.float32),
        "masked": np.zeros((n_masks, *shape), np.float32),
        "inpainted": np.full((n_masks, *shape), 0.6, np.float32),
        "combined": np.full(shape, 0.6, np.float32),
    }
    if iterations > 1:
        stages["final"] = np.full(shape, 0.7, np.float32)
    return stages


def mean_logits(images):  # class 1 wins when the mean pixel passes 0.5
    m = images.reshape(images.shape[0], -1).mean(axis=-1, keepdims=True)
    return jnp.concatenate([0.5 - m, m - 0.5], axis=-1)


@pytest.mark.parametrize("iterations", [1, 3])
def test_columns_follow_the_stages_and_classify_the_images(iterations):
    x = np.zeros((2, 4, 4, 1), np.float32)
    x_adv = np.full((2, 4, 4, 1), 0.1, np.float32)
    cols = stages_figure.build_columns(
        mean_logits, x, x_adv, fake_stages(3, iterations), iterations
    )
    assert len(cols) == stages_figure.num_columns(3, iterations)
    assert [c.kind for c in cols[3:6]] == ["mask", "image", "image"]
    assert cols[-1].kind == "delta"
    np.testing.assert_allclose(cols[-1].images, x_adv - x)
    classified = [c.title.split("\n")[0] for c in cols if c.probs is not None]
    expected = ["clean x", "adversarial x'", "reformer r(x')", "combined $\\hat x$ ="]
    assert classified == expected + ([f"after K={iterations}"] if iterations > 1 else [])
    assert np.argmax(cols[0].probs, axis=-1).tolist() == [0, 0]  # mean 0
    assert np.argmax(cols[9 + 3].probs, axis=-1).tolist() == [1, 1]  # combined, mean 0.6
    np.testing.assert_allclose(cols[0].probs.sum(axis=-1), 1.0, rtol=1e-6)


def test_layout_stays_readable_and_grows_by_whole_images():
    for cols in (5, 10, 30):
        geom = stages_figure.layout(2, cols)
        assert geom.width <= stages_figure.MAX_WIDTH + 1e-9
        assert stages_figure.layout(3, cols).height - geom.height == pytest.approx(
            geom.cell + stages_figure.LABEL_ROOM
        )
    assert stages_figure.layout(1, 3).cell == stages_figure.CELL  # narrow: full size
    assert stages_figure.num_columns(2, 1) == 11 and stages_figure.num_columns(3, 2) == 15


def tiny_figure():
    images = np.linspace(0, 1, 2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4, 1)
    probs = np.array([[0.9, 0.1], [0.2, 0.8]], np.float32)
    cols = [
        Column("clean", images, probs=probs),
        Column("mask", (images > 0.5).astype(np.float32), kind="mask"),
        Column("delta", images - 0.5, kind="delta"),
    ]
    title, subtitle = stages_figure.titles("mnist", "cw", 30.0, 2, "x' from here", 0)
    assert "MNIST: CW-L2 at κ = 30" in title and "mask seed 0" in subtitle
    return stages_figure.draw(cols, np.array([4, 7]), np.array([0, 0]), title, subtitle)


def test_a_rerun_writes_the_same_bytes_and_leaves_no_temp_files(tmp_path):
    first = stages_figure.save_atomically(tiny_figure(), str(tmp_path / "a" / "fig.png"))
    assert first == [str(tmp_path / "a" / "fig.png"), str(tmp_path / "a" / "fig.pdf")]
    before = [Path(p).read_bytes() for p in first]
    assert before[0][:8] == PNG_SIGNATURE and before[1][:5] == b"%PDF-"
    assert b"CreationDate" not in before[1]
    stages_figure.save_atomically(tiny_figure(), str(tmp_path / "a" / "fig.png"))
    assert [Path(p).read_bytes() for p in first] == before
    assert sorted(os.listdir(tmp_path / "a")) == ["fig.pdf", "fig.png"]

    import matplotlib.image

    height_px, width_px = matplotlib.image.imread(first[0]).shape[:2]
    geom = stages_figure.layout(2, 3)
    assert abs(width_px - geom.width * stages_figure.DPI) <= 1
    assert abs(height_px - geom.height * stages_figure.DPI) <= 1


def test_the_drawn_stamp_ignores_float_noise_but_not_what_the_figure_shows():
    """eval.visualize keeps a committed figure whose stamp matches: the stamp holds what
    the pixels are a function of and the texts as rendered, so float noise of another
    CPU is the same figure, while other inputs or another caption are not."""
    from remix_jax import result_files

    rng = np.random.default_rng(0)
    images = rng.uniform(size=(2, 4, 4, 1)).astype(np.float32)
    probs = np.array([[0.9, 0.1], [0.2, 0.8]], np.float32)

    def stamp(images, probs, inputs=None):
        cols = [Column("clean", images, probs=probs), Column("delta", images - 0.5, "delta")]
        return result_files.data_stamp(
            stages_figure.drawn(
                cols, np.array([4, 7]), np.array([0, 1]), "t", "s", inputs or {"weights": "abc"}
            )  # fmt: skip
        )

    noise = rng.uniform(-1e-6, 1e-6, images.shape).astype(np.float32)
    assert stamp(images + noise, probs + 1e-6) == stamp(images, probs)
    assert stamp(images, probs[::-1]) != stamp(images, probs)  # other captions
    other = np.array([[0.8, 0.2], [0.2, 0.8]], np.float32)
    assert stamp(images, other) != stamp(images, probs)  # 90% -> 80%
    assert stamp(images, probs, {"weights": "abd"}) != stamp(images, probs)
