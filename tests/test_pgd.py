"""PGD: stays in the ball and the box, finds what a linear model allows, never regresses."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_attacks import images_near_middle, linear_model

from remix_jax.attacks.common import margin
from remix_jax.attacks.pgd import pgd


@pytest.fixture(scope="module")
def setup():
    logits_fn, w, b = linear_model(seed=2)
    x = images_near_middle(8, seed=3)
    labels = jnp.argmax(logits_fn(x), axis=-1)
    return logits_fn, w, x, labels


def min_distance(x, labels, w, b, norm):
    """Smallest perturbation (dual norm of w_y - w_j) that flips a linear model: (N,)."""
    flat = np.asarray(x).reshape(len(x), -1)
    logits = flat @ w + b
    out = []
    for logit, y in zip(logits, np.asarray(labels), strict=True):
        dual = [
            np.abs(w[:, y] - w[:, j]).sum() if norm == "linf" else np.linalg.norm(w[:, y] - w[:, j])
            for j in range(w.shape[1])
            if j != y
        ]
        gaps = [logit[y] - logit[j] for j in range(w.shape[1]) if j != y]
        out.append(min(g / d for g, d in zip(gaps, dual, strict=True)))
    return np.array(out)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_succeeds_exactly_beyond_the_linear_models_distance(setup, norm):
    logits_fn, w, x, labels = setup
    _, _, b = linear_model(seed=2)
    distance = min_distance(x, labels, w, b, norm)
    # the box is not in the way: x is within 0.05 of 0.5 and no optimal perturbation
    # moves a pixel by 0.45 (L2: the largest coordinate of a unit w_i - w_j), so the
    # optimum lies inside the larger ball and the box
    diffs = [w[:, i] - w[:, j] for i in range(3) for j in range(3) if i != j]
    spread = 1.0 if norm == "linf" else max(np.abs(d).max() / np.linalg.norm(d) for d in diffs)
    assert distance.max() * spread < 0.45
    for eps, expected in ((0.7 * distance.min(), False), (1.3 * distance.max(), True)):
        result = pgd(
            logits_fn,
            x,
            labels,
            key=jax.random.key(0),
            epsilon=float(eps),
            norm=norm,
            steps=60,
            loss="margin",
        )
        np.testing.assert_array_equal(np.asarray(result.success), expected)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_pgd_stays_in_the_ball_and_the_box(setup, norm):
    logits_fn, _, _, labels = setup
    x = jnp.clip(images_near_middle(8, seed=3) * 2 - 0.5, 0, 1)  # pixels at 0 and 1 too
    eps = 0.3 if norm == "linf" else 1.0
    result = pgd(
        logits_fn, x, labels, key=jax.random.key(1), epsilon=eps, norm=norm, steps=10, step_size=eps
    )
    adv = np.asarray(result.adversarial)
    assert adv.min() >= 0 and adv.max() <= 1
    size = result.linf if norm == "linf" else result.l2
    assert float(size.max()) <= eps * (1 + 1e-5)


def test_more_steps_never_return_a_smaller_margin(setup):
    logits_fn, _, x, labels = setup
    margins = []
    for steps in (5, 10, 20):
        result = pgd(
            logits_fn, x, labels, key=jax.random.key(2), epsilon=0.02, steps=steps, step_size=0.004
        )
        margins.append(np.asarray(margin(logits_fn(result.adversarial), labels, False)))
    assert np.all(margins[1] >= margins[0] - 1e-6) and np.all(margins[2] >= margins[1] - 1e-6)


def test_targeted_pgd_reaches_the_target(setup):
    logits_fn, _, x, labels = setup
    targets = (labels + 1) % 3
    result = pgd(logits_fn, x, targets, key=jax.random.key(3), epsilon=0.5, steps=50, targeted=True)
    assert bool(result.success.all())
    np.testing.assert_array_equal(jnp.argmax(logits_fn(result.adversarial), -1), targets)


def test_stochastic_model_gets_a_fresh_key_each_step_and_is_reproducible(setup):
    base, _, x, labels = setup
    seen = []

    def noisy(z, key):
        jax.debug.callback(lambda k: seen.append(np.asarray(k).tobytes()), jax.random.key_data(key))
        return base(z) + 0.1 * jax.random.normal(key, (z.shape[0], 3))

    run = lambda k: pgd(noisy, x, labels, key=k, epsilon=0.05, steps=4, stochastic=True)  # noqa: E731
    first = run(jax.random.key(4))
    jax.effects_barrier()  # the unordered debug callbacks may still be running
    keys_first_run = list(seen)
    np.testing.assert_array_equal(run(jax.random.key(4)).adversarial, first.adversarial)
    # every call of the model saw its own key: 4 steps + 2 final checks
    assert len(keys_first_run) == 6 and len(set(keys_first_run)) == 6
    assert float(jnp.abs(run(jax.random.key(5)).adversarial - first.adversarial).max()) > 0


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(epsilon=0.0), "epsilon"),
        (dict(epsilon=0.1, norm="l1"), "norm"),
        (dict(epsilon=0.1, loss="hinge"), "loss"),
        (dict(epsilon=0.1, steps=0), "steps"),
        (dict(epsilon=0.1, step_size=-1.0), "step_size"),
    ],
)
def test_bad_arguments_are_refused(setup, kwargs, match):
    logits_fn, _, x, labels = setup
    with pytest.raises(ValueError, match=match):
        pgd(logits_fn, x, labels, key=jax.random.key(0), **kwargs)


def test_a_raw_uint32_key_is_refused(setup):
    logits_fn, _, x, labels = setup
    with pytest.raises(TypeError, match="key"):
        pgd(logits_fn, x, labels, key=jax.random.PRNGKey(0), epsilon=0.1)


def test_a_penalty_steers_the_attack_away_from_what_it_penalises(setup):
    logits_fn, _, x, labels = setup
    # penalise lowering pixel 0, which every example wants to lower
    penalty = lambda z, key: 100.0 * jnp.maximum(x[:, 0, 0, 0] - z[:, 0, 0, 0], 0.0)  # noqa: E731
    free = pgd(logits_fn, x, labels, key=jax.random.key(6), epsilon=0.1, steps=20)
    paid = pgd(logits_fn, x, labels, key=jax.random.key(6), epsilon=0.1, steps=20, penalty=penalty)
    lowered = lambda r: np.asarray(x[:, 0, 0, 0] - r.adversarial[:, 0, 0, 0])  # noqa: E731
    assert lowered(free).min() > 0.09
    assert lowered(paid).max() <= 0.1 * 2.5 / 20 + 1e-6  # at most one step's worth


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_a_given_start_is_projected_and_kept_when_it_already_succeeds(setup, norm):
    logits_fn, w, x, labels = setup
    _, _, b = linear_model(seed=2)
    eps = 1.5 * float(min_distance(x, labels, w, b, norm).max())
    found = pgd(
        logits_fn, x, labels, key=jax.random.key(0), epsilon=eps, norm=norm, steps=50, loss="margin"
    )
    assert bool(found.success.all())
    # one tiny step from the found examples: still adversarial (the start is judged)
    again = pgd(
        logits_fn,
        x,
        labels,
        key=jax.random.key(1),
        epsilon=eps,
        norm=norm,
        steps=1,
        step_size=1e-6,
        start=found.adversarial,
        loss="margin",
    )
    assert bool(again.success.all())
    # a start far outside the ball is projected into it
    far = jnp.clip(x + 10.0, 0, 1)
    moved = pgd(
        logits_fn,
        x,
        labels,
        key=jax.random.key(1),
        epsilon=eps,
        norm=norm,
        steps=1,
        step_size=1e-6,
        start=far,
    )
    size = moved.linf if norm == "linf" else moved.l2
    assert float(size.max()) <= eps * (1 + 1e-5)
    with pytest.raises(ValueError, match="start"):
        pgd(logits_fn, x, labels, key=jax.random.key(1), epsilon=eps, start=x[:2])
