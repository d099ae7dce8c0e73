"""MagNet: autoencoders, detector scores, MagNet's thresholds, scoring semantics, and
the committed MNIST MagNet."""

import json
import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from remix_jax import components, evaluation, magnet
from remix_jax.defense import RemixParams
from remix_jax.models.autoencoder import AutoencoderConfig
from remix_jax.models.magnet import MagNetAEConfig, MagNetAutoencoder

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAGNET_DIR = os.path.join(REPO, "checkpoints", "mnist", "magnet")


def tiny_magnet(detectors=None):
    key = jax.random.key(0)
    configs = {"I": MagNetAEConfig(1, (3, "average", 3)), "II": MagNetAEConfig(1, (3,))}
    params = {
        name: MagNetAutoencoder(c).init(jax.random.fold_in(key, i), jnp.zeros((1, 8, 8, 1)))[
            "params"
        ]
        for i, (name, c) in enumerate(configs.items())
    }
    detectors = detectors or (
        magnet.DetectorSpec("I-L2", "I", "L2", 0.1),
        magnet.DetectorSpec("II-L1", "II", "L1", 0.1),
        magnet.DetectorSpec("JSD-T10", "I", "JSD", 0.1, temperature=10.0),
    )
    return magnet.MagNetParams(params, {}, tuple(configs.items()), detectors, "I")


def toy_logits(x):
    # logits spread enough that the JSD at T=10 is far above float32 rounding
    return jnp.stack(
        [jnp.sin(x.reshape(x.shape[0], -1)[:, k] * 7) * 40 for k in range(10)], axis=-1
    )


@pytest.mark.parametrize("structure", [(3, "average", 3), (3,), (4, "max", 2)])
def test_autoencoder_keeps_the_shape_and_the_unit_range(structure):
    config = MagNetAEConfig(3, structure)
    model = MagNetAutoencoder(config)
    x = jax.random.uniform(jax.random.key(1), (2, 8, 8, 3))
    params = model.init(jax.random.key(0), x)["params"]
    out = jax.jit(lambda p, x: model.apply({"params": p}, x))(params, x)
    assert out.shape == x.shape and bool(jnp.all((out > 0) & (out < 1)))
    assert MagNetAEConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


def test_bad_configs_are_rejected():
    with pytest.raises(ValueError, match="structure"):
        MagNetAEConfig(1, (3, "median"))
    with pytest.raises(ValueError, match="kind"):
        magnet.DetectorSpec("x", "I", "L3", 0.01)
    with pytest.raises(ValueError, match="drop_rate"):
        magnet.DetectorSpec("x", "I", "L1", 0.0)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(10, 400),
    rate=st.sampled_from([0.001, 0.005, 0.01, 0.1, 0.3]),
    seed=st.integers(0, 10_000),
)
def test_threshold_rejects_exactly_the_drop_rate_of_distinct_scores(n, rate, seed):
    scores = np.random.default_rng(seed).permutation(n).astype(np.float64)
    if int(n * rate) < 1:
        with pytest.raises(ValueError, match="reject none"):
            magnet.threshold(scores, rate)
        return
    t = magnet.threshold(scores, rate)
    assert np.sum(scores >= t) == int(n * rate)


def test_jensen_shannon_is_zero_on_equal_inputs_symmetric_and_at_most_ln2():
    p = jax.nn.softmax(jax.random.normal(jax.random.key(0), (5, 10)))
    q = jax.nn.softmax(jax.random.normal(jax.random.key(1), (5, 10)))
    np.testing.assert_allclose(magnet.jensen_shannon(p, p), 0.0, atol=1e-6)
    np.testing.assert_allclose(magnet.jensen_shannon(p, q), magnet.jensen_shannon(q, p), rtol=1e-5)
    one_hot = jnp.eye(10)[:2]
    np.testing.assert_allclose(
        magnet.jensen_shannon(one_hot[:1], one_hot[1:]), np.log(2), rtol=1e-5
    )


def test_reconstruction_scores_are_mean_absolute_and_squared_errors():
    m = tiny_magnet()
    x = jax.random.uniform(jax.random.key(2), (4, 8, 8, 1))
    scores = magnet.detector_scores(m, toy_logits, x)
    r1, r2 = m.autoencoder("I")(x), m.autoencoder("II")(x)
    np.testing.assert_allclose(scores["I-L2"], jnp.mean((r1 - x) ** 2, axis=(1, 2, 3)), rtol=1e-5)
    np.testing.assert_allclose(
        scores["II-L1"], jnp.mean(jnp.abs(r2 - x), axis=(1, 2, 3)), rtol=1e-5
    )
    assert scores["JSD-T10"].shape == (4,) and bool(jnp.all(scores["JSD-T10"] >= 0))


