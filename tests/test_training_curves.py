"""eval.training_curves draws the stored validation curves and fails clearly without them."""

import json
import os
import subprocess
import sys
from pathlib import Path

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


def test_the_committed_curves_and_fig2_are_what_their_commands_draw_now(tmp_path, capsys):
    """Rerunning the README's eval.training_curves and eval.figure on a fresh clone
    leaves their committed files as they are: each committed table is what the command
    writes now, and each figure carries the fingerprint of the numbers it draws."""
    import shutil

    from eval import figure, training_curves

    results = os.path.join(REPO, "results")
    for dataset in ("mnist", "cifar10"):
        out = tmp_path / dataset / "training"
        out.parent.mkdir()
        for suffix in (".png", ".md"):
            shutil.copy(os.path.join(results, dataset, "training" + suffix), f"{out}{suffix}")
        before = {s: Path(f"{out}{s}").read_bytes() for s in (".png", ".md")}
        training_curves.main(["--dataset", dataset, "--out", str(out)])
        assert "already showed these histories: kept" in capsys.readouterr().out
        assert {s: Path(f"{out}{s}").read_bytes() for s in before} == before
    for suffix in (".png", ".pdf"):
        shutil.copy(os.path.join(results, "fig2" + suffix), tmp_path / f"fig2{suffix}")
    before = [(tmp_path / f"fig2{s}").read_bytes() for s in (".png", ".pdf")]
    figure.main(["--root", results, "--out", str(tmp_path / "fig2.png")])
    assert "kept as it was" in capsys.readouterr().out
    assert [(tmp_path / f"fig2{s}").read_bytes() for s in (".png", ".pdf")] == before
