"""bench.closure_params: its committed result renders to its committed table, and its
timer times every way it is given."""

import json
import pathlib

import jax.numpy as jnp

from bench import closure_params

RESULT = pathlib.Path(__file__).parent.parent / "results" / "bench" / "closure_params_cpu.json"


def test_committed_result_matches_its_table_and_covers_both_ways():
    result = json.loads(RESULT.read_text())
    assert RESULT.with_suffix(".md").read_text() == closure_params.markdown(result)
    cells = {(r["dataset"], r["computes"], r["model"]) for r in result["rows"]}
    assert len(cells) == len(result["rows"]) == 8  # 2 datasets x 2 computations x 2 ways
    assert all(r["run_seconds"] >= 0 and r["compile_seconds"] > 0 for r in result["rows"])


def test_measure_compiles_and_times_each_way():
    x = jnp.ones((4, 3))
    timings = closure_params.measure(
        {"closure": (lambda z: z * 2.0, (x,)), "params": (lambda w, z: z * w, (2.0, x))}, 3
    )
    assert set(timings) == {"closure", "params"}
    assert all(t["run_seconds"] >= 0 and t["compile_seconds"] > 0 for t in timings.values())
