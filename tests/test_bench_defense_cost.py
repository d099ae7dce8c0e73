"""bench.defense_cost: it times what each defense does to an image (a detector's
rejection included) and its committed result renders again from its numbers."""

import json
import pathlib

import numpy as np
import pytest

from bench import defense_cost
from remix_jax import evaluation

RESULTS = pathlib.Path(__file__).parent.parent / "results" / "bench"


def test_a_defense_with_a_detector_is_timed_with_its_rejection():
    calls = []

    def predict(key, x):
        calls.append("predict")
        return np.zeros(len(x), np.int32)

    def reject(key, x):
        calls.append("reject")
        return np.zeros(len(x), bool)

    suite = {"none": evaluation.Defense(False, predict),
             "with detector": evaluation.Defense(False, predict, reject)}  # fmt: skip
    x = np.zeros((4, 8, 8, 1), np.float32)
    rows = defense_cost.rows_of(suite, None, x, repeats=2)
    assert [r["defense"] for r in rows] == ["none", "with detector"]
    # one call that compiles, then two timed ones: each runs the prediction, and the
    # second defense its rejection too
    assert calls == ["predict"] * 3 + ["predict", "reject"] * 3
    for row in rows:
        assert row["ms_per_image"] > 0
        assert row["images_per_second"] == pytest.approx(1000 / row["ms_per_image"])


@pytest.mark.parametrize("path", sorted(RESULTS.glob("defense_cost_*.json")), ids=lambda p: p.name)
def test_committed_result_renders_again_and_times_every_defense(path):
    result = json.loads(path.read_text())
    names = [r["defense"] for r in result["rows"]]
    assert names[0] == "none" and "reformer + mask-inpaint K=1" in names
    assert ("APE-GAN" in names) == ("apegan" in result)  # the baselines it was asked for
    assert all(r["ms_per_image"] > 0 for r in result["rows"])
    assert defense_cost.markdown(result) == path.with_suffix(".md").read_text()


def test_a_committed_result_exists():
    # the parametrized test above would pass vacuously over an empty glob
    assert sorted(RESULTS.glob("defense_cost_*.json"))
