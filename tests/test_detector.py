"""The REMIX detector: its copies are REMIX's, its scores are finite, differentiable and
higher on noise, MagNet's thresholds, the ROC AUC, a detector run's scores and their
evaluation, and eval.detector's command line."""

import glob
import itertools
import json
import os

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from eval import detector as cli
from remix_jax import RemixParams, defend, detector, detector_report, mask_inpaint
from remix_jax.defense import autoencoder_fn
from remix_jax.models import AutoencoderConfig, init_autoencoder

HW = (8, 8)


def tiny_params(channels=1, *, reformer=True, n_masks=2, per_channel=False):
    cfg = AutoencoderConfig(channels=channels, features=(4, 4), strides=(1, 2), mask_channel=True)
    ref_cfg = AutoencoderConfig(channels=channels, features=(4,), strides=(1,))
    return RemixParams(
        inpainter=init_autoencoder(jax.random.key(0), cfg, HW),
        reformer=init_autoencoder(jax.random.key(1), ref_cfg, HW) if reformer else None,
        inpainter_config=cfg,
        reformer_config=ref_cfg if reformer else None,
        n_masks=n_masks,
        per_channel=per_channel,
    )


def toy_logits(x):
    """A fixed random linear classifier with logits spread enough for T = 10."""
    w = jax.random.normal(jax.random.key(7), (x[0].size, 10)) * 3.0
    return x.reshape(x.shape[0], -1) @ w


def images(b, channels=1, seed=0):
    return jax.random.uniform(jax.random.key(seed), (b, *HW, channels))


@pytest.mark.parametrize("channels,n,per_channel", [(1, 2, False), (3, 3, True)])
def test_combined_copies_are_mask_inpaint_for_the_same_key(channels, n, per_channel):
    params = tiny_params(channels, reformer=False, n_masks=n, per_channel=per_channel)
    x, key = images(3, channels), jax.random.key(5)
    copies, masks = jax.jit(detector.inpainted_copies)(params, jax.random.clone(key), x)
    chex.assert_shape(copies, (n, 3, *HW, channels))
    chex.assert_shape(masks, (n, 3, *HW, channels if per_channel else 1))
    fn = autoencoder_fn(params.inpainter_config, params.inpainter)
    expected = jax.jit(lambda k, x: mask_inpaint(fn, k, x, n, per_channel=per_channel))(key, x)
    np.testing.assert_allclose(jnp.sum(copies * (1 - masks), 0), expected, rtol=0, atol=1e-6)
    # the visible pixels are the input's, and the masks are complementary
    np.testing.assert_array_equal(copies * masks, jnp.broadcast_to(x[None] * masks, copies.shape))
    np.testing.assert_array_equal(jnp.sum(1 - masks, 0), 1.0)


def test_copies_with_a_reformer_make_defend_output():
    params = tiny_params(reformer=True)
    x, key = images(4), jax.random.key(3)
    copies, masks = jax.jit(detector.inpainted_copies)(params, jax.random.fold_in(key, 0), x)
    expected = defend(params, key, x, iterations=1, chunk=None)
    np.testing.assert_allclose(jnp.sum(copies * (1 - masks), 0), expected, rtol=0, atol=1e-6)


def test_scores_are_finite_per_image_differentiable_and_batch_free():
    params = tiny_params(reformer=True, n_masks=3)
    x, key = images(4), jax.random.key(2)

    def totals(x):  # (4,): each score summed over the batch, and the scores
        scores = detector.detector_scores(params, toy_logits, jax.random.clone(key), x)
        return jnp.stack([scores[name].sum() for name in detector.SCORES]), scores

    grads, scores = jax.jit(jax.jacrev(totals, has_aux=True))(x)
    chex.assert_shape(grads, (len(detector.SCORES), *x.shape))
    assert set(scores) == set(detector.SCORES)
    for name, grad in zip(detector.SCORES, grads, strict=True):
        chex.assert_shape(scores[name], (4,))
        assert scores[name].dtype == jnp.float32, name
        assert bool(jnp.all(jnp.isfinite(scores[name])) & jnp.all(scores[name] >= 0)), name
        assert bool(jnp.all(jnp.isfinite(grad))) and float(jnp.abs(grad).max()) > 0, name
    # the same key gives the same scores, whatever the batch size
    batched = detector.batched_scores(
        params, toy_logits, jax.random.clone(key), np.asarray(x), batch_size=2
    )
    again = detector.batched_scores(params, toy_logits, key, np.asarray(x), batch_size=2)
    for name in detector.SCORES:
        np.testing.assert_array_equal(batched[name], again[name])
        np.testing.assert_allclose(batched[name], scores[name], rtol=1e-5, atol=1e-7)


