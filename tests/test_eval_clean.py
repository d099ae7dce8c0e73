"""eval.clean end to end on a few test images with the shipped MNIST checkpoints."""

import json

import pytest

from eval import clean


def test_clean_accuracy_cli_writes_every_row_and_honours_num_masks(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("REMIX_JAX_CPU_FLAGS", "0")
    out = tmp_path / "clean"
    clean.main(
        [
            "--data-dir",
            data_dir,
            "--limit",
            "16",
            "--iterations",
            "1",
            "--num-keys",
            "2",
            "--num-masks",
            "4",
            "--no-magnet",
            "--out",
            str(out),
        ]
    )
    result = json.loads((tmp_path / "clean.json").read_text())
    names = [row["defense"] for row in result["rows"]]
    assert names == ["none", "reformer", "mask-inpaint n=4 K=1", "reformer + mask-inpaint n=4 K=1"]
    assert result["num_masks"] == 4 and result["inpainter_trained_masks"] == 2
    assert result["images"] == 16
    for row in result["rows"]:
        value = row.get("mean", row.get("accuracy"))
        assert 0 <= value <= 100
    assert result["rows"][2]["runs"] == 2
    assert "mask-inpaint n=4 K=1" in (tmp_path / "clean.md").read_text()


def test_clean_accuracy_cli_rejects_a_single_mask(data_dir, capsys):
    with pytest.raises(SystemExit):
        clean.main(["--data-dir", data_dir, "--num-masks", "1"])
    assert "--num-masks: must be >= 2, got 1" in capsys.readouterr().err
