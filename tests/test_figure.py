"""eval.figure: the Fig. 2 grid from sweep results (synthetic ones here)."""

import json

import pytest

from eval import figure


def fake_result(dataset, attack, kappas=(0, 10, 20)):
    rows = [
        {
            "confidence": k,
            "none | all": {"mean": 0.0, "std": 0.0},
            "mask-inpaint K=1 | all": {"mean": 90.0 - k, "std": 1.0},
        }
        for k in kappas
    ]
    return {"dataset": dataset, "attack": attack, "num_examples": 5, "rows": rows}


def write(root, dataset, attack):
    (root / dataset).mkdir(parents=True, exist_ok=True)
    (root / dataset / f"{attack}.json").write_text(json.dumps(fake_result(dataset, attack)))


def test_grid_of_the_sweeps_found(tmp_path, capsys):
    write(tmp_path, "mnist", "cw")
    write(tmp_path, "mnist", "ead")
    figure.main(["--root", str(tmp_path)])
    png, pdf = tmp_path / "fig2.png", tmp_path / "fig2.pdf"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert pdf.read_bytes()[:5] == b"%PDF-"
    out = capsys.readouterr()
    assert "2 panel(s)" in out.out
    assert "cifar10/cw.json" in out.err  # the missing sweeps are named
    found, missing = figure.find_panels(str(tmp_path), ["mnist", "cifar10"], ["cw", "ead"])
    assert [(d, a) for d, a, _ in found] == [("mnist", "cw"), ("mnist", "ead")]
    assert len(missing) == 2


def test_a_missing_panel_inside_the_grid_is_marked(tmp_path):
    write(tmp_path, "mnist", "cw")
    write(tmp_path, "cifar10", "ead")  # 2 x 2 grid with two empty panels
    figure.main(["--root", str(tmp_path), "--out", str(tmp_path / "sub" / "f.png")])
    assert (tmp_path / "sub" / "f.png").is_file() and (tmp_path / "sub" / "f.pdf").is_file()


def test_no_results_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="no sweep results"):
        figure.main(["--root", str(tmp_path)])


def test_a_defense_has_one_colour_in_every_panel():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from remix_jax.sweep_report import plot_panel

    with_magnet = fake_result("mnist", "cw")
    # MagNet before mask-inpaint: a colour cycle would shift mask-inpaint's colour
    with_magnet["rows"] = [
        {
            "confidence": r["confidence"],
            "none | all": r["none | all"],
            "MagNet | all": {"mean": 99.0, "std": 0.0},
            "mask-inpaint K=1 | all": r["mask-inpaint K=1 | all"],
        }
        for r in with_magnet["rows"]
    ]
    fig, (a, b) = plt.subplots(1, 2)
    plot_panel(a, with_magnet)
    plot_panel(b, fake_result("mnist", "ead"))  # no MagNet line

    def colours(ax):
        return dict(
            zip(
                ax.get_legend_handles_labels()[1],
                (c.lines[0].get_color() for c in ax.containers),
                strict=True,
            )
        )

    assert colours(a)["mask-inpaint K=1"] == colours(b)["mask-inpaint K=1"]
    assert colours(a)["MagNet (detectors + reformer)"] != colours(a)["mask-inpaint K=1"]
    plt.close(fig)


def test_a_rerun_on_the_same_sweeps_keeps_the_figure_even_if_drawn_otherwise(
    tmp_path, capsys, monkeypatch
):
    """The figure carries the fingerprint of the sweeps it draws: a rerun on the same
    numbers keeps the file (another matplotlib release would change its pixels, and a
    fresh clone's `git status` with them); other numbers draw it again."""
    import matplotlib.figure

    write(tmp_path, "mnist", "cw")
    figure.main(["--root", str(tmp_path)])
    png, pdf = tmp_path / "fig2.png", tmp_path / "fig2.pdf"
    before = png.read_bytes(), pdf.read_bytes()
    assert b"remix-jax data " in before[0] and b"remix-jax data " in before[1]
    original = matplotlib.figure.Figure.savefig

    def another_release(self, *args, **kwargs):  # draws other pixels for the same data
        self.text(0.5, 0.5, "drawn otherwise")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", another_release)
    capsys.readouterr()
    figure.main(["--root", str(tmp_path)])
    assert (png.read_bytes(), pdf.read_bytes()) == before
    assert "kept as it was" in capsys.readouterr().out
    result = fake_result("mnist", "cw")
    result["rows"][0]["mask-inpaint K=1 | all"]["mean"] = 50.0  # other numbers
    (tmp_path / "mnist" / "cw.json").write_text(json.dumps(result))
    figure.main(["--root", str(tmp_path)])
    assert png.read_bytes() != before[0] and pdf.read_bytes() != before[1]
