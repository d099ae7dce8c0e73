"""APGD: the schedule and halving rule, DLR, the ball, EOT, known optima, restarts, checks."""

import functools
import importlib
from fractions import Fraction
from math import ceil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_attacks import SHAPE, D, images_near_middle, linear_model
from test_pgd import min_distance

from remix_jax.attacks.apgd import apgd, checkpoints, dlr_loss, targeted_dlr_loss
from remix_jax.attacks.common import margin
from remix_jax.attacks.pgd import pgd

# the module (remix_jax.attacks.apgd is the function once the package has exported it)
apgd_lib = importlib.import_module("remix_jax.attacks.apgd")

# Tests share model objects and batch shapes where they can: each new (model, norm,
# loss, shape) compiles the attack's steps again, which is most of this file's time.
SEEN: list[np.ndarray] = []
LINEAR, LINEAR_W, LINEAR_B = linear_model(seed=2)


def recording_linear(z):
    """A 3-class linear model that records every input it is called on (in SEEN)."""
    jax.debug.callback(lambda v: SEEN.append(np.asarray(v)), z)
    return LINEAR(z)


@pytest.fixture(scope="module")
def three_classes():
    x = images_near_middle(8, seed=3)
    return recording_linear, LINEAR_W, LINEAR_B, x, jnp.argmax(LINEAR(x), axis=-1)


@pytest.fixture(scope="module")
def two_classes():
    """A 2-class linear model: its margin's gradient is constant, its optimum a corner."""
    logits_fn, w, b = linear_model(seed=4, classes=2)
    x = images_near_middle(8, seed=5)
    return logits_fn, w, b, x, jnp.argmax(logits_fn(x), axis=-1)


def sine_mlp(seed=1, scale=5.0):
    """A 10-class toy with many local optima (sine features) and a batch of 128 images."""
    rng = np.random.default_rng(seed)
    w1 = jnp.asarray(rng.normal(size=(D, 64)) * scale, jnp.float32)
    w2 = jnp.asarray(rng.normal(size=(64, 10)), jnp.float32)

    def logits_fn(x):
        return jnp.sin(x.reshape(x.shape[0], -1) @ w1) @ w2

    x = jnp.asarray(rng.uniform(0, 1, size=(128, *SHAPE)), jnp.float32)
    return logits_fn, x, jnp.argmax(logits_fn(x), axis=-1)


SINE = sine_mlp()  # one model object: its compiled steps serve two tests


def paper_checkpoints(steps):
    """w_j = ceil(p_j N), p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)."""
    before, p, out = Fraction(0), Fraction(22, 100), []
    while ceil(p * steps) <= steps:
        out.append(ceil(p * steps))
        before, p = p, p + max(p - before - Fraction(3, 100), Fraction(6, 100))
    return out


def test_checkpoints_are_the_papers_and_the_references():
    for steps in (100, 200, 1000):  # where int() and ceil() agree
        assert checkpoints(steps) == paper_checkpoints(steps)
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    # the reference's integer windows: max(int(.22 N) - j int(.03 N), int(.06 N)), each >= 1
    assert checkpoints(50) == [11, 21, 30, 38, 45]
    assert checkpoints(10) == list(range(2, 11))
    assert checkpoints(1) == [1]


def test_the_halving_rule():
    halve = apgd_lib._halve
    window, rho = jnp.int32(22), jnp.float32(0.75)  # rho * window = 16.5

    def case(increases, halved_before, checked, best):
        out = halve(
            jnp.asarray([increases], jnp.int32),
            window,
            rho,
            jnp.asarray([halved_before]),
            jnp.asarray([checked], jnp.float32),
            jnp.asarray([best], jnp.float32),
        )
        return bool(out[0])

    # condition 1: at most rho of the window's steps raised the loss
    assert case(16, True, 0.0, 1.0) and not case(17, True, 0.0, 1.0)
    # condition 2: not halved at the last checkpoint and the best loss unchanged since
    assert case(22, False, 1.0, 1.0)
    assert not case(22, True, 1.0, 1.0)  # halved last time
    assert not case(22, False, 1.0, 1.5)  # improved


def margin_run(two_classes, epsilon):
    """The 2-class model's run (L-inf, margin loss, 100 steps) for the step functions."""
    logits_fn, _, _, x, labels = two_classes
    settings = apgd_lib.Settings("linf", "margin", 1, False)
    schedule = jnp.asarray(apgd_lib._schedule(100))
    problem = apgd_lib.Problem(x, labels, labels, jnp.float32(epsilon), jnp.float32(0.75), schedule)
    return problem, {"logits_fn": logits_fn, "settings": settings, "penalty": None}


