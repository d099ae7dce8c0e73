"""bench.apgd_reference: the committed validation of our APGD against the references.

Issue 32: on the same images, our APGD-CE and APGD-DLR robust accuracy must be within
1 point of each reference's, or below it. These tests read the committed result
files (no attack runs) and check that their tables follow from their numbers.
"""

import json
import pathlib
import sys

import pytest

from bench import apgd_reference
from remix_jax import apgd_comparison

ROOT = pathlib.Path(__file__).resolve().parents[1]
RESULTS = [
    ROOT / "results/bench/apgd_reference.json",
    ROOT / "results/bench/apgd_reference_cifar10.json",
]


def _load(path):
    return json.loads(path.read_text())


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: p.stem)
def test_committed_result_ours_within_one_point_of_every_reference(path):
    payload = _load(path)
    names = {r["implementation"] for r in payload["rows"]}
    assert {
        "ours-ce",
        "ours-dlr",
        "torchattacks-ce",
        "torchattacks-dlr",
        "art-ce",
        "art-dlr",
    } <= names
    n = payload["settings"]["num_examples"]
    for row in payload["rows"]:
        robust = payload["per_example"][row["implementation"]]["robust"]
        assert row["n"] == len(robust) == n == len(payload["labels"])
        assert row["robust"] == sum(robust)
        assert row["robust_accuracy"] == pytest.approx(100.0 * sum(robust) / n)
        assert row["outside"] == 0, f"{row['implementation']} returned images outside the ball"
    comparisons = apgd_comparison.compare(payload["rows"], payload["per_example"])
    assert payload["comparisons"] == comparisons
    assert len(comparisons) == len(payload["rows"]) - 2  # every reference, per loss
    for c in comparisons:
        assert c["ours"] <= c["theirs"] + 1.0, (
            f"{path.name}: ours-{c['loss']} {c['ours']:.1f}% vs {c['reference']} {c['theirs']:.1f}%"
        )


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: p.stem)
def test_committed_tables_follow_from_the_result(path):
    payload = _load(path)
    assert path.with_suffix(".md").read_text() == apgd_comparison.markdown(payload)


def test_results_md_table_is_rendered_from_the_result_files():
    table = apgd_comparison.summary_table([_load(p) for p in RESULTS])
    assert table in (ROOT / "RESULTS.md").read_text()


def _rows(ours, theirs, seconds=(10.0, 30.0)):
    return [
        {"implementation": "ours-ce", "loss": "ce", "robust_accuracy": ours, "seconds": seconds[0]},
        {
            "implementation": "art-ce",
            "loss": "ce",
            "robust_accuracy": theirs,
            "seconds": seconds[1],
        },
    ]


def test_compare_flags_ours_more_than_one_point_above_a_reference():
    per_example = {
        "ours-ce": {"robust": [True, True, False, False]},
        "art-ce": {"robust": [True, False, True, False]},
    }
    (c,) = apgd_comparison.compare(_rows(51.0, 50.0), per_example)
    assert c["within"] and c["difference"] == 1.0 and c["speedup"] == 3.0
    assert (c["broken_by_ours_only"], c["broken_by_reference_only"]) == (1, 1)
    (c,) = apgd_comparison.compare(_rows(51.5, 50.0), per_example)
    assert not c["within"]


def test_help_needs_no_torch(monkeypatch, capsys):
    for name in ("torch", "torchattacks", "art", "autoattack"):
        monkeypatch.setitem(sys.modules, name, None)  # any import of them now fails
    monkeypatch.setenv("REMIX_JAX_CPU_FLAGS", "0")
    with pytest.raises(SystemExit) as done:
        apgd_reference.main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:") and "--official-path" in out