def test_calibration_rejects_the_drop_rate_of_the_validation_images():
    m = tiny_magnet()
    x_val = np.asarray(jax.random.uniform(jax.random.key(3), (200, 8, 8, 1)))
    with pytest.raises(ValueError, match="not calibrated"):
        magnet.detect(m, toy_logits, x_val)
    # same batching as detect below: the rejected image with the smallest score sits
    # exactly on the threshold, where reassociated float sums could flip it
    calibrated = magnet.calibrate(m, toy_logits, x_val, batch_size=200)
    for d in m.detectors:
        alone = calibrated.select([d.name])
        assert int(np.sum(magnet.detect(alone, toy_logits, x_val))) == 20, d.name
    assert 20 <= int(np.sum(magnet.detect(calibrated, toy_logits, x_val))) <= 60
    # one pass gives every detector's rejections, equal to each detector alone
    labels = np.zeros(len(x_val), np.int32)
    both = magnet.outcomes(calibrated, toy_logits, x_val, labels, batch_size=200)
    for d in m.detectors:
        alone = magnet.outcomes(calibrated.select([d.name]), toy_logits, x_val, labels, 200)
        np.testing.assert_array_equal(both["rejected_by"][d.name], alone["rejected"])
    np.testing.assert_array_equal(
        both["rejected"], np.asarray(magnet.detect(calibrated, toy_logits, x_val))
    )


def test_a_rejected_input_counts_as_defended_only_when_adversarial():
    m = tiny_magnet()
    always = m.replace(thresholds={d.name: jnp.float32(-1.0) for d in m.detectors})
    remix = RemixParams(inpainter=None, inpainter_config=AutoencoderConfig())
    suite = evaluation.defense_suite(
        toy_logits, remix.replace(reformer=None), always, ("I-L2", "II-L1"), iterations=()
    )
    x = np.asarray(jax.random.uniform(jax.random.key(4), (6, 8, 8, 1)))
    y = np.zeros(6, np.int32)
    for name in ("MagNet", "MagNet + JSD"):
        assert suite[name].correct(None, x, y, True).all()
        assert not suite[name].correct(None, x, y, False).any()
    assert list(suite) == ["none", "MagNet reformer", "MagNet", "MagNet + JSD"]


# --- the committed MNIST MagNet ------------------------------------------------------


@pytest.fixture(scope="module")
def mnist_magnet():
    if not os.path.isfile(os.path.join(MAGNET_DIR, magnet.DETECTORS_FILE)):
        pytest.skip("MNIST MagNet not committed yet")
    from remix_jax.models.classifiers import as_variables
    from remix_jax.pretrained import load_classifier, load_magnet

    model, params = load_classifier("mnist")
    return load_magnet("mnist"), (lambda x: model.apply(as_variables(params), x))


@pytest.fixture(scope="module")
def mnist_test(data_dir):
    from remix_jax import data

    return data.load("mnist", "test", data_dir)


def test_committed_thresholds_are_reproduced_on_the_validation_images(mnist_magnet, data_dir):
    from remix_jax import data, training

    m, logits_fn = mnist_magnet
    train = data.load_split("mnist", "train", data_dir)
    with open(os.path.join(MAGNET_DIR, magnet.DETECTORS_FILE)) as f:
        report = json.load(f)
    _, (val, _) = training.holdout(train.images, train.labels, report["validation_images"])
    again = magnet.calibrate(m, logits_fn, data.to_float(val))
    for d in m.detectors:
        np.testing.assert_allclose(
            float(again.thresholds[d.name]), float(m.thresholds[d.name]), rtol=1e-4, err_msg=d.name
        )
    names = {d.name for d in m.detectors}
    assert set(components.magnet_official_names("mnist")) <= names


