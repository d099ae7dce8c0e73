"""The paths that run once per batch and per key compile once: a classifier handed to
the scoring is traced once per batch shape (a full batch and the last, shorter one),
never again for another batch, key or defense call."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
from test_defense import MNIST, images, tiny_params

from remix_jax import evaluation

WEIGHTS = jax.random.normal(jax.random.key(7), (28 * 28, 10))


def linear(x):
    return x.reshape(x.shape[0], -1) @ WEIGHTS


def test_predict_traces_the_classifier_once_per_batch_shape():
    counted = chex.assert_max_traces(linear, n=2)  # 4 full batches of 2, then 1 image
    x = np.asarray(images(*MNIST, batch=9))
    labels = evaluation.predict(counted, x, batch_size=2)
    np.testing.assert_array_equal(labels, np.argmax(linear(jnp.asarray(x)), -1))
    evaluation.predict(counted, x[::-1].copy(), batch_size=2)  # new data: no new trace


def test_scoring_remix_over_keys_and_batches_traces_the_classifier_once_per_shape():
    counted = chex.assert_max_traces(linear, n=2)
    params = tiny_params(*MNIST, reformer=False)
    x = np.asarray(images(*MNIST, batch=5))
    labels = np.zeros(5, np.int32)
    defense = evaluation.Defense(
        True, lambda key, z: evaluation.remix_predict(counted, params, key, z, batch_size=2)
    )
    per_key = defense.correct_over_keys(x, labels, adversarial=False, num_keys=3)
    assert len(per_key) == 3 and all(r.shape == (5,) for r in per_key)


def test_attacks_trace_the_classifier_for_the_first_batch_only():
    """An attack run batch after batch with the same classifier (as every CLI does)
    compiles for the first batch; the next batch of the same shape reuses it all (EAD
    runs on cw_l2's search driver)."""
    from remix_jax.attacks import apgd, cw_l2, pgd

    traces = []

    def counted(x):
        traces.append(1)  # runs only while JAX traces
        return linear(x)

    rng = np.random.default_rng(0)
    batches = [jnp.asarray(rng.uniform(size=(4, 28, 28, 1)), jnp.float32) for _ in range(2)]
    search = dict(binary_search_steps=2, max_iterations=6, loop="device")
    budget = dict(epsilon=0.1, steps=3)
    attacks = {
        "cw_l2": lambda x, y, k: cw_l2(counted, x, y, **search),
        "pgd": lambda x, y, k: pgd(counted, x, y, key=k, **budget),
        "apgd": lambda x, y, k: apgd(counted, x, y, key=k, **budget),
    }
    for name, attack in attacks.items():
        counts = []
        for s, x in enumerate(batches):
            labels = jnp.argmax(linear(x), -1)
            jax.block_until_ready(attack(x, labels, jax.random.key(s)))
            counts.append(len(traces))
        assert counts[0] > 0 and counts[1] == counts[0], (name, counts)
        traces.clear()
