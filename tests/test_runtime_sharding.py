"""Runtime flags and multi-device sharding.

XLA reads its flags once per process: one fresh process (two host devices, the CPU
convolution flag the other way round from this process) computes everything that
needs them, while this process (one device) computes the reference. The fresh process
compiles with the flags users get, this one with the suite's faster-compiling ones
(conftest.TEST_XLA_FLAGS): the comparisons also check that those change no result.
"""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from remix_jax import runtime

TESTS = os.path.dirname(os.path.abspath(__file__))


def compute(shard: bool) -> dict:
    """defend, its chunked form, a classifier behind it, REMIX's batched prediction and
    a host-loop cw_l2, on one device or with the batches split over all devices
    (parameters replicated).

    Random bits are laid out as before JAX 0.5 in both processes (conftest's
    fast_compiles: the initialisations compile 3-5x faster; the draws still do not
    depend on the placement, which is what is compared).
    """
    import jax

    with jax.threefry_partitionable(False):
        return _compute(shard)


def _compute(shard: bool) -> dict:
    import jax
    import jax.numpy as jnp

    from remix_jax import RemixParams, defend, evaluation, sharding
    from remix_jax.attacks import cw_l2
    from remix_jax.models import AutoencoderConfig, MNISTClassifier, init_autoencoder

    cfg = AutoencoderConfig(channels=1, features=(8, 8), strides=(1, 2), mask_channel=True)
    params = RemixParams(
        inpainter=init_autoencoder(jax.random.key(0), cfg, (28, 28)),
        inpainter_config=cfg,
        n_masks=2,
    )
    x = jax.random.uniform(jax.random.key(1), (4, 28, 28, 1))
    clf = MNISTClassifier()
    clf_params = jax.jit(clf.init)(jax.random.key(2), x)["params"]
    if shard:
        x = sharding.shard_batch(x)
        params = sharding.replicate(params)
        clf_params = sharding.replicate(clf_params)
    out = jax.jit(defend)(params, jax.random.key(3), x)
    chunked = jax.jit(lambda p, k, v: defend(p, k, v, chunk=1))(params, jax.random.key(3), x)
    logits = jax.jit(lambda p, x: clf.apply({"params": p}, x))(clf_params, out)
    # the evaluation's batched prediction places each batch itself (split over the
    # devices when there are several, padded: 3 images on 2 devices)
    x5 = np.asarray(jax.random.uniform(jax.random.key(8), (5, 28, 28, 1)))
    remix_labels = evaluation.remix_predict(
        lambda v: 100.0 * clf.apply({"params": clf_params}, v), params, jax.random.key(9), x5,
        batch_size=3,
    )  # fmt: skip
    # the detector's scores and MagNet's (calibration, outcomes, rejections) batch the
    # same way: 5 images in batches of 3, each padded and split when there are devices
    from remix_jax import detector as detector_lib
    from remix_jax import magnet as magnet_lib

    clf_logits = lambda v: 100.0 * clf.apply({"params": clf_params}, v)  # noqa: E731
    scores = detector_lib.batched_scores(params, clf_logits, jax.random.key(10), x5, batch_size=3)
    from test_magnet import tiny_magnet

    x8 = np.asarray(jax.random.uniform(jax.random.key(11), (5, 8, 8, 1)))
    toy = lambda v: v.reshape(v.shape[0], -1)[:, :10] * 40.0  # noqa: E731
    calibrated = magnet_lib.calibrate(tiny_magnet(), toy, np.concatenate([x8] * 2), batch_size=3)
    outcomes = magnet_lib.outcomes(calibrated, toy, x8, np.arange(5), batch_size=3)
    # what map_batches hands its function: each batch on every device there is
    shards = []

    def record(xb):
        shards.append(len(xb.sharding.device_set) if hasattr(xb, "sharding") else 1)
        return xb[:, 0, 0, 0]

    sharding.map_batches(record, (x5,), 3)
    result = {
        "map_batches_shards": shards,
        "detector": {name: scores[name].tolist() for name in detector_lib.SCORES},
        "magnet_thresholds": {k: float(v) for k, v in calibrated.thresholds.items()},
        "magnet_rejected_by": {k: v.tolist() for k, v in outcomes["rejected_by"].items()},
        "magnet_reformed_correct": outcomes["reformed_correct"].tolist(),
        "magnet_rejections": magnet_lib.rejections(calibrated, toy, x8, batch_size=3).tolist(),
        "shards": len(out.sharding.device_set),
        "defended": np.asarray(out).tolist(),
        "chunked": np.asarray(chunked).tolist(),
        "logits": np.asarray(logits).tolist(),
        "remix_labels": remix_labels.tolist(),
    }
    # the attack's host loop on a sharded batch: 16 images, so that the early abort
    # can trigger a compaction (a gather of the active examples across devices); a
    # linear classifier, as the attack's sharding does not depend on the model's layers
    xa = jax.random.uniform(jax.random.key(4), (16, 28, 28, 1))
    ya = jnp.arange(16) % 10
    weights = 0.05 * jax.random.normal(jax.random.key(5), (28 * 28, 10))
    if shard:
        xa, ya = sharding.shard_batch((xa, ya))
        weights = sharding.replicate(weights)
    attacked = cw_l2(
        lambda v: v.reshape(v.shape[0], -1) @ weights,
        xa,
        ya,
        binary_search_steps=2,
        max_iterations=30,
        initial_const=10.0,
        loop="host",
    )
    # PGD with EOT on a randomized model (eval.adaptive's and eval.robustness's crafting
    # splits their batches the same way): the same examples on one device or two
    from remix_jax.attacks import pgd

    def noisy(v, key):  # the logits of a noisy copy: a model that draws from its key
        return (v + 0.05 * jax.random.normal(key, v.shape)).reshape(v.shape[0], -1) @ weights

    eot = pgd(noisy, xa, ya, key=jax.random.key(7), epsilon=0.1, steps=3, stochastic=True)
    trained = train_tiny()
    return {
        **result,
        "attack_shards": len(xa.sharding.device_set),
        "adversarial": np.asarray(attacked.adversarial).tolist(),
        "success": np.asarray(attacked.success).tolist(),
        "eot_adversarial": np.asarray(eot.adversarial).tolist(),
        "eot_linf": float(jnp.max(jnp.abs(eot.adversarial - xa))),
        "trained_devices": len(trained.sharding.device_set),
        "trained": np.asarray(trained).tolist(),
    }


