"""A detector run's result: cached inputs read, positives re-checked, spreads over keys
assembled in the committed key order, and the committed tables rendered again."""

import glob
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_detector import images, tiny_params, toy_logits

from remix_jax import adversarial_cache, detector, detector_report

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMITTED = sorted(glob.glob(os.path.join(REPO, "results", "*", "detector-*.json")))


def _ids(paths):
    return [os.path.relpath(p, os.path.join(REPO, "results")) for p in paths]


@pytest.mark.parametrize("path", COMMITTED, ids=_ids(COMMITTED))
def test_committed_results_render_to_their_committed_tables(path):
    with open(path) as f:
        result = json.load(f)
    with open(path[: -len(".json")] + ".md") as f:
        assert detector_report.markdown(result) == f.read()


@pytest.mark.parametrize("path", COMMITTED, ids=_ids(COMMITTED))
def test_assembled_fields_come_in_the_committed_order(path):
    """A rerun that reproduces a committed result must write the same bytes: the same
    keys in the same order."""
    with open(path) as f:
        result = json.load(f)
    s = result["settings"]
    settings = detector_report.run_settings(
        s["num_keys"], [float(r) for r in s["drop_rates"]], 10.0, list(s["variants"]), 2
    )
    assert list(settings) == list(s) and settings["drop_rates"] == s["drop_rates"]
    assert settings["variants"] == s["variants"]
    described = detector_report.describe_images("verified", 7, 98.76, 5, "somewhere")
    evaluated = ["detectors", "unions", "thresholds", "magnet_thresholds_shipped"]
    evaluated += ["clean_rejected", "rows"]
    keys = [k for k in result if k in described or k in evaluated]
    assert keys == list(described) + evaluated
    assert described["negatives"].startswith("the 7 clean") and "98.8%" in described["negatives"]
    assert described["validation"] == {
        "images": 5,
        "split": "last 5 training images (MagNet's validation)",
        "source": "somewhere",
    }


