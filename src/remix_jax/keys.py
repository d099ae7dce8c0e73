"""The project's key convention: one seed, folded in by named purpose.

Every evaluation CLI takes one ``--seed``. Each random use draws from
``purpose_key(seed, purpose)``, so that two uses never share a stream and changing
one (more evaluation keys, another attack) leaves the others' draws alone:

- ``"evaluation"``: the defense's randomness while scoring (REMIX's masks); score s of
  ``num_keys`` uses ``fold_in(purpose_key(seed, "evaluation"), s)``
  (:func:`evaluation_keys`), for clean and adversarial inputs alike, so their scores
  are paired.
- an adaptive attack run's randomness (its EOT draws, starts, targets):
  :func:`attack_key`, the seed folded with the hash of the run's settings (so a changed
  setting draws afresh, and the cached runs keep their keys).
- ``"calibration"``: the detector's masks on the validation images it calibrates on.
- ``"masks"``: the masks of a single drawing (eval.visualize).

Batched prediction gives image i of an evaluation its own key ``fold_in(key, i)``
(:func:`image_keys`), so a score never depends on the batch size. Two draws stay
outside this scheme, for a reason: training (``training.fit`` folds the epoch and the
step into the training ``--seed`` itself, and a run resumes with the key it began
with) and the oblivious caches' targets (``adversarial_cache.TARGETS_SEED``, part of
the committed caches' identity).
"""

from __future__ import annotations

import jax

from remix_jax._checks import check_int, check_key, fold_counter

# fixed small integers, not hashes of the names: stable across Python versions, and
# visible here as the whole list
PURPOSES = {"evaluation": 1, "calibration": 3, "masks": 4}


def purpose_key(seed: int, purpose: str) -> jax.Array:
    """``fold_in(jax.random.key(seed), PURPOSES[purpose])``: the key of one use.

    Args:
      seed: the CLI's ``--seed`` (an int >= 0).
      purpose: a name in :data:`PURPOSES`.

    Raises:
      ValueError: for an unknown purpose or a negative seed.
    """
    seed = check_int("seed", seed, low=0)
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {sorted(PURPOSES)}, got {purpose!r}")
    return jax.random.fold_in(jax.random.key(seed), PURPOSES[purpose])


def evaluation_keys(seed: int, num_keys: int) -> list[jax.Array]:
    """The ``num_keys`` keys a randomized defense is scored under (key s for score s)."""
    num_keys = check_int("num_keys", num_keys, low=1)
    base = purpose_key(seed, "evaluation")
    return [fold_counter(base, s) for s in range(num_keys)]


def image_keys(key: jax.Array, start: int, count: int) -> jax.Array:
    """(count,) keys for images ``start .. start + count - 1`` of an evaluation.

    Image i's key is ``fold_in(key, i)``: it depends on its index only, not on how the
    images are batched.
    """
    check_key("key", key)
    start = check_int("start", start, low=0)
    count = check_int("count", count, low=0)
    indices = jax.numpy.arange(start, start + count, dtype=jax.numpy.uint32)
    return jax.vmap(jax.random.fold_in, in_axes=(None, 0))(jax.random.clone(key), indices)


def attack_key(seed: int, settings_digest: str) -> jax.Array:
    """An attack run's key: ``fold_in(key(seed), int(settings_digest[:7], 16))``.

    The run's purpose is its settings' hash (28 bits), so every run draws its own
    stream; a hash equal to one of :data:`PURPOSES` (chance ~1e-8) would share that
    purpose's key, not its folded keys.

    Args:
      seed: the CLI's ``--seed``.
      settings_digest: the hex digest of the run's settings (at least 7 digits).
    """
    seed = check_int("seed", seed, low=0)
    return jax.random.fold_in(jax.random.key(seed), int(settings_digest[:7], 16))