def neighbour_average(masked, masks):
    """A fixed inpainter: each pixel becomes the mean of its visible 5x5 neighbours."""
    kernel = jnp.ones((5, 5, 1, 1))

    def box(a):
        return jax.lax.conv_general_dilated(
            a, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    return box(masked) / jnp.maximum(box(masks), 1.0)


def test_inpaint_error_is_higher_on_salt_noise_than_on_smooth_images():
    rows, cols = jnp.meshgrid(jnp.arange(8.0), jnp.arange(8.0), indexing="ij")
    rows, cols = rows[None], cols[None]
    phase = jax.random.uniform(jax.random.key(0), (16, 1, 1))
    smooth = (0.5 + 0.2 * jnp.sin(rows / 3 + 6 * phase) * jnp.cos(cols / 4 - 3 * phase))[..., None]
    k1, k2 = jax.random.split(jax.random.key(1))
    salt = jax.random.bernoulli(k1, 0.3, smooth.shape).astype(jnp.float32) * (
        jax.random.rademacher(k2, smooth.shape, jnp.float32)
    )
    noisy = jnp.clip(smooth + 0.3 * salt, 0.0, 1.0)

    @jax.jit
    def scores(key, x):
        copies, masks = detector.mask_inpaint_copies(neighbour_average, key, x, 2)
        return detector.scores_of_copies(toy_logits, x, copies, masks)

    key = jax.random.key(4)
    clean = scores(jax.random.clone(key), smooth)["inpaint-L2"]
    adversarial = scores(key, noisy)["inpaint-L2"]
    assert bool(jnp.all(adversarial > clean)), (clean, adversarial)
    assert detector.roc_auc(clean, adversarial) == 1.0


def brute_force_auc(neg, pos):
    pairs = list(itertools.product(neg, pos))
    return sum(1.0 if p > n else 0.5 if p == n else 0.0 for n, p in pairs) / len(pairs)


@pytest.mark.parametrize("seed", range(6))
def test_roc_auc_is_the_pair_count_with_ties_half(seed):
    rng = np.random.default_rng(seed)
    neg = rng.integers(0, 6, rng.integers(1, 40))
    pos = rng.integers(1, 7, rng.integers(1, 40))
    assert detector.roc_auc(neg, pos) == pytest.approx(brute_force_auc(neg, pos), abs=1e-12)


def test_roc_auc_extremes_and_bad_input():
    a = np.random.default_rng(0).normal(size=200)
    assert detector.roc_auc(a, a + 10) == 1.0
    assert detector.roc_auc(a + 10, a) == 0.0
    assert detector.roc_auc(a, a) == 0.5
    with pytest.raises(ValueError, match="adversarial_scores"):
        detector.roc_auc(a, [])
    with pytest.raises(ValueError, match="clean_scores"):
        detector.roc_auc([np.nan], a)


def test_calibrate_rejects_the_drop_rate_of_validation_images():
    params = tiny_params(reformer=True, n_masks=3)  # as above: the same compiled batches
    x, key = np.asarray(images(40, seed=3)), jax.random.key(11)
    rates = {"inpaint-L2": 0.1, "copies-JSD": 0.05, "output-JSD": 0.3}
    thresholds = detector.calibrate(
        params, toy_logits, jax.random.clone(key), x, rates, batch_size=2
    )
    scores = detector.batched_scores(params, toy_logits, key, x, batch_size=2)
    assert set(thresholds) == set(rates)
    for name, rate in rates.items():
        assert np.sum(scores[name] >= thresholds[name]) == int(len(x) * rate), name
    with pytest.raises(ValueError, match="unknown"):
        detector.calibrate(params, toy_logits, key, x, {"L2": 0.1})
    with pytest.raises(ValueError, match="drop_rates"):
        detector.calibrate(params, toy_logits, key, x, {"inpaint-L2": 1.5})


def test_bad_inputs_are_rejected_with_the_argument_named():
    params, x, key = tiny_params(), images(2), jax.random.key(0)
    with pytest.raises(ValueError, match="n_masks"):
        detector.detector_scores(params.replace(n_masks=1), toy_logits, key, x)
    with pytest.raises(ValueError, match="channel"):
        detector.inpainted_copies(params, key, images(2, channels=3))
    with pytest.raises(ValueError, match="NaN"):
        detector.detector_scores(params, toy_logits, key, x.at[0, 0, 0, 0].set(jnp.nan))
    with pytest.raises(ValueError, match="temperature"):
        detector.detector_scores(params, toy_logits, key, x, temperature=0.0)
    with pytest.raises(TypeError, match="RemixParams"):
        detector.inpainted_copies({"inpainter": None}, key, x)
    with pytest.raises(ValueError, match="copies"):
        detector.scores_of_copies(toy_logits, x, x[None], jnp.ones((1, 2, *HW, 1)))


def test_only_finished_caches_are_found_and_outputs_are_named(tmp_path):
    for name in (
        "kappa_0.npz",
        "kappa_5.npz",
        "kappa_12.5.npz",
        "kappa_10.part_0.npz",
        "kappa_15.npz.tmp.npz",
        "settings.json",
    ):
        (tmp_path / name).write_bytes(b"")
    from remix_jax import adversarial_cache

    found = adversarial_cache.finished(str(tmp_path))
    assert list(found) == [0.0, 5.0, 12.5]
    assert found[5.0] == os.path.join(str(tmp_path), "kappa_5.npz")
    assert adversarial_cache.default_folder("mnist", "cw", "cpu") == os.path.join(
        "results", "mnist", "cache", "cw-cpu"
    )
    assert adversarial_cache.default_folder("mnist", "cw", "paper") == os.path.join(
        "results", "mnist", "cache", "cw"
    )
    assert detector_report.default_out("mnist", "cw", "paper") == os.path.join(
        "results", "mnist", "detector-cw"
    )
    assert detector_report.default_out("mnist", "cw", "cpu", "misclassified") == os.path.join(
        "results", "mnist", "detector-cw-cpu-misclassified"
    )
    assert detector_report.spread([0.5, 0.7])["mean"] == pytest.approx(0.6)
    for bad in (["--drop-rates", "0"], ["--num-keys", "0"], ["--temperature", "0"]):
        with pytest.raises(SystemExit):
            cli.parse(["--attack", "cw", *bad])
    with pytest.raises(SystemExit):  # 10 validation images reject none at 0.05
        cli.parse(["--attack", "cw", "--validation-size", "10", "--drop-rates", "0.05"])


def test_cli_writes_its_table_and_plot(tmp_path):
    spread = detector_report.spread
    names = ["REMIX inpaint-L2", "MagNet I-L2"]
    result = {
        "dataset": "mnist",
        "attack": "cw",
        "preset": "cpu",
        "command": "python -m eval.detector",
        "machine": "test",
        "git_commit": "0" * 40,
        "date": "today",
        "wall_seconds": 1.0,
        "data_source": "fake",
        "negatives": "4 clean",
        "positives": "fooled",
        "validation": {"split": "last 8 training images"},
        "settings": {
            "num_keys": 2,
            "n_masks": 2,
            "temperature": 10.0,
            "drop_rates": ["0.1"],
            "variants": {"REMIX": "reformer + mask-inpaint"},
        },
        "detectors": names,
        "clean_rejected": {n: {"0.1": spread([10.0, 20.0])} for n in names},
        "rows": [
            {
                "confidence": k,
                "fooled": 3,
                "images": 4,
                "auc": {"REMIX inpaint-L2": spread([0.9, 0.8]), "MagNet I-L2": spread([0.7])},
                "detected": {n: {"0.1": spread([50.0])} for n in names},
            }
            for k in (0, 5)
        ],
    }
    out = str(tmp_path / "sub" / "detector-cw-cpu")
    detector_report.write_outputs(out, result)
    with open(out + ".md") as f:
        table = f.read()
    assert "| REMIX inpaint-L2 | 0.850 ± 0.071 | 0.850 ± 0.071 |" in table
    assert "| MagNet I-L2 | 15.0 ± 7.1 | 50.0 | 50.0 |" in table
    assert os.path.getsize(out + ".png") > 0 and os.path.isfile(out + ".json")
    assert not [f for f in os.listdir(tmp_path / "sub") if "tmp" in f]
    os.remove(out + ".md")
    cli.main(["--attack", "cw", "--render-only", "--out", out])
    with open(out + ".md") as f:
        assert f.read() == table


def test_evaluate_run_thresholds_unions_and_empty_kappas():
    val = np.arange(100.0)  # drop rate 0.1 -> threshold 90: 10 of 100 rejected
    run = {
        "val": {"a": val, "b": val},
        "clean": {"a": np.array([0.0, 95.0]), "b": np.array([0.0, 0.0])},
        0.0: {"a": np.array([91.0, 10.0, 5.0, 0.0]), "b": np.array([0.0, 92.0, 0.0, 0.0])},
        5.0: {},  # nothing fooled the classifier
    }
    out = detector.evaluate_run(
        run, ["a", "b"], {"a or b": ["a", "b"], "c": ["c"]}, [0.1], [0.0, 5.0]
    )
    assert out["threshold"] == {("a", 0.1): 90.0, ("b", 0.1): 90.0}
    assert out["clean_rejected"] == {("a", 0.1): 50.0, ("b", 0.1): 0.0, ("a or b", 0.1): 50.0}
    assert out["detected"] == {
        ("a", 0.1, 0.0): 25.0,
        ("b", 0.1, 0.0): 25.0,
        ("a or b", 0.1, 0.0): 50.0,
    }
    assert out["auc"] == {
        ("a", 0.0): pytest.approx(detector.roc_auc([0, 95], [91, 10, 5, 0])),
        ("b", 0.0): pytest.approx(detector.roc_auc([0, 0], [0, 92, 0, 0])),
    }


def test_set_salts_are_distinct_and_fixed_per_set():
    assert [detector.set_salt(w) for w in ("val", "clean", 0.0, 2.5, 40.0)] == [0, 1, 100, 125, 500]


def test_remix_run_draws_each_sets_masks_from_its_salt_and_skips_empty_sets():
    params = tiny_params(reformer=False)
    # two names for one RemixParams: one compilation; the names must not mix
    variants = {"A": params, "B": params}
    sets = {"val": np.asarray(images(2)), "clean": np.asarray(images(2, seed=1)), 5.0: images(0)}
    calls = []
    key = jax.random.key(4)
    run = detector.remix_run(
        key, variants, toy_logits, sets, batch_size=2, on_set=lambda: calls.append(1)
    )
    assert list(run) == ["val", "clean", 5.0] and run[5.0] == {}
    assert len(calls) == len(variants) * len(sets)  # one progress tick per (variant, set)
    assert list(run["clean"]) == [f"{v} {s}" for v in variants for s in detector.SCORES]
    for where in ("val", "clean"):
        salted = jax.random.fold_in(key, detector.set_salt(where))
        expected = detector.batched_scores(params, toy_logits, salted, sets[where], batch_size=2)
        for v, s in itertools.product(variants, detector.SCORES):
            np.testing.assert_array_equal(run[where][f"{v} {s}"], expected[s])
    # another set's salt draws other masks: the same images score otherwise
    other = detector.batched_scores(params, toy_logits, jax.random.fold_in(key, 0), sets["clean"])
    assert not np.allclose(other["inpaint-L2"], run["clean"]["A inpaint-L2"])


def test_magnet_run_scores_in_batches_and_names_its_detectors():
    from remix_jax import magnet
    from remix_jax.datasets import DetectorSpec
    from remix_jax.models.magnet import MagNetAEConfig, MagNetAutoencoder

    config = MagNetAEConfig(1, (3,))
    weights = MagNetAutoencoder(config).init(jax.random.key(0), jnp.zeros((1, *HW, 1)))["params"]
    specs = (
        DetectorSpec("II-L1", "II", "L1", 0.1),
        DetectorSpec("JSD-T10", "II", "JSD", 0.1, 10.0),
    )
    m = magnet.MagNetParams({"II": weights}, {}, (("II", config),), specs, "II")
    x = np.asarray(images(4))
    run = detector.magnet_run(m, toy_logits, {"val": x, 0.0: x[:0]}, batch_size=2)
    assert run[0.0] == {} and list(run["val"]) == ["MagNet II-L1", "MagNet JSD-T10"]
    expected = magnet.detector_scores(m, toy_logits, x)
    for name in ("II-L1", "JSD-T10"):
        np.testing.assert_allclose(run["val"][f"MagNet {name}"], expected[name], rtol=1e-5)


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMITTED = sorted(glob.glob(os.path.join(REPO, "results", "*", "detector-*-cpu.json")))


@pytest.mark.parametrize("path", COMMITTED, ids=[os.path.basename(p) for p in COMMITTED])
def test_committed_detector_results_agree_with_the_committed_sweep(path):
    """A committed detector run is in range, and its MagNet detectors are the sweep's.

    The sweep counts full MagNet as right when its detectors reject an example or its
    reformer restores the class, so on the same examples the sweep's MagNet accuracy
    lies between max(rejected, reformer) and rejected + reformer. The shipped MagNet
    need not sit at one drop rate (CIFAR-10's: I-L1 at 0.005, the JSDs at 0.01), so
    "rejected" is bracketed by the detector run's drop rates whose thresholds reject
    a subset, and a superset, of what the shipped thresholds reject.
    """
    with open(path) as f:
        result = json.load(f)
    for row in result["rows"]:
        # None where the attack succeeded nowhere (EAD at the top of the CIFAR-10 grid)
        for value in row["auc"].values():
            assert value is None or 0 <= value["min"] <= value["mean"] <= value["max"] <= 1
        for rates in row["detected"].values():
            for value in rates.values():
                assert value is None or 0 <= value["mean"] <= 100
    sweep_path = os.path.join(REPO, "results", result["dataset"], f"{result['attack']}.json")
    with open(sweep_path) as f:
        sweep = json.load(f)
    if sweep["num_examples"] != result["num_examples"]:
        pytest.skip(
            f"{sweep_path} scores {sweep['num_examples']} examples, "
            f"the detector run {result['num_examples']}: rerun eval.detector"
        )
    union = next(name for name in result["unions"] if name.startswith("MagNet"))
    subset_rate, superset_rate = bracketing_drop_rates(result, union)
    by_kappa = {row["confidence"]: row for row in result["rows"]}
    compared = 0
    for srow in sweep["rows"]:
        row = by_kappa[srow["confidence"]]
        if row["verified"] != row["images"]:  # detection is over the verified examples
            continue
        rejected_at_least = row["detected"][union][subset_rate]["mean"]
        rejected_at_most = row["detected"][union][superset_rate]["mean"]
        reformer = srow["MagNet reformer | all"]["mean"]
        magnet = srow["MagNet | all"]["mean"]
        assert max(rejected_at_least, reformer) - 0.05 <= magnet
        assert magnet <= rejected_at_most + reformer + 0.05
        compared += 1
    assert compared, "no kappa where every example was a verified success"


def bracketing_drop_rates(result: dict, union: str) -> tuple[str, str]:
    """The run's drop rates that bracket the shipped MagNet's thresholds.

    A detector rejects above its threshold, so a drop rate whose thresholds are all
    >= the shipped ones rejects a subset of what the shipped MagNet rejects, and one
    whose thresholds are all <= them a superset.

    Returns:
        (largest subset rate, smallest superset rate), as the run's string keys.
    """
    members = result["unions"][union]
    shipped = result["magnet_thresholds_shipped"]
    rates = sorted(result["settings"]["drop_rates"], key=float)

    def threshold(name: str, rate: str) -> float:
        return result["thresholds"][name][rate]["mean"]

    subset = [r for r in rates if all(threshold(m, r) >= shipped[m] for m in members)]
    superset = [r for r in rates if all(threshold(m, r) <= shipped[m] for m in members)]
    assert subset and superset, f"no drop rate brackets the shipped thresholds {shipped}"
    return subset[-1], superset[0]
