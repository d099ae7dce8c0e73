import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from remix_jax import checkpoints


def tree():
    return {
        "conv": {"kernel": jnp.arange(6.0).reshape(2, 3), "bias": jnp.ones(3)},
        "dense": {"kernel": jnp.full((3, 1), 0.5)},
    }


def test_round_trip_is_exact_with_optimizer_state(tmp_path):
    params = tree()
    opt = optax.adam(1e-3)
    state = opt.init(params)
    with jax.numpy_dtype_promotion("standard"):  # optax's bias correction mixes dtypes
        state = opt.update(params, state, params)[1]  # non-trivial moments and count
    checkpoints.save(str(tmp_path), 7, params, state=state, metadata={"acc": 0.5})
    target_params = jax.tree.map(jnp.zeros_like, params)
    restored = checkpoints.restore(str(tmp_path), target_params, state_target=opt.init(params))
    assert restored.step == 7
    jax.tree.map(np.testing.assert_array_equal, restored.params, params)
    jax.tree.map(np.testing.assert_array_equal, restored.state, state)
    # the optimizer state keeps its types (not lists), so optax can keep using it
    assert type(restored.state) is type(state)
    assert checkpoints.read_metadata(str(tmp_path)) == {"acc": 0.5}


def test_restore_against_abstract_target_and_latest_step(tmp_path):
    checkpoints.save(str(tmp_path), 1, tree())
    checkpoints.save(str(tmp_path), 2, jax.tree.map(lambda a: a + 1, tree()))
    assert checkpoints.latest_step(str(tmp_path)) == 2
    abstract = jax.eval_shape(tree)
    restored = checkpoints.restore(str(tmp_path), abstract)
    np.testing.assert_array_equal(restored.params["conv"]["bias"], 2 * np.ones(3))


def test_saving_the_same_step_twice_replaces_it(tmp_path):
    checkpoints.save(str(tmp_path), 3, tree())
    checkpoints.save(str(tmp_path), 3, jax.tree.map(jnp.zeros_like, tree()))
    restored = checkpoints.restore(str(tmp_path), tree())
    assert float(restored.params["dense"]["kernel"].sum()) == 0.0


def test_wrong_structure_gives_a_clear_error(tmp_path):
    checkpoints.save(str(tmp_path), 0, tree())
    wrong = {"conv": {"kernel": jnp.zeros((2, 3))}, "other": jnp.zeros(2)}
    with pytest.raises(ValueError, match="does not match"):
        checkpoints.restore(str(tmp_path), wrong)
    wrong_shape = jax.tree.map(lambda a: jnp.zeros((*a.shape, 2)), tree())
    with pytest.raises(ValueError, match="does not match"):
        checkpoints.restore(str(tmp_path), wrong_shape)


def test_missing_and_corrupt_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        checkpoints.restore(str(tmp_path / "nowhere"), tree())
    checkpoints.save(str(tmp_path), 0, tree())
    for root, _, files in os.walk(tmp_path / "0" / "params"):
        for name in files:
            with open(os.path.join(root, name), "wb") as f:
                f.write(b"garbage")
    with pytest.raises(checkpoints.UnreadableCheckpoint, match="corrupt") as info:
        checkpoints.restore(str(tmp_path), tree())
    assert isinstance(info.value, ValueError)
    # cut short instead: TensorStore's error then carries a multi-line spec dump
    big = {"kernel": jnp.arange(9216.0).reshape(3, 3, 32, 32)}  # stored in data files
    checkpoints.save(str(tmp_path / "cut"), 0, big)
    for root, _, files in os.walk(tmp_path / "cut" / "0" / "params" / "ocdbt.process_0" / "d"):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                content = f.read()
            with open(path, "wb") as f:
                f.write(content[: len(content) // 3])
    with pytest.raises(checkpoints.UnreadableCheckpoint, match="corrupt") as info:
        checkpoints.restore(str(tmp_path / "cut"), big)
    assert "\n" not in str(info.value)  # one line, as the CLIs print it
    with pytest.raises(FileNotFoundError, match="meta.json"):
        checkpoints.read_metadata(str(tmp_path / "nowhere"))


def test_metadata_is_written_atomically(tmp_path):
    checkpoints.write_metadata(str(tmp_path), {"a": [1, 2]})
    assert json.loads((tmp_path / "meta.json").read_text()) == {"a": [1, 2]}
    assert not (tmp_path / "meta.json.tmp").exists()


def test_latest_step_takes_the_listing_again_when_a_pruned_step_vanishes(tmp_path, monkeypatch):
    """A run that prunes its old step between orbax's listing and its reading of that
    step's timestamp made a concurrent latest_step raise FileNotFoundError."""
    checkpoints.save(str(tmp_path), 3, {"w": np.ones(2, np.float32)})
    real, calls = checkpoints._manager, []

    def racing(directory, **kwargs):
        calls.append(directory)
        if len(calls) == 1:
            raise FileNotFoundError(f"{directory}/2")  # the pruned step
        return real(directory, **kwargs)

    monkeypatch.setattr(checkpoints, "_manager", racing)
    assert checkpoints.latest_step(str(tmp_path)) == 3 and len(calls) == 2
