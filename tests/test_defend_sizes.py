"""bench.defend_sizes: its table follows from the committed result; a row measured on a
tiny REMIX (remix_jax.defend_speed)."""

import json
import pathlib

import jax
import pytest

from remix_jax import components, defend_speed, timing

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_committed_table_follows_from_the_result():
    path = ROOT / "results/bench/defend_sizes_cpu.json"
    result = json.loads(path.read_text())
    assert path.with_suffix(".md").read_text() == defend_speed.markdown(result)


def test_batch_row_is_consistent_with_its_timed_calls():
    params = components.init_remix(jax.random.key(0), "mnist", features=(4, 4), strides=(1, 1))
    x = jax.random.uniform(jax.random.key(1), (3, 28, 28, 1))
    row = defend_speed.batch_row(params, jax.random.key(2), x, repeats=2, ceiling=10.0)
    assert (row["image"], row["n_masks"], row["batch"]) == ("28x28x1", params.n_masks, 3)
    assert len(row["timed_seconds"]) == 2 and row["flops_per_image"] > 0
    # seconds is rounded to 5 decimals, so 3 / seconds is only known to within
    # 3 * 0.5e-5 / seconds**2 (more than 1e-3 relative for a 3 ms call).
    rounding = 3 * 0.5e-5 / row["seconds"] ** 2 + 0.005
    assert row["images_per_s"] == pytest.approx(3 / row["seconds"], abs=rounding)
    achieved = row["flops_per_image"] * 3 / row["seconds"] / 1e9  # seconds: 5 decimals
    assert row["gflop_per_s"] == pytest.approx(achieved, rel=0.02, abs=0.06)
    assert row["fraction_of_ceiling"] == pytest.approx(achieved / 10.0, rel=0.02, abs=6e-4)
    network = defend_speed.network(params, (28, 28, 1))
    assert network["image_shape"] == [28, 28, 1] and network["parameters"] > 0


def test_timed_returns_the_ready_result():
    out, seconds = timing.timed(lambda a: a * 2, jax.numpy.ones(3))
    assert out.tolist() == [2.0, 2.0, 2.0] and seconds >= 0