def test_import_starts_no_jax():
    code = (
        "import sys, remix_jax.detector_report, eval.detector; "
        "assert 'jax' not in sys.modules, 'jax imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def _write_cache(folder, kappa, indices, adversarial, success, **settings):
    path = os.path.join(folder, adversarial_cache.file_name(kappa))
    stored = {"indices": indices, **settings, "confidence": kappa}
    np.savez(path, settings=json.dumps(stored), adversarial=adversarial, success=success)
    return path


def test_read_crafted_keeps_settings_and_refuses_other_images(tmp_path):
    x = np.zeros((3, 2, 2, 1), np.float32)
    ok = np.array([True, False, True])
    first = _write_cache(tmp_path, 0.0, [4, 5, 6], x, ok, attack="cw", targeted=False)
    second = _write_cache(tmp_path, 5.0, [4, 5, 6], x + 1, ~ok, attack="cw", targeted=False)
    crafted, indices, settings = detector_report.read_crafted({0.0: first, 5.0: second})
    assert indices == [4, 5, 6] and settings == {"attack": "cw", "targeted": False}
    assert list(crafted) == [0.0, 5.0] and set(crafted[5.0]) == {"adversarial", "success"}
    np.testing.assert_array_equal(crafted[5.0]["success"], ~ok)
    other = _write_cache(tmp_path, 10.0, [4, 5, 7], x, ok, attack="cw")
    with pytest.raises(ValueError, match=f"{other} was crafted from other test images"):
        detector_report.read_crafted({0.0: first, 10.0: other})


def _logits(x):
    """(B, 1, 1, 3) images -> their pixels as logits, scaled: margins of 10 per unit."""
    return x.reshape(x.shape[0], -1) * 10.0


def test_check_positives_rechecks_success_or_takes_the_misclassified():
    labels = np.array([0, 0, 0, 2], np.int32)
    adversarial = np.array(
        [
            [1.0, 0.0, 0.0],  # right: no success whatever the crafting machine said
            [0.0, 1.0, 0.0],  # wrong by a margin of 10: a success at kappa 5
            [0.30, 0.35, 0.0],  # wrong by 0.5 only: misclassified, no success at kappa 5
            [0.0, 1.0, 0.0],  # wrong by 10, but the crafting machine saw no success
        ],
        np.float32,
    ).reshape(4, 1, 1, 3)
    crafted = {5.0: {"adversarial": adversarial, "success": np.array([True, True, True, False])}}
    for positives, expected in (
        ("verified", [False, True, False, False]),
        ("misclassified", [False, True, True, True]),
    ):
        positive, rows = detector_report.check_positives(
            _logits, crafted, labels, 3, False, positives
        )
        assert positive[5.0].tolist() == expected
        assert rows == [
            {
                "confidence": 5.0,
                "images": 4,
                "success_where_crafted": 75.0,
                "fooled": sum(expected),
                "verified": 1,
                "misclassified": 3,
            }
        ]


def test_check_positives_of_a_targeted_attack_need_the_target():
    labels = np.array([0, 1, 2, 0, 1], np.int32)
    targets = adversarial_cache.attack_labels(labels, 3, True)
    hit = np.eye(3, dtype=np.float32)[targets].reshape(5, 1, 1, 3)
    # a wrong class other than the target: misclassified, but no targeted success
    missed = np.eye(3, dtype=np.float32)[3 - labels - targets].reshape(5, 1, 1, 3)
    crafted = {
        0.0: {"adversarial": hit, "success": np.ones(5, bool)},
        1.0: {"adversarial": missed, "success": np.ones(5, bool)},
    }
    positive, rows = detector_report.check_positives(_logits, crafted, labels, 3, True, "verified")
    assert positive[0.0].all() and not positive[1.0].any()
    assert [r["misclassified"] for r in rows] == [5, 5]


def test_summarize_runs_spreads_over_keys_and_reads_magnet_once():
    rate = 0.1

    def evaluated(auc, detected, rejected=None):
        names = ["R a", "R b", "R (any)"] if rejected is None else ["MagNet m"]
        return {
            "auc": {(n, 0.0): auc for n in names if "any" not in n},
            "threshold": {(n, rate): 1.0 for n in names if "any" not in n},
            "clean_rejected": {(n, rate): 10.0 for n in names},
            "detected": {(n, rate, 0.0): detected for n in names},
        }

    remix = [evaluated(0.8, 40.0), evaluated(0.6, 60.0)]
    unions = {"R (any)": ["R a", "R b"], "MagNet (m or z)": ["MagNet m", "MagNet z"]}
    rows = [{"confidence": 0.0, "fooled": 3}, {"confidence": 5.0, "fooled": 0}]
    summary = detector_report.summarize_runs(
        remix, evaluated(0.9, 70.0, rejected=True), ["R a", "R b", "MagNet m"], unions, [rate], rows
    )
    assert list(summary) == ["detectors", "unions", "thresholds", "clean_rejected", "rows"]
    assert summary["unions"] == {"R (any)": ["R a", "R b"]}  # MagNet z was not scored
    assert list(summary["clean_rejected"]) == ["R a", "R b", "MagNet m", "R (any)"]
    auc = summary["rows"][0]["auc"]
    assert auc["R a"]["mean"] == pytest.approx(0.7) and auc["R a"]["runs"] == 2
    assert auc["MagNet m"] == {"mean": 0.9, "std": 0.0, "min": 0.9, "max": 0.9, "runs": 1}
    assert summary["rows"][0]["detected"]["R (any)"]["0.1"]["mean"] == pytest.approx(50.0)
    assert summary["thresholds"]["MagNet m"]["0.1"]["runs"] == 1
    # a kappa that fooled nothing: no AUC, no detection, and the row keeps its fields
    assert summary["rows"][1]["auc"]["R a"] is None
    assert summary["rows"][1]["detected"]["MagNet m"] == {"0.1": None}
    assert list(summary["rows"][1]) == ["confidence", "fooled", "auc", "detected"]
    assert rows[1] == {"confidence": 5.0, "fooled": 0}  # the input rows are not changed


def test_union_detectors_name_each_variant_and_magnets_official_set():
    unions = detector_report.union_detectors(
        ["REMIX", "REMIX MI"], ["MagNet I-L2", "MagNet II-L1"], ("s", "t")
    )
    assert unions == {
        "REMIX (any score)": ["REMIX s", "REMIX t"],
        "REMIX MI (any score)": ["REMIX MI s", "REMIX MI t"],
        "MagNet (I-L2 or II-L1)": ["MagNet I-L2", "MagNet II-L1"],
    }


def tiny_detector_run(scoring=None) -> tuple[dict, dict, dict]:
    """evaluate_detectors on a tiny MagNet and REMIX: (result, REMIX params, sets)."""
    from remix_jax.datasets import DetectorSpec
    from remix_jax.magnet import MagNetParams
    from remix_jax.models.magnet import MagNetAEConfig, MagNetAutoencoder

    config = MagNetAEConfig(1, (3,))
    weights = MagNetAutoencoder(config).init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))["params"]
    specs = (DetectorSpec("I-L2", "I", "L2", 0.1),)
    magnet = MagNetParams({"I": weights}, {"I-L2": jnp.float32(0.5)}, (("I", config),), specs, "I")
    params = tiny_params(reformer=False)
    # every set of one size: one compilation per scorer
    x = np.asarray(images(6))
    sets = {"val": x[:2], "clean": x[2:4], 0.0: x[4:], 5.0: x[:0]}
    rows = [{"confidence": 0.0}, {"confidence": 5.0}]
    keys = [jax.random.key(0), jax.random.key(1)]
    got = detector_report.evaluate_detectors(
        keys,
        {"REMIX MI": params},
        magnet,
        toy_logits,
        sets,
        rows,
        official=["I-L2"],
        drop_rates=[0.5],
        scoring=scoring,
    )
    return got, params, sets