def test_committed_magnet_passes_clean_images_and_catches_heavy_noise(mnist_magnet, mnist_test):
    from remix_jax import data

    m, logits_fn = mnist_magnet
    images, labels = mnist_test
    x = data.to_float(images[:2000])
    official = m.select(components.magnet_official_names("mnist"))
    clean = magnet.outcomes(official, logits_fn, x, labels[:2000])
    assert clean["rejected"].mean() < 0.01  # drop rates 0.001 + 0.001 on validation
    assert clean["reformed_correct"].mean() > 0.98
    noisy = np.clip(x + 0.3 * np.random.default_rng(0).standard_normal(x.shape), 0, 1)
    assert (
        magnet.outcomes(official, logits_fn, noisy.astype(np.float32), labels[:2000])[
            "rejected"
        ].mean()
        > 0.9
    )


def test_missing_magnet_gives_a_clear_error(tmp_path):
    from remix_jax.pretrained import load_magnet

    with pytest.raises(FileNotFoundError, match="meta.json"):
        load_magnet("mnist", str(tmp_path))


@pytest.mark.slow
def test_train_magnet_cli_trains_calibrates_and_loads(tmp_path, data_dir, monkeypatch, capsys):
    from remix_jax.pretrained import load_magnet
    from train import magnet as train_magnet

    folder = tmp_path / "magnet"
    monkeypatch.setenv("REMIX_JAX_CPU_FLAGS", "0")  # the backend already runs here
    # MNIST with the first 500 test images (the clean rates it reports), not 6000
    mnist = tmp_path / "data" / "mnist"
    mnist.mkdir(parents=True)
    (mnist / "train.npz").symlink_to(os.path.join(data_dir, "mnist", "train.npz"))
    with np.load(os.path.join(data_dir, "mnist", "test.npz")) as test:
        np.savez(mnist / "test.npz", image=test["image"][:500], label=test["label"][:500])
    # 6000 images: 1200 held out, so a 0.001 drop rate still rejects one of them
    train_magnet.main(
        ["--epochs", "1", "--limit", "6000", "--no-progress", "--checkpoint-dir", str(folder)]
        + ["--data-dir", str(tmp_path / "data")]
    )
    assert "clean test rejected" in capsys.readouterr().out
    report = json.loads((folder / magnet.DETECTORS_FILE).read_text())
    assert report["validation_images"] == 1200 and "command" in report
    assert report["test"]["images"] == 500
    assert {d["name"] for d in report["detectors"]} == {"I-L2", "II-L1", "JSD-T10", "JSD-T40"}
    loaded = load_magnet("mnist", folder=str(folder))
    assert sorted(dict(loaded.configs)) == ["I", "II"] and loaded.reformer == "I"
    for d in report["detectors"]:
        assert float(loaded.thresholds[d["name"]]) == pytest.approx(d["threshold"])


def test_batched_rejections_are_the_outcomes_rejections():
    m = tiny_magnet()
    x = np.asarray(jax.random.uniform(jax.random.key(6), (40, 8, 8, 1)))
    calibrated = magnet.calibrate(m, toy_logits, x, batch_size=3)
    rejected = magnet.rejections(calibrated, toy_logits, x, batch_size=3)
    assert rejected.any() and not rejected.all()  # calibrated on x: some, not all
    np.testing.assert_array_equal(
        rejected,
        magnet.outcomes(calibrated, toy_logits, x, np.zeros(40, np.int32), 3)["rejected"],
    )


def test_a_rerun_calibration_with_the_same_thresholds_keeps_the_file(tmp_path, capsys):
    """train.magnet on a finished, committed MagNet rewrites detectors.json only when
    its numbers change (a rerun's provenance alone leaves it byte-identical)."""
    spec = magnet.DetectorSpec(name="I-L1", autoencoder="I", kind="L1", drop_rate=0.001)
    params = magnet.MagNetParams({}, {"I-L1": jnp.float32(0.25)}, (), (spec,))
    report = {"dataset": "mnist", "test": {"rejected_percent": 0.1}, "command": "first"}
    path = magnet.save_calibration(str(tmp_path), params, report)
    before = pathlib.Path(path).read_bytes()
    magnet.save_calibration(str(tmp_path), params, {**report, "command": "rerun"})
    assert pathlib.Path(path).read_bytes() == before
    assert "kept as committed" in capsys.readouterr().out
    moved = params.replace(thresholds={"I-L1": jnp.float32(0.5)})
    magnet.save_calibration(str(tmp_path), moved, {**report, "command": "rerun"})
    saved = json.loads(pathlib.Path(path).read_text())
    assert saved["detectors"][0]["threshold"] == 0.5 and saved["command"] == "rerun"
