"""Bad input to the public API: a ValueError / TypeError naming the argument, never a
hang, a late crash or a silently wrong answer (the reliability issue's classes)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from remix_jax import checkpoints
from remix_jax.attacks import cw_l2, ead


def linear_logits(x):
    w = jnp.linspace(-1.0, 1.0, x[0].size * 3).reshape(-1, 3)
    return x.reshape(x.shape[0], -1) @ w


X = jnp.full((2, 4, 4, 1), 0.5)
Y = jnp.array([0, 1])


@pytest.mark.parametrize("attack", [cw_l2, ead])
def test_attacks_name_empty_batches_flat_logits_and_absurd_budgets(attack):
    with pytest.raises(ValueError, match="empty batch"):
        attack(linear_logits, X[:0], Y[:0], max_iterations=5)
    with pytest.raises(ValueError, match=r"logits_fn must return logits of shape \(B, "):
        attack(lambda x: linear_logits(x)[:, 0], X, Y, max_iterations=5)
    with pytest.raises(ValueError, match="max_iterations must be"):
        attack(linear_logits, X, Y, max_iterations=10**9)


@pytest.mark.parametrize(
    "text, match", [("{not json", "not valid JSON"), ("[1, 2]", "JSON object")]
)
def test_a_malformed_meta_json_is_named(tmp_path, text, match):
    (tmp_path / checkpoints.META_FILE).write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        checkpoints.read_metadata(str(tmp_path))
    assert str(tmp_path) in str(info.value)
    (tmp_path / checkpoints.META_FILE).write_text(json.dumps({"ok": 1}))
    assert checkpoints.read_metadata(str(tmp_path)) == {"ok": 1}


def test_finite_checks_catch_nan_wherever_it_sits():
    from remix_jax import mask_inpaint

    rng = np.random.default_rng(0)
    for _ in range(5):
        x = rng.uniform(size=(2, 6, 6, 1)).astype(np.float32)
        x[tuple(rng.integers(0, s) for s in x.shape)] = np.nan
        with pytest.raises(ValueError, match="NaN"):
            mask_inpaint(lambda xm, m: xm, jax.random.key(0), x, 2)


def test_impossible_mask_counts_fail_before_any_work(data_dir, monkeypatch, capsys, tmp_path):
    import time

    from eval import clean
    from train import inpainter

    monkeypatch.setenv("REMIX_JAX_CPU_FLAGS", "0")  # the backend already runs here
    started = time.time()
    with pytest.raises(SystemExit) as info:
        clean.main(["--num-masks", "100000", "--data-dir", data_dir, "--limit", "10"])
    assert "--num-masks must be <= 784" in str(info.value)
    with pytest.raises(SystemExit):
        inpainter.main(
            [
                "--n-masks",
                "100000",
                "--data-dir",
                data_dir,
                "--checkpoint-dir",
                str(tmp_path / "never"),
            ]
        )
    assert "--n-masks must be in [2, 784]" in capsys.readouterr().err
    assert time.time() - started < 60


def test_the_defense_protocol_scores_rejections_by_input_kind():
    from remix_jax.evaluation import Defense

    labels = np.array([0, 1, 2, 0])
    predicted = np.array([0, 0, 2, 1])  # right on images 0 and 2
    rejected = np.array([True, True, False, False])
    plain = Defense(True, lambda key, x: predicted)
    detecting = Defense(False, lambda key, x: predicted, lambda key, x: rejected)
    x = np.zeros((4, 2, 2, 1), np.float32)
    assert plain.correct(None, x, labels, True).tolist() == [True, False, True, False]
    # adversarial: rejected or right; clean: not rejected and right
    assert detecting.correct(None, x, labels, True).tolist() == [True, True, True, False]
    assert detecting.correct(None, x, labels, False).tolist() == [False, False, True, False]
    assert len(plain.keys(5)) == 5 and len(detecting.keys(5)) == 1
    assert len(plain.correct_over_keys(x, labels, False, 3)) == 3


@pytest.mark.parametrize(
    "module, args",
    [
        ("eval.sweep", ["--attack", "cw"]),
        ("eval.clean", []),
        ("eval.detector", ["--attack", "cw"]),
        ("eval.adaptive", ["--attack", "pgd"]),
    ],
)
def test_an_unwritable_output_fails_before_any_work(module, args):
    import importlib

    with pytest.raises(SystemExit) as info:
        importlib.import_module(module).main([*args, "--out", "/proc/no/such/out"])
    assert "cannot create the output folder" in str(info.value)


def test_batched_prediction_compiles_once_per_classifier_and_shape():
    from remix_jax import evaluation

    traces = []

    def logits_fn(x):
        traces.append(x.shape)  # runs only while tracing
        return linear_logits(x)

    x = np.full((5, 4, 4, 1), 0.5, np.float32)
    for _ in range(3):
        evaluation.predict(logits_fn, x, batch_size=2)
    assert sorted(set(traces)) == [(1, 4, 4, 1), (2, 4, 4, 1)] and len(traces) == 2
