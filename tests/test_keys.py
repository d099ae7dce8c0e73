"""The key convention (remix_jax.keys): one seed folded in by purpose, a key per image."""

import jax
import numpy as np
import pytest
from test_defense import CIFAR, images, tiny_params

from remix_jax import defend, evaluation, keys


def key_bits(key):
    return np.asarray(jax.random.key_data(key))


def test_purposes_and_seeds_draw_distinct_keys():
    drawn = [keys.purpose_key(seed, p) for seed in (0, 1) for p in keys.PURPOSES]
    drawn += keys.evaluation_keys(0, 3) + [keys.attack_key(0, "abcdef0123")]
    bits = {key_bits(k).tobytes() for k in drawn}
    assert len(bits) == len(drawn)
    # the same seed and purpose give the same key: a run is reproducible
    np.testing.assert_array_equal(
        key_bits(keys.evaluation_keys(7, 2)[1]), key_bits(keys.evaluation_keys(7, 5)[1])
    )


def test_bad_purpose_seed_and_count_are_refused():
    with pytest.raises(ValueError, match="purpose must be one of"):
        keys.purpose_key(0, "targets")
    with pytest.raises(ValueError, match="seed must be >= 0"):
        keys.purpose_key(-1, "evaluation")
    with pytest.raises(ValueError, match="num_keys must be >= 1"):
        keys.evaluation_keys(0, 0)


def test_image_keys_depend_on_the_index_only():
    key = jax.random.key(3)
    whole = key_bits(keys.image_keys(key, 0, 6))  # raw bits: sliced twice below
    part = keys.image_keys(key, 2, 3)
    np.testing.assert_array_equal(whole[2:5], key_bits(part))
    np.testing.assert_array_equal(whole[4], key_bits(jax.random.fold_in(jax.random.key(3), 4)))


def test_defend_with_a_key_per_image_does_not_depend_on_the_batch():
    params = tiny_params(*CIFAR, n_masks=3)
    x = images(*CIFAR, batch=5)
    key = jax.random.key(0)
    whole = defend(params, keys.image_keys(key, 0, 5), x, chunk=None)
    for start, stop in ((0, 2), (2, 5)):
        part = defend(params, keys.image_keys(key, start, stop - start), x[start:stop], chunk=2)
        np.testing.assert_allclose(part, whole[start:stop], atol=1e-6)
    # and the images' keys matter: another key gives other masks
    other = defend(params, keys.image_keys(jax.random.key(1), 0, 5), x, chunk=None)
    assert np.abs(np.asarray(other) - np.asarray(whole)).max() > 1e-3


def test_defend_refuses_a_wrong_number_of_image_keys():
    params = tiny_params(*CIFAR)
    with pytest.raises(ValueError, match=r"key must be a single key or \(3,\) keys, one per image"):
        defend(params, keys.image_keys(jax.random.key(0), 0, 2), images(*CIFAR, batch=3))


def test_remix_predict_does_not_depend_on_the_batch_size():
    params = tiny_params(*CIFAR, n_masks=3)
    x = np.asarray(images(*CIFAR, batch=7, seed=2))
    w = jax.random.normal(jax.random.key(5), (32 * 32 * 3, 10))

    def logits_fn(x):  # margins far from ties, so rounding cannot flip a label
        return 100.0 * x.reshape(len(x), -1) @ w

    labels = [
        evaluation.remix_predict(logits_fn, params, jax.random.key(9), x, batch_size=b)
        for b in (2, 7)
    ]
    np.testing.assert_array_equal(labels[0], labels[1])


def test_a_defense_is_scored_under_its_seeds_evaluation_keys():
    randomized = evaluation.Defense(True, lambda key, x: np.zeros(len(x), np.int32))
    assert [key_bits(k).tobytes() for k in randomized.keys(2, seed=4)] == [
        key_bits(k).tobytes() for k in keys.evaluation_keys(4, 2)
    ]
    assert len(evaluation.Defense(False, randomized.predict).keys(5, seed=4)) == 1