def train_tiny():
    """training.fit of a linear 3-class model on 8x8 toy images, 2 epochs of 4 steps:
    the trained kernel (on every device fit trained on)."""
    import tempfile

    import flax.linen as nn
    import jax
    import optax

    from remix_jax import objectives, training

    class Linear(nn.Module):
        @nn.compact
        def __call__(self, x, train=False):
            return nn.Dense(3)(x.reshape(x.shape[0], -1))

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 40)
    images = (rng.uniform(0, 0.3, (40, 8, 8, 1)) * 255).astype(np.uint8)
    images[np.arange(40), labels, :, 0] = 255  # the class is the bright row
    task = objectives.classifier_task(Linear(), (8, 8, 1))
    config = training.TrainConfig(epochs=2, batch_size=8, save_every=100)
    with tempfile.TemporaryDirectory() as folder:
        params, _ = training.fit(
            jax.random.key(6), task, optax.sgd(0.1), (images[:32], labels[:32]),
            (images[32:], labels[32:]), config, folder, {}, progress=False,
        )  # fmt: skip
    return params["Dense_0"]["kernel"]


PROGRAM = textwrap.dedent("""
    import json, os, sys
    from remix_jax import runtime
    runtime.configure(cpu_conv_flag={flag}, host_devices=2)
    import jax, numpy as np
    from remix_jax import sharding
    sys.path.insert(0, {tests!r})
    from test_runtime_sharding import compute
    try:
        sharding.shard_batch(np.zeros((3, 2)))
        refused = None
    except ValueError as e:
        refused = str(e)
    placed, size = sharding.place_batch(np.zeros((3, 2)))
    split, kept = sharding.split_if_divisible((np.zeros((4, 2)), np.zeros(4))), np.zeros(3)
    print(json.dumps({{"xla_flags": os.environ["XLA_FLAGS"],
                      "placed": [len(placed.sharding.device_set), placed.shape[0], size],
                      "split": [len(a.sharding.device_set) for a in split],
                      "kept": sharding.split_if_divisible(kept) is kept,
                      "devices": len(jax.devices()),
                      "refused": refused,
                      "sharded": compute(shard=True)}}))
""")


def flagged(xla_flags: str) -> bool:
    return runtime.CPU_CONV_FLAG in xla_flags.split()


