"""The adversarial-example cache: resume, reuse, prefix split, refusal of other settings."""

import json
import os

import numpy as np
import pytest

from remix_jax import adversarial_cache
from remix_jax.adversarial_cache import AdversarialCache, SettingsMismatch

SETTINGS = {"binary_search_steps": 2, "max_iterations": 5, "targeted": False}


class FakeAttack:
    """Deterministic 'examples' of image i: value i; records which images it crafted."""

    def __init__(self, indices, fail_after=None):
        self.indices, self.calls, self.fail_after = np.asarray(indices), [], fail_after

    def __call__(self, sl):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise KeyboardInterrupt  # a kill between batches
        idx = self.indices[sl]
        self.calls.append((sl.start, len(idx)))
        return {
            "adversarial": np.repeat(idx[:, None, None, None], 2, 1).astype(np.float32),
            "success": idx % 2 == 0,
            "l1": idx * 1.0,
            "l2": idx * 2.0,
            "linf": idx * 3.0,
        }


def make(folder, indices, settings=SETTINGS):
    return AdversarialCache(str(folder), tuple(indices), dict(settings), log=lambda s: None)


def test_crafts_once_then_reads_and_resumes_after_a_kill(tmp_path):
    indices = list(range(10, 20))
    killed = FakeAttack(indices, fail_after=2)
    with pytest.raises(KeyboardInterrupt):
        make(tmp_path, indices).craft(5, killed, 3, machine="m")
    assert killed.calls == [(0, 3), (3, 3)]
    resumed = FakeAttack(indices)  # another batch size after the kill: only the rest
    out = make(tmp_path, indices).craft(5, resumed, 4, machine="m")
    assert resumed.calls == [(6, 4)]
    np.testing.assert_array_equal(out["l2"], np.arange(10, 20) * 2.0)
    assert out["part_sizes"].tolist() == [3, 3, 4]
    assert sorted(os.listdir(tmp_path)) == ["kappa_5.npz"]  # parts folded in
    again = FakeAttack(indices)
    np.testing.assert_array_equal(
        make(tmp_path, indices).craft(5, again, 4, machine="m")["l1"], out["l1"]
    )
    assert again.calls == []
    assert list(adversarial_cache.finished(str(tmp_path))) == [5.0]
    t = adversarial_cache.crafting_time(out)
    assert t["images_timed"] == 10 and t["machines"] == ["m"]


def test_a_crafting_killed_after_any_batch_resumes_to_the_same_examples(tmp_path):
    """Killed after each possible batch, then resumed with another batch size: no
    finished batch is crafted again and the result equals an uninterrupted run's."""
    indices = list(range(30, 41))
    straight = make(tmp_path / "straight", indices).craft(0, FakeAttack(indices), 3, machine="m")
    rng = np.random.default_rng(0)
    for batches_done in range(4):  # 11 images in batches of 3: killed after 0..3 batches
        folder = tmp_path / f"killed-after-{batches_done}"
        with pytest.raises(KeyboardInterrupt):
            make(folder, indices).craft(0, FakeAttack(indices, fail_after=batches_done), 3,
                                        machine="m")  # fmt: skip
        resumed = FakeAttack(indices)
        out = make(folder, indices).craft(0, resumed, int(rng.integers(1, 6)), machine="m")
        crafted_again = sum(n for _, n in resumed.calls)
        assert resumed.calls[0][0] == 3 * batches_done  # the chain goes on where it stopped
        assert crafted_again == len(indices) - 3 * batches_done
        for field in adversarial_cache.FIELDS:
            np.testing.assert_array_equal(out[field], straight[field])
        assert sorted(os.listdir(folder)) == ["kappa_0.npz"]


def test_more_images_craft_only_the_new_ones_and_fewer_read_a_prefix(tmp_path):
    first = list(range(6))
    make(tmp_path, first).craft(0, FakeAttack(first), 4, machine="m")
    grown = list(range(9))
    attack = FakeAttack(grown)
    out = make(tmp_path, grown).craft(0, attack, 4, machine="m")
    assert attack.calls == [(6, 3)]  # the 6 cached images are split back into batches
    np.testing.assert_array_equal(out["linf"], np.arange(9) * 3.0)
    fewer = make(tmp_path, list(range(5))).load(0)
    np.testing.assert_array_equal(fewer["l2"], np.arange(5) * 2.0)
    # the larger file is not rewritten when a prefix is read
    assert len(adversarial_cache.read(str(tmp_path / "kappa_0.npz"))[1]["indices"]) == 9


def test_examples_made_with_other_settings_are_never_overwritten(tmp_path):
    indices = list(range(4))
    make(tmp_path, indices).craft(0, FakeAttack(indices), 4, machine="m")
    other = make(tmp_path, indices, {**SETTINGS, "max_iterations": 50})
    with pytest.raises(SettingsMismatch, match="max_iterations"):
        other.craft(0, FakeAttack(indices), 4, machine="m")
    # other images with the same settings are no prefix: crafted again
    shifted = list(range(1, 5))
    attack = FakeAttack(shifted)
    make(tmp_path, shifted).craft(0, attack, 4, machine="m")
    assert attack.calls == [(0, 4)]


def test_target_labels_are_wrong_and_shared():
    labels = np.arange(50) % 10
    targets = adversarial_cache.attack_labels(labels, 10, True)
    assert (targets != labels).all() and targets.max() < 10
    np.testing.assert_array_equal(targets, adversarial_cache.attack_labels(labels, 10, True))
    np.testing.assert_array_equal(adversarial_cache.attack_labels(labels, 10, False), labels)


def test_resume_keeps_untimed_batches_and_skips_parts_off_its_chain_or_of_other_shape(tmp_path):
    """After a kill, only a part that starts where the chain of batches continues and
    holds exactly its images counts; the others are crafted again and then removed."""
    indices = list(range(6))
    full = make(tmp_path, indices).craft(0, FakeAttack(indices), 6, machine="m")
    settings = adversarial_cache.read(str(tmp_path / "kappa_0.npz"))[1]
    os.remove(tmp_path / "kappa_0.npz")

    def plant(start, stop, l2, size=None):
        arrays = {
            k: full[k][start : start + (size or stop - start)] for k in adversarial_cache.FIELDS
        }
        arrays["l2"] = np.full(len(arrays["l2"]), l2, np.float32)
        part_settings = {**settings, "indices": indices[start:stop]}
        np.savez(
            tmp_path / f"kappa_0.part_{start}.npz", settings=json.dumps(part_settings), **arrays
        )

    plant(0, 3, 123.0)  # a finished first batch, with no crafting time recorded
    plant(4, 6, 789.0)  # a leftover of another batch size: not where the chain goes on
    plant(3, 5, 456.0, size=3)  # on the chain, but 3 images' arrays for 2 indices
    resumed = FakeAttack(indices)
    out = make(tmp_path, indices).craft(0, resumed, 2, machine="m")
    assert resumed.calls == [(3, 2), (5, 1)]
    np.testing.assert_array_equal(out["l2"][:3], 123.0)  # reused, not crafted again
    np.testing.assert_array_equal(out["l2"][3:], np.arange(3, 6) * 2.0)
    assert np.isnan(out["part_seconds"][0]) and out["part_sizes"].tolist() == [3, 2, 1]
    assert os.listdir(tmp_path) == ["kappa_0.npz"]