def one_step(key, problem, state, i, static):
    """Step index ``i`` alone: the host loop's compiled step (one compile for two tests)."""
    return apgd_lib._host_chunk(key, problem, state, i, length=1, **static)


def test_a_checkpoint_halves_and_restarts_from_the_best_point(two_classes):
    problem, static = margin_run(two_classes, 0.1)
    x = problem.x
    begin = apgd_lib._host_begin(jax.random.key(0), problem, x, **static)
    best_x = jnp.clip(x + 0.05, 0, 1)  # a point the step cannot reach (moves are +-0.2)
    state = {
        **begin,
        "best_x": best_x,
        "best_grad": jnp.full_like(x, 7.0),
        "best_loss": jnp.full(8, 1e9, jnp.float32),  # the step will not beat it
        # even examples: no step raised the loss (halve); odd: every step did (go on)
        "loss": jnp.asarray([np.inf, -np.inf] * 4, jnp.float32),
        "increases": jnp.asarray([0, 21] * 4, jnp.int32),
        "halved": jnp.ones(8, bool),
    }
    after = one_step(jax.random.key(1), problem, state, 21, static)  # closes window 1 (22)
    np.testing.assert_allclose(after["step"], [0.1, 0.2] * 4)
    np.testing.assert_array_equal(after["halved"], [True, False] * 4)
    np.testing.assert_array_equal(after["x"][::2], best_x[::2])
    np.testing.assert_array_equal(after["grad"][::2], 7.0)
    assert float(jnp.abs(after["x"][1::2] - best_x[1::2]).max(axis=(1, 2, 3)).min()) > 0.01
    assert float(jnp.abs(after["grad"][1::2] - 7.0).min()) > 0
    np.testing.assert_array_equal(after["increases"], 0)
    np.testing.assert_allclose(after["checked_loss"], 1e9)
    # between checkpoints nothing halves, whatever the counts
    between = one_step(jax.random.key(2), problem, state, 20, static)
    np.testing.assert_allclose(between["step"], 0.2)
    np.testing.assert_array_equal(between["increases"], [0, 22] * 4)


def test_the_step_size_halves_at_each_checkpoint_once_the_loss_stalls(two_classes):
    """On a 2-class linear model the first step reaches the optimal corner and stays: the
    loss rises once, then never, so every checkpoint halves (condition 1 at the first,
    both after); between checkpoints the step size holds."""
    problem, static = margin_run(two_classes, 0.05)
    key = jax.random.key(2)
    start = apgd_lib._start_point(jax.random.key(3), problem.x, problem.epsilon, "linf")
    state = apgd_lib._host_begin(jax.random.clone(key), problem, start, **static)
    sizes = []
    for i in range(100):
        state = one_step(jax.random.clone(key), problem, state, i, static)
        sizes.append(np.asarray(state["step"]))
    marks = checkpoints(100)
    expected = [0.1 / 2 ** sum(w <= i + 1 for w in marks) for i in range(100)]
    np.testing.assert_allclose(np.stack(sizes), np.repeat(np.array(expected)[:, None], 8, 1))


def test_dlr_on_hand_computed_logits():
    dlr, targeted = jax.jit(dlr_loss), jax.jit(targeted_dlr_loss)  # one compile, not per op
    logits = jnp.asarray([[3.0, 1.0, 2.0, 0.0], [3.0, 1.0, 2.0, 0.0]])
    labels, targets = jnp.asarray([0, 2]), jnp.asarray([3, 1])
    # sorted 3 > 2 > 1 > 0: the label on top, -(3 - 2) / (3 - 1); below, -(2 - 3) / (3 - 1)
    np.testing.assert_allclose(dlr(logits, labels), [-0.5, 0.5])
    # targeted: -(z_y - z_t) / (3 - (1 + 0) / 2)
    np.testing.assert_allclose(targeted(logits, labels, targets), [-3 / 2.5, -1 / 2.5])
    # both are invariant to shifting and positively scaling the logits
    moved = 4.0 * logits - 7.0
    np.testing.assert_allclose(dlr(moved, labels), [-0.5, 0.5], rtol=1e-6)
    np.testing.assert_allclose(targeted(moved, labels, targets), [-3 / 2.5, -1 / 2.5], rtol=1e-6)


