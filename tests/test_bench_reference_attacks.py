"""bench.reference_attacks: the "time to the references' quality" table and its files."""

import json
import pathlib
import shutil
import types

import pytest

from bench import reference_attacks
from remix_jax import attack_quality, cw_ead_comparison

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _row(impl, seconds, successes=100, l2=1.0, en=2.0, attack="cw"):
    return {
        "implementation": impl,
        "attack": attack,
        "confidence": 0.0,
        "successes": successes,
        "mean_l2": l2,
        "mean_l1": 9.0,
        "mean_en": en,
        "seconds": seconds,
    }


def test_fastest_strictly_matching_run_of_ours_is_chosen():
    rows = [
        _row("ours-cw", 100.0, l2=0.90),
        _row("ours-cw@5x300", 20.0, l2=1.01),  # worse: never counts
        _row("ours-cw@5x500", 40.0, l2=1.00),  # equal: counts
        _row("ours-cw@5x400", 30.0, successes=99, l2=0.5),  # fewer successes
        _row("advertorch-cw", 80.0, l2=1.00),
    ]
    (q,) = attack_quality.to_quality(rows)
    assert q["reference"] == "advertorch-cw" and q["ours"] == "ours-cw@5x500"
    assert q["speedup"] == 2.0 and q["metric"] == "mean_l2"


def test_ead_is_judged_by_its_decision_rule_and_no_match_is_reported():
    rows = [
        _row("ours-ead", 10.0, attack="ead", l2=0.1, en=3.0),
        _row("foolbox-ead", 50.0, attack="ead", l2=5.0, en=2.9),
    ]
    (q,) = attack_quality.to_quality(rows, "EN")
    assert q["metric"] == "mean_en" and q["ours"] is None and q["speedup"] is None
    assert "none matches" in cw_ead_comparison.markdown(
        {
            "settings": {
                "num_examples": 100,
                "binary_search_steps": 5,
                "max_iterations": 1000,
                "learning_rate": 0.01,
                "initial_const": 0.001,
                "abort_early": True,
                "beta": 0.01,
                "decision_rule": "EN",
            },
            "rows": [
                {**r, "n": 100, "median_l2": 1.0, "mean_l0": 1.0, "mean_linf": 0.1} for r in rows
            ],
            "to_quality": [q],
        }
    )


def test_committed_budget_bench_table_follows_from_its_rows():
    path = ROOT / "results/bench/reference_attacks_cifar10_budgets2.json"
    payload = json.loads(path.read_text())
    assert payload["to_quality"] == attack_quality.to_quality(
        payload["rows"], payload["settings"]["decision_rule"]
    )
    names = {r["implementation"] for r in payload["rows"]}
    assert {"advertorch-cw", "foolbox-cw", "advertorch-ead", "foolbox-ead"} <= names
    assert all(r["successes"] == r["n"] for r in payload["rows"])


def test_render_only_reproduces_the_committed_tables(tmp_path):
    name = "reference_attacks_cifar10_budgets2"
    shutil.copy(ROOT / f"results/bench/{name}.json", tmp_path / f"{name}.json")
    reference_attacks.main(["--render-only", "--out", str(tmp_path / name)])
    committed = json.loads((ROOT / f"results/bench/{name}.json").read_text())
    rendered = json.loads((tmp_path / f"{name}.json").read_text())
    assert "rendered" in rendered
    for key in ("rows", "paired", "to_quality", "per_example", "settings"):
        assert rendered[key] == committed[key], key
    md = (tmp_path / f"{name}.md").read_text()
    assert md == (ROOT / f"results/bench/{name}.md").read_text()


@pytest.mark.parametrize(
    "path", sorted(ROOT.glob("results/bench/reference_attacks*.json")), ids=lambda p: p.stem
)
def test_every_committed_table_follows_from_its_result(path):
    payload = json.loads(path.read_text())
    assert path.with_suffix(".md").read_text() == cw_ead_comparison.markdown(payload)


def test_budgets_name_their_runs_and_warm_start_reaches_our_attack(monkeypatch):
    """--ours-budgets 5x500+lr0.03 / 3x300+warm+linear: each becomes a run of ours with those
    settings (our options only where asked), named after it, placed after its attack."""
    from bench import reference_runs

    args = reference_attacks._parser().parse_args(
        ["--implementations", "ours-cw", "--ours-budgets", "5x500+lr0.03", "3x300+warm+linear"]
    )
    assert args.ours_budgets == [(5, 500, ("lr0.03",)), (3, 300, ("warm", "linear"))]
    for bad in ("5x500warm", "5x500+cold", "5x500+lr0", "5x500+lrx"):
        with pytest.raises(SystemExit):
            reference_attacks._parser().parse_args(["--ours-budgets", bad])
    calls = []
    monkeypatch.setattr(reference_runs, "run_ours", lambda *a, **budget: calls.append(budget))
    pre = types.SimpleNamespace(logits_fn=None)
    runs, names, _ = reference_runs.runners(args, pre, None, None, None)
    assert names == ["ours-cw", "ours-cw@5x500+lr0.03", "ours-cw@3x300+warm+linear"]
    for name in names:
        runs[name](0.0)
    assert calls == [
        {},
        {"binary_search_steps": 5, "max_iterations": 500, "learning_rate": 0.03},
        {
            "binary_search_steps": 3,
            "max_iterations": 300,
            "warm_start": True,
            "initial_const": "linear",
        },
    ]
