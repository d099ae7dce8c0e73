"""attack_quality: one verdict for every attack's images, summaries and comparisons."""

import numpy as np
import pytest

from remix_jax import attack_quality


def _logits(v):
    """Two classes; the pixel sum s moves the logits: (2 - s, s). (B, 2, 2, 1) -> (B, 2)."""
    s = v.reshape(len(v), -1).sum(1)
    return np.stack([2.0 - s, s], -1).astype(np.float32)


def test_judge_needs_margin_wrong_argmax_the_box_and_no_black_sentinel():
    x = np.full((5, 2, 2, 1), 0.25, np.float32)  # s = 1: a tie, the argmax is class 0
    y = np.array([0, 0, 0, 1, 0], np.int32)
    adv = x.copy()
    adv[0] = 0.5  # s = 2, margin 2: a success at kappa 1
    adv[1] = 0.3  # margin 0.4 < kappa
    adv[2, 0, 0, 0] = 1.5  # margin 2.5, but out of [0, 1]
    adv[3] = 0.0  # black: label 1 vs logits (2, 0) is fooled, but it is Foolbox's sentinel
    v = attack_quality.judge(_logits, x, y, adv, kappa=1.0, batch=2)
    assert v["success"].tolist() == [True, False, False, False, False]
    assert v["zero_sentinel"].tolist() == [False, False, False, True, False]
    np.testing.assert_allclose(v["margin"], [2.0, 0.4, 2.5, 2.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(v["l0"], [4, 4, 1, 4, 0])
    np.testing.assert_allclose([v["l1"][0], v["l2"][0], v["linf"][0]], [1.0, 0.5, 0.25])
    assert all(v[k].shape == (5,) for k in attack_quality.VERDICT_KEYS)


def _verdict(success, l2, l1):
    n = len(success)
    return {
        "success": np.array(success),
        "zero_sentinel": np.zeros(n, bool),
        "margin": np.zeros(n, np.float32),
        "l0": np.ones(n),
        "l1": np.array(l1, float),
        "l2": np.array(l2, float),
        "linf": np.ones(n),
    }


def test_summaries_average_over_successes_only():
    row = attack_quality.summarise(_verdict([True, False, True], [1, 100, 3], [2, 100, 4]), 0.5)
    assert (row["n"], row["successes"]) == (3, 2)
    assert row["success_rate"] == pytest.approx(2 / 3)
    assert row["mean_l2"] == 2.0 and row["median_l2"] == 2.0 and row["mean_l1"] == 3.0
    assert row["mean_en"] == pytest.approx(((1 + 1) + (9 + 2)) / 2)  # L2^2 + beta L1
    empty = attack_quality.summarise(_verdict([False], [1], [1]), 0.5)
    assert empty["mean_l2"] is None and empty["mean_en"] is None and empty["success_rate"] == 0


def test_paired_compares_on_examples_both_broke_within_the_tolerance():
    ours = _verdict([True, True, True, False], [1.0005, 1.01, 2.0, 9.0], [1, 1, 1, 1])
    ref = _verdict([True, True, False, True], [1.0, 1.0, 9.0, 1.0], [1, 1, 1, 1])
    q = attack_quality.paired(ours, ref, beta=0.0)
    assert (q["both"], q["ours_only"], q["ref_only"]) == (2, 1, 1)
    assert q["ours_le_ref_l2"] == 1  # 1.0005 is within 0.1% of 1.0; 1.01 is not
    assert q["ours_mean_l2"] == pytest.approx(1.00525) and q["ref_mean_l2"] == 1.0
    assert q["ours_le_ref_l1"] == 2 and q["mean_ratio_l1"] == 1.0


def test_references_pair_with_ours_at_the_same_kappa_only():
    v = _verdict([True], [1.0], [1.0])
    verdicts = {
        ("ours-cw", 0.0): v,
        ("ours-cw@5x500", 0.0): v,
        ("foolbox-cw", 0.0): v,
        ("advertorch-ead", 0.0): v,  # no ours-ead: no pair
        ("foolbox-cw", 10.0): v,  # no ours-cw at kappa 10
    }
    (pair,) = attack_quality.pair_with_ours(verdicts, beta=0.01)
    assert (pair["attack"], pair["confidence"], pair["reference"]) == ("cw", 0.0, "foolbox-cw")
    assert pair["both"] == 1


def test_verdict_lists_round_trip_at_five_decimals():
    v = _verdict([True, False], [0.1234567, 2.0], [1.0, 3.0])
    lists = attack_quality.verdict_to_lists(v)
    assert list(lists) == list(attack_quality.VERDICT_KEYS)
    assert lists["success"] == [True, False] and lists["l2"] == [0.12346, 2.0]
    back = attack_quality.verdict_from_lists(lists)
    assert back["success"].dtype == bool and back["l2"].dtype == np.float64
    np.testing.assert_array_equal(back["l2"], [0.12346, 2.0])


def test_l1_decision_rule_judges_ead_by_mean_l1():
    rows = [
        {"implementation": i, "attack": "ead", "confidence": 0.0, "successes": 10}
        | {"mean_l1": l1, "mean_en": en, "seconds": s}
        for i, l1, en, s in (("ours-ead", 5.0, 9.0, 10.0), ("foolbox-ead", 6.0, 1.0, 30.0))
    ]
    (q,) = attack_quality.to_quality(rows, "L1")
    assert q["metric"] == "mean_l1" and q["ours"] == "ours-ead" and q["speedup"] == 3.0
    (q,) = attack_quality.to_quality(rows, "EN")
    assert q["ours"] is None


def test_judge_in_ball_projects_before_judging_and_reports_what_lay_outside():
    # _logits: class 1 wins where the pixel sum s (4 pixels) exceeds 1
    x = np.full((5, 2, 2, 1), 0.25, np.float32)  # s = 1: a tie, the argmax is class 0
    y = np.zeros(5, np.int32)
    adv = x.copy()
    adv[0] += 0.05  # inside the ball (0.1): s = 1.2 -> class 1, broken
    adv[1] += 0.5  # outside the ball; projected back: +0.1 each, s = 1.4 -> still broken
    adv[2] -= 0.5  # outside the box and the ball; projected: s = 0.6 -> class 0, robust
    adv[3, 0, 0, 0] += 0.1 + 5e-7  # on the edge within the tolerance: s = 1.1 -> broken
    v = attack_quality.judge_in_ball(_logits, x, y, adv, 0.1, batch=2)
    assert v["robust"].tolist() == [False, False, True, False, True]
    assert v["outside"].tolist() == [False, True, True, False, False]
    np.testing.assert_allclose(v["excess"][:3], [0.0, 0.4, 0.4], atol=1e-6)
    np.testing.assert_allclose(v["distance"][:2], [0.05, 0.5], atol=1e-6)
    # an image that fools the model only outside the ball does not count: the
    # projection, not the returned image, is judged
    far = x.copy()
    far[0, 0, 0, 0] = 1.0  # s = 1.75 unprojected; +0.1 once projected: s = 1.1 -> broken
    far[1, :, :, 0] = [[1.0, 0.2], [0.0, 0.0]]  # s = 1.2 unprojected, 0.85 projected
    assert attack_quality.judge_in_ball(_logits, x, y, far, 0.1)["robust"][:2].tolist() == [
        False,
        True,
    ]
    row = attack_quality.summarise_in_ball(v)
    assert row == {
        "n": 5,
        "robust": 2,
        "robust_accuracy": 40.0,
        "outside": 2,
        "max_excess": pytest.approx(0.4, abs=1e-6),
    }


def test_judge_in_ball_l2_scales_down_to_the_radius():
    x = np.full((2, 2, 2, 1), 0.25, np.float32)
    y = np.zeros(2, np.int32)
    adv = x.copy()
    adv[0] += 0.5  # L2 1.0 -> scaled to 0.1: +0.05 each, s = 1.2 -> broken
    adv[1, 0, 0, 0] = 0.0  # L2 0.25 -> 0.1: s = 0.9 -> robust
    v = attack_quality.judge_in_ball(_logits, x, y, adv, 0.1, norm="l2")
    assert v["robust"].tolist() == [False, True]
    np.testing.assert_allclose(v["distance"], [1.0, 0.25], atol=1e-6)
    np.testing.assert_allclose(v["excess"], [0.9, 0.15], atol=1e-6)
    with pytest.raises(ValueError, match="norm"):
        attack_quality.judge_in_ball(_logits, x, y, adv, 0.1, norm="l1")