@pytest.fixture(scope="module")
def runs():
    """(this process's one-device reference, what the fresh process computed).

    The fresh process runs with the CPU convolution flag if this one runs without, and
    computes sharded over two devices. Both processes work at the same time (XLA
    compiles on one core).
    """
    import jax

    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["REMIX_JAX_CPU_FLAGS"] = "1"
    env["JAX_PLATFORMS"] = "cpu"
    flag = not flagged(os.environ.get("XLA_FLAGS", ""))
    with subprocess.Popen(
        [sys.executable, "-c", PROGRAM.format(flag=flag, tests=TESTS)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        try:
            with jax.default_device(jax.devices("cpu")[0]):  # as the fresh process
                here = compute(shard=False)
            stdout, stderr = proc.communicate(timeout=300)
        finally:
            proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    return here, json.loads(stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def plain(runs):
    return runs[0]


@pytest.fixture(scope="module")
def fresh(runs):
    return runs[1]


def test_cpu_conv_flag_does_not_change_results(fresh, plain):
    if (0, 10) <= runtime._jaxlib_version() < (0, 12):  # where configure adds the flag
        assert flagged(fresh["xla_flags"]) != flagged(os.environ.get("XLA_FLAGS", ""))
    # and the suite's compile flags, here only: the fresh process compiled as users do
    from conftest import TEST_XLA_FLAGS

    for flag in TEST_XLA_FLAGS.split():
        assert flag in os.environ["XLA_FLAGS"].split() and flag not in fresh["xla_flags"]
    # the fresh process computed with the flag the other way round (and on two devices:
    # neither may change a result, so one comparison checks both)
    other = fresh["sharded"]
    np.testing.assert_allclose(other["defended"], plain["defended"], atol=1e-5)
    np.testing.assert_allclose(other["logits"], plain["logits"], atol=1e-4)


def test_two_device_sharded_defend_matches_single_device(fresh, plain):
    sharded = fresh["sharded"]
    assert fresh["devices"] == 2 and sharded["shards"] == 2
    np.testing.assert_allclose(sharded["defended"], plain["defended"], atol=1e-5)
    np.testing.assert_allclose(sharded["chunked"], plain["defended"], atol=1e-5)
    np.testing.assert_allclose(sharded["logits"], plain["logits"], atol=1e-4)
    assert fresh["placed"] == [2, 4, 3]  # 3 images padded to 4, split over 2 devices
    assert fresh["split"] == [2, 2] and fresh["kept"]  # an attack's batch: only if divisible
    assert sharded["remix_labels"] == plain["remix_labels"]
    # the detector's and MagNet's batches, padded and split: the same scores and verdicts
    assert sharded["map_batches_shards"] == [2, 2] and plain["map_batches_shards"] == [1, 1]
    for name, values in plain["detector"].items():
        np.testing.assert_allclose(sharded["detector"][name], values, rtol=1e-4, atol=1e-6)
    for name, value in plain["magnet_thresholds"].items():
        np.testing.assert_allclose(sharded["magnet_thresholds"][name], value, rtol=1e-5)
    for name in ("magnet_rejected_by", "magnet_reformed_correct", "magnet_rejections"):
        assert sharded[name] == plain[name], name
    assert any(plain["magnet_rejections"]) and not all(plain["magnet_rejections"])
    assert plain["magnet_rejections"] == list(np.logical_or.reduce(
        list(plain["magnet_rejected_by"].values())))  # fmt: skip
    # cw_l2 on a batch split over the two devices: the same examples as on one
    assert sharded["attack_shards"] == 2
    assert any(sharded["success"]) and sharded["success"] == plain["success"]
    np.testing.assert_allclose(sharded["adversarial"], plain["adversarial"], atol=1e-4)
    # PGD with EOT on the split batch: the same examples, moved within the ball
    assert 0 < plain["eot_linf"] <= 0.1 + 1e-6
    np.testing.assert_allclose(sharded["eot_adversarial"], plain["eot_adversarial"], atol=1e-5)
    # training.fit splits each batch over both devices: the same weights as on one
    assert sharded["trained_devices"] == 2 and plain["trained_devices"] == 1
    assert np.abs(plain["trained"]).max() > 0.01  # it trained
    np.testing.assert_allclose(sharded["trained"], plain["trained"], atol=1e-5)


def test_configure_refuses_after_the_backend_started(monkeypatch):
    import jax.numpy as jnp

    jnp.ones(1).block_until_ready()  # make sure this test process has a backend
    with pytest.raises(RuntimeError, match="before the first JAX computation"):
        runtime.configure(host_devices=7)


def test_configure_again_with_the_same_settings_is_a_no_op(monkeypatch):
    import jax.numpy as jnp

    jnp.ones(1).block_until_ready()
    # as if this process had been configured before its backend started
    monkeypatch.setenv("XLA_FLAGS", f"--a=1 {runtime.CPU_CONV_FLAG}")
    assert runtime.configure() == f"--a=1 {runtime.CPU_CONV_FLAG}"


def test_flag_merging_keeps_other_flags():
    merged = runtime._add_flag(
        "--a=1 --xla_cpu_experimental_ynn_fusion_type=x", runtime.CPU_CONV_FLAG
    )
    assert merged.split() == ["--a=1", runtime.CPU_CONV_FLAG]


def test_shard_batch_rejects_indivisible_batches(fresh):
    from remix_jax import sharding

    padded, size = sharding.pad_batch(np.arange(5.0)[:, None], 4)
    assert padded.shape == (8, 1) and size == 5 and padded[-1, 0] == 4.0
    # this process has one device: the refusal (3 rows, 2 devices) ran in the fresh one
    refused = fresh["refused"]
    assert refused is not None and "divisible" in refused