def test_targets_are_the_other_classes_by_decreasing_clean_logit():
    logits = jnp.asarray([[0.0, 5.0, 3.0, 4.0, 1.0], [9.0, 5.0, 3.0, 4.0, 1.0]])

    def fixed(z):
        return logits + 0.0 * jnp.sum(z, axis=(1, 2, 3))[:, None]

    settings = apgd_lib.Settings("linf", "dlr-targeted", 1, False)
    x, labels = jnp.zeros((2, *SHAPE)), jnp.asarray([1, 1])
    got = apgd_lib._targets(
        jax.random.key(0), x, labels, logits_fn=fixed, settings=settings, count=3
    )
    # example 0 is right (label 1 on top); example 1 is wrong: its label is never a target
    np.testing.assert_array_equal(got, [[3, 0], [2, 3], [4, 2]])


@settings(max_examples=6, deadline=None)
@given(
    norm=st.sampled_from(["linf", "l2"]),
    size=st.floats(0.05, 1.0),
    seed=st.integers(0, 2**16),
    far_start=st.booleans(),
)
def test_every_iterate_stays_in_the_ball_and_the_box(norm, size, seed, far_start):
    rng = np.random.default_rng(seed)
    # pixels at 0 and 1 too, where the box binds
    x = jnp.asarray(np.clip(rng.uniform(-0.5, 1.5, size=(8, *SHAPE)), 0, 1), jnp.float32)
    labels = jnp.asarray(rng.integers(0, 3, size=8), jnp.int32)
    eps = size if norm == "linf" else 4 * size
    start = jnp.clip(x + 10.0 * (rng.uniform(size=x.shape) - 0.5), -5, 5) if far_start else None
    SEEN.clear()
    # 12 steps: every step from the second on closes a window, so the restarts from the
    # best point are exercised; two runs, and loss "dlr" (DLR ascends wherever it can)
    apgd(
        recording_linear,
        x,
        labels,
        key=jax.random.key(seed),
        epsilon=eps,
        norm=norm,
        steps=12,
        loss="dlr",
        restarts=2,
        start=None if start is None else jnp.asarray(start, jnp.float32),
        loop="device",
    )
    # debug callbacks are unordered and may still be running when apgd returns
    jax.effects_barrier()
    seen = np.stack([s for s in SEEN if s.shape == x.shape])
    # every evaluated point: per run (the second only if the first broke not all) the
    # start and 12 steps, and the final check
    assert len(seen) in (13 + 1, 2 * 13 + 1)
    assert seen.min() >= 0 and seen.max() <= 1
    delta = (seen - np.asarray(x)[None]).reshape(len(seen), 8, -1)
    size_of = np.abs(delta).max(-1) if norm == "linf" else np.sqrt((delta**2).sum(-1))
    assert size_of.max() <= eps * (1 + 1e-5) + 1e-7


