"""eval.sweep end to end on a tiny config, its resume, and the committed sweep results."""

import json
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_sweep(args, data_dir):
    env = {**os.environ, "REMIX_DATA_DIR": data_dir}
    return subprocess.run([sys.executable, "-m", "eval.sweep", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_tiny_sweep_runs_end_to_end_and_resumes_from_its_cache(tmp_path, data_dir):
    if not os.path.isdir(os.path.join(REPO, "checkpoints", "mnist", "inpainter")):
        pytest.skip("no MNIST checkpoints committed")
    cache, out = tmp_path / "cache", tmp_path / "out" / "cw"
    args = ["--attack", "cw", "--num-examples", "6", "--confidences", "0", "5",
            "--binary-search-steps", "2", "--max-iterations", "30", "--initial-const", "10",
            "--num-keys", "2", "--cache-dir", str(cache), "--out", str(out)]
    first = run_sweep(args, data_dir)
    assert first.returncode == 0, first.stderr[-3000:]
    files = sorted(os.listdir(cache))
    assert files == ["kappa_0.npz", "kappa_5.npz"]
    stamps = {f: os.stat(cache / f).st_mtime_ns for f in files}
    result = json.loads((tmp_path / "out" / "cw.json").read_text())
    assert [row["confidence"] for row in result["rows"]] == [0, 5]
    assert (tmp_path / "out" / "cw.png").stat().st_size > 0
    assert (tmp_path / "out" / "cw.csv").read_text().count("\n") == 3
    second = run_sweep(args, data_dir)  # must reuse both cached kappas
    assert second.returncode == 0, second.stderr[-3000:]
    assert {f: os.stat(cache / f).st_mtime_ns for f in files} == stamps
    again = json.loads((tmp_path / "out" / "cw.json").read_text())
    assert again["rows"][0]["attack_success"] == result["rows"][0]["attack_success"]


def test_bad_arguments_exit_with_a_message(data_dir):
    proc = run_sweep(["--attack", "cw", "--num-examples", "0"], data_dir)
    assert proc.returncode != 0 and "--num-examples must be >= 1" in proc.stderr


@pytest.mark.parametrize("attack", ["cw", "ead"])
def test_committed_sweep_results_are_complete_and_consistent(attack):
    path = os.path.join(REPO, "results", "mnist", f"{attack}.json")
    if not os.path.isfile(path):
        pytest.skip(f"results/mnist/{attack}.json not committed yet")
    with open(path) as f:
        result = json.load(f)
    assert [row["confidence"] for row in result["rows"]] == [0, 5, 10, 15, 20, 25, 30, 35, 40]
    assert result["num_examples"] >= 200
    for key in ("settings", "command", "git_commit", "machine", "data_source", "clean"):
        assert key in result
    for row in result["rows"]:
        assert 0 <= row["attack_success"] <= 100
        assert row["fooled"] == round(row["attack_success"] * row["images"] / 100)
        for name, value in row.items():
            if " | " in name and value is not None:
                assert 0 <= value["min"] <= value["mean"] <= value["max"] <= 100, name
    # the attack works: at kappa 0 the bare classifier is fooled on (almost) every image
    first = result["rows"][0]
    assert first["attack_success"] >= 99 and first["none | all"]["mean"] <= 1
