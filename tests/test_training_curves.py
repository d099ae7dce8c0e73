"""eval.training_curves draws the stored validation curves and fails clearly without them."""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(args):
    return subprocess.run(
        [sys.executable, "-m", "eval.training_curves", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_curves_and_table_from_meta_json(tmp_path):
    for component, metric in (("classifier", "accuracy"), ("magnet/I", "mse_noisy")):
        folder = tmp_path / "cifar10" / component
        os.makedirs(folder)
        history = [{"epoch": e, "step": 10 * e, metric: 0.5 + 0.1 * e} for e in (1, 2, 3)]
        meta = {
            "command": f"python -m train.{component}",
            "history": history,
            "train_seconds": 120.0,
            "machine": "test box",
            "test": {metric: 0.77},
        }
        (folder / "meta.json").write_text(json.dumps(meta))
    out = tmp_path / "out" / "training"
    proc = run(["--dataset", "cifar10", "--checkpoint-root", str(tmp_path), "--out", str(out)])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "out" / "training.png").stat().st_size > 0
    table = (tmp_path / "out" / "training.md").read_text()
    assert "| classifier | `python -m train.classifier` | 3/? | 2.0 min | test box |" in table
    assert "| magnet I |" in table and "accuracy 0.8" in table and "mse_noisy 0.77" in table


def test_no_trained_model_is_a_clear_error(tmp_path):
    proc = run(["--dataset", "mnist", "--checkpoint-root", str(tmp_path)])
    assert proc.returncode != 0 and "no trained model" in proc.stderr
