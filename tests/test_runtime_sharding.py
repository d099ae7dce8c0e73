"""Runtime flags and multi-device sharding, each in a fresh process (XLA reads flags once)."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from remix_jax import runtime

PROGRAM = textwrap.dedent("""
    import json, sys
    from remix_jax import runtime
    runtime.configure(cpu_conv_flag={flag}, host_devices={devices})
    import jax, jax.numpy as jnp, numpy as np
    from remix_jax import RemixParams, defend, sharding
    from remix_jax.models import AutoencoderConfig, MNISTClassifier, init_autoencoder
    cfg = AutoencoderConfig(channels=1, features=(8, 8), strides=(1, 2), mask_channel=True)
    params = RemixParams(inpainter=init_autoencoder(jax.random.key(0), cfg, (28, 28)),
                         inpainter_config=cfg, n_masks=2)
    x = jax.random.uniform(jax.random.key(1), (4, 28, 28, 1))
    clf = MNISTClassifier()
    clf_params = clf.init(jax.random.key(2), x)["params"]
    if {devices} > 1:
        x = sharding.shard_batch(x)
        params = sharding.replicate(params)
        clf_params = sharding.replicate(clf_params)
    out = jax.jit(defend)(params, jax.random.key(3), x)
    chunked = jax.jit(lambda p, k, v: defend(p, k, v, chunk=1))(params, jax.random.key(3), x)
    logits = jax.jit(lambda p, x: clf.apply({{"params": p}}, x))(clf_params, out)
    # the attack's host loop on a sharded batch: 16 images, so that the early abort
    # can trigger a compaction (a gather of the active examples across devices)
    from remix_jax.attacks import cw_l2
    xa = jax.random.uniform(jax.random.key(4), (16, 28, 28, 1))
    ya = jnp.arange(16) % 10
    if {devices} > 1:
        xa, ya = sharding.shard_batch((xa, ya))
    attacked = cw_l2(lambda v: clf.apply({{"params": clf_params}}, v), xa, ya,
                     binary_search_steps=2, max_iterations=30, initial_const=10.0,
                     loop="host")
    print(json.dumps({{"devices": len(jax.devices()),
                      "shards": len(out.sharding.device_set),
                      "attack_shards": len(xa.sharding.device_set),
                      "defended": np.asarray(out).tolist(),
                      "chunked": np.asarray(chunked).tolist(),
                      "logits": np.asarray(logits).tolist(),
                      "adversarial": np.asarray(attacked.adversarial).tolist(),
                      "success": np.asarray(attacked.success).tolist()}}))
""")


def run(flag: bool, devices: int) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["REMIX_JAX_CPU_FLAGS"] = "1"
    env["JAX_PLATFORMS"] = "cpu"
    code = PROGRAM.format(flag=flag, devices=devices)
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def single_plain():
    return run(flag=False, devices=1)


def test_cpu_conv_flag_does_not_change_results(single_plain):
    flagged = run(flag=True, devices=1)
    np.testing.assert_allclose(flagged["defended"], single_plain["defended"], atol=1e-5)
    np.testing.assert_allclose(flagged["logits"], single_plain["logits"], atol=1e-4)


def test_two_device_sharded_defend_matches_single_device(single_plain):
    sharded = run(flag=True, devices=2)
    assert sharded["devices"] == 2 and sharded["shards"] == 2
    np.testing.assert_allclose(sharded["defended"], single_plain["defended"], atol=1e-5)
    np.testing.assert_allclose(sharded["chunked"], single_plain["defended"], atol=1e-5)
    np.testing.assert_allclose(sharded["logits"], single_plain["logits"], atol=1e-4)
    # cw_l2 on a batch split over the two devices: the same examples as on one
    assert sharded["attack_shards"] == 2
    assert any(sharded["success"]) and sharded["success"] == single_plain["success"]
    np.testing.assert_allclose(sharded["adversarial"], single_plain["adversarial"], atol=1e-4)


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


def test_shard_batch_rejects_indivisible_batches():
    from remix_jax import sharding

    padded, size = sharding.pad_batch(np.arange(5.0)[:, None], 4)
    assert padded.shape == (8, 1) and size == 5 and padded[-1, 0] == 4.0
    # this process has one device: the refusal needs two, in a fresh process
    code = textwrap.dedent("""
        from remix_jax import runtime
        runtime.configure(host_devices=2)
        import numpy as np
        from remix_jax import sharding
        try:
            sharding.shard_batch(np.zeros((3, 2)))
        except ValueError as e:
            print("refused:", e)
    """)
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "refused:" in proc.stdout and "divisible" in proc.stdout