def test_evaluate_detectors_is_the_runs_evaluated_and_summarized():
    """The library entry point agrees with its parts: REMIX per key, MagNet once."""
    got, params, sets = tiny_detector_run()
    assert list(got) == [
        "detectors",
        "unions",
        "thresholds",
        "magnet_thresholds_shipped",
        "clean_rejected",
        "rows",
    ]
    assert got["magnet_thresholds_shipped"] == {"MagNet I-L2": 0.5}
    names = [f"REMIX MI {s}" for s in detector.SCORES]
    assert got["detectors"] == [*names, "MagNet I-L2"]
    assert list(got["unions"]) == ["REMIX MI (any score)", "MagNet (I-L2)"]
    runs = [
        detector.remix_run(k, {"REMIX MI": params}, toy_logits, sets)
        for k in [jax.random.key(0), jax.random.key(1)]
    ]
    aucs = [detector.roc_auc(r["clean"][names[0]], r[0.0][names[0]]) for r in runs]
    assert got["rows"][0]["auc"][names[0]]["mean"] == pytest.approx(np.mean(aucs))
    assert got["rows"][0]["auc"][names[0]]["runs"] == 2
    assert got["rows"][0]["auc"]["MagNet I-L2"]["runs"] == 1
    assert got["rows"][1]["auc"][names[0]] is None


def test_a_killed_detector_evaluation_resumes_at_its_first_unscored_key(tmp_path, monkeypatch):
    from remix_jax import progress

    straight, _, _ = tiny_detector_run()
    path = str(tmp_path / "run.progress.json")
    calls, real = [], detector.remix_run

    def killed_at_second_key(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(detector, "remix_run", killed_at_second_key)
    with pytest.raises(KeyboardInterrupt):
        tiny_detector_run(progress.ProgressFile(path, {"run": 1}))
    calls.clear()
    monkeypatch.setattr(detector, "remix_run", lambda *a, **k: calls.append(1) or real(*a, **k))
    resumed, _, _ = tiny_detector_run(progress.ProgressFile(path, {"run": 1}))
    assert len(calls) == 1  # key 0 came from the file
    assert resumed == straight


def test_render_again_writes_the_files_again(tmp_path):
    path = COMMITTED[0]
    out = str(tmp_path / "copy")
    with open(path) as f, open(out + ".json", "w") as g:
        g.write(f.read())
    detector_report.render_again(out)
    with open(path[: -len(".json")] + ".md") as f, open(out + ".md") as g:
        assert g.read() == f.read()
    assert os.path.getsize(out + ".png") > 0
    assert sorted(os.listdir(tmp_path)) == ["copy.json", "copy.md", "copy.png"]