def test_eot_averages_the_loss_and_gradient_over_the_draws(three_classes):
    _, w, b, x, labels = three_classes
    draws = 4

    def noisy(z, key):  # each draw scales each pixel by its own known random factor
        scale = 1.0 + 0.5 * jax.random.normal(key, (D,))
        return (z.reshape(z.shape[0], -1) * scale[None]) @ w + b[None]

    settings = apgd_lib.Settings("linf", "ce", draws, True)
    evaluate = jax.jit(
        lambda key: apgd_lib._evaluate(
            key, x, labels, labels, logits_fn=noisy, settings=settings, penalty=None
        )
    )
    loss, grad, logits, paid = evaluate(jax.random.key(9))

    @jax.jit
    def one_draw(key):
        def value(z):
            logits = noisy(z, key)
            return jnp.sum(apgd_lib._loss(logits, labels, labels, "ce")), (logits, value)

        grad, (logits, value) = jax.grad(value, has_aux=True)(x)
        return apgd_lib._loss(logits, labels, labels, "ce"), grad, logits

    per_loss, per_grad, per_logits = zip(
        *(one_draw(k) for k in jax.random.split(jax.random.key(9), draws)),  # the draw keys
        strict=True,
    )
    np.testing.assert_allclose(loss, np.mean(per_loss, 0), rtol=1e-5)
    np.testing.assert_allclose(grad, np.mean(per_grad, 0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(logits, np.mean(per_logits, 0), rtol=1e-5)
    np.testing.assert_array_equal(paid, 0.0)
    # the draws differ, so one draw (or the sum) would not pass
    assert float(jnp.abs(per_grad[0] - per_grad[1]).max()) > 1e-3


def test_a_randomized_model_gets_fresh_draws_and_is_attacked_reproducibly(three_classes):
    _, w, b, x, labels = three_classes
    keys = []

    def noisy(z, key):  # random pixel weights: the draws change the gradient's sign
        jax.debug.callback(lambda k: keys.append(np.asarray(k).tobytes()), jax.random.key_data(key))
        scale = 1.0 + jax.random.normal(key, (D,))
        return (z.reshape(z.shape[0], -1) * scale[None]) @ w + b[None]

    def run(seed):
        return apgd(
            noisy,
            x,
            labels,
            key=jax.random.key(seed),
            epsilon=0.05,
            steps=6,
            draws=3,
            stochastic=True,
            loop="device",
        )

    first = run(4)
    jax.effects_barrier()  # the unordered debug callbacks may still be running
    # every model call had its own key: 3 draws at the start, at each of 6 steps and at
    # the final check
    assert len(keys) == 3 * (1 + 6 + 1) and len(set(keys)) == len(keys)
    np.testing.assert_array_equal(run(4).adversarial, first.adversarial)
    assert float(jnp.abs(run(5).adversarial - first.adversarial).max()) > 0


@pytest.mark.parametrize("norm, loss", [("linf", "margin"), ("l2", "ce")])
def test_apgd_reaches_a_linear_models_optimum(two_classes, norm, loss):
    """Both losses grow with the margin, whose maximum over the ball is known: the corner
    x + eps sign(w_o - w_y) (L-inf), the point x + eps (w_o - w_y) / ||w_o - w_y|| (L2);
    x is within 0.05 of 0.5, so the box is not in the way."""
    logits_fn, w, _, x, labels = two_classes
    eps = 0.1 if norm == "linf" else 0.3
    # L-inf with the host loop, one step at a time: the compiled step of the tests above
    loop = {"loop": "host", "chunk": 1} if norm == "linf" else {"loop": "device"}
    options = {"epsilon": eps, "norm": norm, "steps": 30, "loss": loss, **loop}
    result = apgd(logits_fn, x, labels, key=jax.random.key(0), **options)
    toward = w[:, 1 - np.asarray(labels)] - w[:, np.asarray(labels)]  # (D, B)
    if norm == "linf":
        optimum = np.asarray(x).reshape(len(x), -1) + eps * np.sign(toward.T)
    else:
        optimum = (
            np.asarray(x).reshape(len(x), -1)
            + eps * toward.T / np.linalg.norm(toward, axis=0)[:, None]
        )
    optimum = jnp.asarray(optimum.reshape(x.shape), jnp.float32)
    reached = margin(logits_fn(result.adversarial), labels, False)
    best = margin(logits_fn(optimum), labels, False)
    np.testing.assert_allclose(reached, best, rtol=1e-4, atol=1e-4)
    if norm == "linf":
        np.testing.assert_allclose(result.adversarial, optimum, atol=1e-6)
    else:
        np.testing.assert_allclose(result.l2, eps, rtol=1e-4)


@pytest.mark.parametrize("norm, loss", [("linf", "dlr-targeted"), ("l2", "dlr")])
def test_apgd_succeeds_exactly_beyond_the_linear_models_distance(three_classes, norm, loss):
    if loss == "dlr-targeted":  # needs 4 classes
        logits_fn, w, b = linear_model(seed=2, classes=4)
        x = images_near_middle(8, seed=3)
        labels = jnp.argmax(logits_fn(x), axis=-1)
    else:
        logits_fn, w, b, x, labels = three_classes
    distance = min_distance(x, labels, w, b, norm)
    attack = functools.partial(
        apgd, logits_fn, x, labels, norm=norm, steps=30, loss=loss, loop="device"
    )
    short = attack(key=jax.random.key(0), epsilon=0.7 * float(distance.min()))
    beyond = attack(key=jax.random.key(1), epsilon=1.3 * float(distance.max()))
    np.testing.assert_array_equal(short.success, False)
    np.testing.assert_array_equal(beyond.success, True)


def test_apgd_is_at_least_as_strong_as_pgd_at_equal_steps():
    logits_fn, x, labels = SINE
    ours = apgd(logits_fn, x, labels, key=jax.random.key(0), epsilon=0.01, steps=10, loop="device")
    theirs = pgd(logits_fn, x, labels, key=jax.random.key(0), epsilon=0.01, steps=10)
    assert int(ours.success.sum()) >= int(theirs.success.sum())
    ours_margin = margin(logits_fn(ours.adversarial), labels, False)
    theirs_margin = margin(logits_fn(theirs.adversarial), labels, False)
    assert float(ours_margin.mean()) >= float(theirs_margin.mean())


def test_restarts_never_make_it_worse():
    logits_fn, x, labels = SINE
    outcomes = []
    for restarts in (1, 3):
        result = apgd(
            logits_fn,
            x,
            labels,
            key=jax.random.key(1),
            epsilon=0.01,
            steps=5,
            restarts=restarts,
            loop="device",
        )
        logits = logits_fn(result.adversarial)
        loss = apgd_lib._loss(logits, labels, labels, "ce")
        outcomes.append((np.asarray(result.success), np.asarray(loss)))
    (found1, loss1), (found3, loss3) = outcomes
    assert not found1.all() and found3.sum() > found1.sum()  # restarts help here
    assert np.all(found3 >= found1)
    same = found3 == found1
    assert np.all(loss3[same] >= loss1[same] - 1e-6)


def test_the_host_and_device_loops_agree(three_classes):
    logits_fn, _, _, x, labels = three_classes
    # L2, where the iterates approach the optimum as the step size shrinks: the step
    # count and the schedule show in the result
    kwargs = dict(epsilon=0.5, norm="l2", steps=12, loss="dlr")
    host = apgd(logits_fn, x, labels, key=jax.random.key(3), loop="host", chunk=4, **kwargs)
    device = apgd(logits_fn, x, labels, key=jax.random.key(3), loop="device", **kwargs)
    np.testing.assert_allclose(host.adversarial, device.adversarial, atol=1e-6)
    np.testing.assert_array_equal(host.success, device.success)


def test_a_given_start_is_kept_and_a_penalty_is_avoided(three_classes):
    logits_fn, w, b, x, labels = three_classes
    attack = functools.partial(apgd, logits_fn, x, labels, loss="dlr", loop="device")
    eps = 1.5 * float(min_distance(x, labels, w, b, "linf").max())
    found = attack(key=jax.random.key(0), epsilon=eps, steps=20)
    assert bool(found.success.all())
    # from the found examples, one step: still adversarial (the start point is judged)
    again = attack(key=jax.random.key(1), epsilon=eps, steps=1, start=found.adversarial)
    assert bool(again.success.all())
    # penalise lowering pixel 0, which every example wants to lower
    penalty = lambda z, key: 100.0 * jnp.maximum(x[:, 0, 0, 0] - z[:, 0, 0, 0], 0.0)  # noqa: E731
    paid = attack(key=jax.random.key(6), epsilon=0.1, steps=20, penalty=penalty)
    free = attack(key=jax.random.key(6), epsilon=0.1, steps=20)
    lowered = lambda r: np.asarray(x[:, 0, 0, 0] - r.adversarial[:, 0, 0, 0])  # noqa: E731
    assert lowered(free).min() > 0.09
    assert lowered(paid).max() < 0.01


@pytest.mark.parametrize(
    "name, value",
    [
        ("epsilon", 0.0),
        ("norm", "l1"),
        ("loss", "hinge"),
        ("loss", "dlr-targeted"),  # needs 4 classes, the model has 3
        ("steps", 0),
        ("restarts", 0),
        ("draws", 0),
        ("draws", 2),  # EOT needs a randomized model
        ("rho", 0.0),
        ("rho", 1.5),
        ("loop", "gpu"),
        ("chunk", 0),
        ("start", jnp.zeros((2, *SHAPE))),  # not x's shape
    ],
)
def test_bad_arguments_are_refused_by_name(three_classes, name, value):
    logits_fn, _, _, x, labels = three_classes
    with pytest.raises(ValueError, match=name):
        apgd(logits_fn, x, labels, key=jax.random.key(0), **{"epsilon": 0.1, name: value})


def test_bad_target_counts_and_class_counts_are_refused():
    four, _, _ = linear_model(seed=2, classes=4)
    two, _, _ = linear_model(seed=2, classes=2)
    x = images_near_middle(2)
    labels = jnp.zeros(2, jnp.int32)
    key = jax.random.key(0)
    with pytest.raises(ValueError, match="target_classes"):
        apgd(four, x, labels, key=key, epsilon=0.1, loss="dlr-targeted", target_classes=4)
    with pytest.raises(ValueError, match="'dlr' needs >= 3 classes"):
        apgd(two, x, labels, key=key, epsilon=0.1, loss="dlr")
