"""bench.inpainter_cost: its committed result covers every candidate with both costs,
and its defend() timer times a defense."""

import json
import math
import pathlib

from reliability import tiny_params

from bench import inpainter_cost

RESULT = pathlib.Path(__file__).parent.parent / "results" / "bench"
RESULT = RESULT / "inpainter_cost_cpu_cifar10.json"


def test_committed_result_times_every_candidate_in_training_and_in_defend():
    result = json.loads(RESULT.read_text())
    mse = [r for r in result["rows"] if r["objective"] == "mse"]
    assert [r["candidate"] for r in mse] == list(inpainter_cost.CANDIDATES)
    assert all(r["step_seconds"] > 0 and r["defend_images_per_second"] > 0 for r in mse)
    for row in result["rows"]:  # minutes per epoch follow from the step time
        minutes = row["step_seconds"] * result["steps_per_epoch"] / 60
        assert row["minutes_per_epoch"] == round(minutes, 1)


def test_defend_images_per_second_times_a_defense():
    rate = inpainter_cost.defend_images_per_second(tiny_params(), (4, 8, 8, 1), 2)
    assert math.isfinite(rate) and rate > 0
