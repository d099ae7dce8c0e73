"""CW-L2 and EAD: exact answers on linear models, invariants, and a real CNN."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from remix_jax.attacks import common, cw_l2, ead
from remix_jax.attacks.common import margin

SHAPE = (4, 4, 1)
D = 16


def linear_model(seed=0, classes=3):
    rng = np.random.default_rng(seed)
    w = jnp.asarray(rng.normal(size=(D, classes)), jnp.float32)
    b = jnp.asarray(rng.normal(size=classes) * 0.1, jnp.float32)

    def logits_fn(x):
        return x.reshape(x.shape[0], -1) @ w + b[None]

    return logits_fn, np.asarray(w), np.asarray(b)


def images_near_middle(n, seed=1):
    rng = np.random.default_rng(seed)
    return jnp.asarray(0.5 + rng.uniform(-0.05, 0.05, size=(n, *SHAPE)), jnp.float32)


def analytic_min_l2(x, labels, w, b, kappa):
    """Distance to the nearest kappa-boundary, min_j (margin_j + kappa) / ||w_y - w_j||.

    Returns the distances (N,) and the closest points (N, D) on those boundaries.
    """
    flat = np.asarray(x).reshape(len(x), -1)
    logits = flat @ w + b
    dists, points = [], []
    for point, logit, y in zip(flat, logits, labels, strict=True):
        others = [j for j in range(w.shape[1]) if j != y]
        norms = {j: np.linalg.norm(w[:, y] - w[:, j]) for j in others}
        best = min(others, key=lambda j: (logit[y] - logit[j] + kappa) / norms[j])
        a = w[:, y] - w[:, best]
        dist = (logit[y] - logit[best] + kappa) / norms[best]
        dists.append(dist)
        points.append(point - dist * a / norms[best])
    return np.array(dists), np.array(points)


@pytest.fixture(scope="module")
def linear_setup():
    logits_fn, w, b = linear_model()
    x = images_near_middle(6)
    labels = jnp.argmax(logits_fn(x), axis=-1)
    return logits_fn, w, b, x, labels


@pytest.mark.parametrize("kappa", [0.0, 1.0, 3.0])
def test_cw_reaches_the_analytic_minimum_distortion_on_a_linear_model(linear_setup, kappa):
    logits_fn, w, b, x, labels = linear_setup
    result = cw_l2(
        logits_fn,
        x,
        labels,
        confidence=kappa,
        binary_search_steps=12,
        max_iterations=1000,
        learning_rate=5e-3,
    )
    assert bool(result.success.all())
    expected, optimum = analytic_min_l2(x, np.asarray(labels), w, b, kappa)
    # the box is inactive: the unconstrained optimum lies well inside [0, 1]
    assert optimum.min() > 0.02 and optimum.max() < 0.98
    np.testing.assert_allclose(np.asarray(result.l2), expected, rtol=0.02)


def test_success_means_margin_at_least_kappa_and_failures_come_back_unchanged():
    rng = np.random.default_rng(7)
    w = jnp.asarray(rng.normal(size=(D, 3)), jnp.float32)
    b = jnp.array([0.0, 0.0, -100.0])  # class 2 can never win inside the box

    def logits_fn(x):
        return x.reshape(x.shape[0], -1) @ w + b[None]

    x = images_near_middle(6)
    targets = jnp.array([0, 1, 0, 2, 2, 2])  # the last three targets are impossible
    kappa = 1.0
    for attack in (cw_l2, ead):
        result = attack(
            logits_fn,
            x,
            targets,
            targeted=True,
            confidence=kappa,
            binary_search_steps=6,
            max_iterations=200,
        )
        m = np.asarray(margin(logits_fn(result.adversarial), targets, targeted=True))
        success = np.asarray(result.success)
        np.testing.assert_array_equal(success, [True] * 3 + [False] * 3)
        assert np.all(m[success] >= kappa)
        np.testing.assert_array_equal(np.asarray(result.adversarial)[3:], np.asarray(x)[3:])
        assert np.all(np.asarray(result.l2)[3:] == 0)
        assert float(result.adversarial.min()) >= 0 and float(result.adversarial.max()) <= 1


def test_targeted_attacks_reach_their_target(linear_setup):
    logits_fn, _, _, x, labels = linear_setup
    targets = (labels + 1) % 3
    for attack in (cw_l2, ead):
        result = attack(
            logits_fn,
            x,
            targets,
            targeted=True,
            confidence=0.5,
            binary_search_steps=8,
            max_iterations=300,
        )
        assert bool(result.success.all())
        np.testing.assert_array_equal(jnp.argmax(logits_fn(result.adversarial), -1), targets)


def test_ead_is_sparser_than_cw_and_becomes_cw_as_beta_vanishes():
    rng = np.random.default_rng(3)
    w = jnp.asarray(rng.normal(size=(D, 2)), jnp.float32)

    def logits_fn(x):
        return x.reshape(x.shape[0], -1) @ w

    x = images_near_middle(8, seed=4)
    labels = jnp.argmax(logits_fn(x), axis=-1)
    settings = dict(binary_search_steps=9, max_iterations=1000, confidence=1.0)
    cw = cw_l2(logits_fn, x, labels, **settings)
    sparse = ead(logits_fn, x, labels, beta=0.1, **settings)
    assert bool(cw.success.all()) and bool(sparse.success.all())
    assert float(sparse.l0.mean()) < float(cw.l0.mean())
    assert float(sparse.l1.mean()) < float(cw.l1.mean())
    dense = ead(logits_fn, x, labels, beta=1e-6, **settings)
    np.testing.assert_allclose(np.asarray(dense.l2), np.asarray(cw.l2), rtol=0.05)


def test_l1_rule_gives_no_larger_l1_than_en_rule():
    logits_fn, _, _ = linear_model(seed=5)
    x = images_near_middle(6, seed=6)
    labels = jnp.argmax(logits_fn(x), axis=-1)
    settings = dict(beta=0.1, binary_search_steps=6, max_iterations=300)
    en = ead(logits_fn, x, labels, decision_rule="EN", **settings)
    l1 = ead(logits_fn, x, labels, decision_rule="L1", **settings)
    assert float(l1.l1.mean()) <= float(en.l1.mean()) + 1e-4


def test_new_data_and_confidence_reuse_the_compiled_attack(linear_setup):
    from remix_jax.attacks import search

    logits_fn, _, _, x, labels = linear_setup
    before = search._host_chunk._cache_size()
    for seed, kappa in ((10, 0.0), (11, 1.5), (12, 4.0)):
        cw_l2(
            logits_fn,
            images_near_middle(6, seed),
            labels,
            confidence=kappa,
            binary_search_steps=2,
            max_iterations=5,
        )
    assert search._host_chunk._cache_size() - before == 1


def test_binary_search_update_follows_the_reference():
    const = jnp.array([1e-3, 1e-3, 0.5])
    lower = jnp.array([0.0, 0.0, 0.1])
    upper = jnp.array([1e10, 1e10, 1e10])
    succeeded = jnp.array([True, False, False])
    c, lo, up = common.update_const(const, lower, upper, succeeded)
    np.testing.assert_allclose(c, [5e-4, 1e-2, 5.0])  # success: bisect; failure: x10
    np.testing.assert_allclose(lo, [0.0, 1e-3, 0.5])
    np.testing.assert_allclose(up, [1e-3, 1e10, 1e10])


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(labels=jnp.array([0, 5])), ValueError, r"labels must be in \[0, 3\)"),
        (dict(labels=jnp.array([0])), ValueError, "labels must have shape"),
        (dict(labels=jnp.array([0.0, 1.0])), TypeError, "integers"),
        (dict(x=jnp.full((2, *SHAPE), 1.5)), ValueError, "x must lie"),
        (dict(x=jnp.full((2, *SHAPE), jnp.nan)), ValueError, "NaN"),
        (dict(confidence=-1.0), ValueError, "confidence"),
        (dict(max_iterations=-3), ValueError, "max_iterations"),
        (dict(binary_search_steps=0), ValueError, "binary_search_steps"),
        (dict(clip_min=1.0, clip_max=0.0), ValueError, "clip_min"),
    ],
)
def test_bad_input_is_rejected(kwargs, error, match):
    logits_fn, _, _ = linear_model()
    args = dict(x=images_near_middle(2), labels=jnp.array([0, 1]))
    args.update(kwargs)
    x, labels = args.pop("x"), args.pop("labels")
    for attack in (cw_l2, ead):
        with pytest.raises(error, match=match):
            attack(logits_fn, x, labels, **args)


def test_ead_rejects_unknown_decision_rule():
    logits_fn, _, _ = linear_model()
    with pytest.raises(ValueError, match="decision_rule"):
        ead(logits_fn, images_near_middle(2), jnp.array([0, 1]), decision_rule="L2")


def test_host_and_device_loops_agree(linear_setup):
    logits_fn, _, _, x, labels = linear_setup
    settings = dict(confidence=1.0, binary_search_steps=4, max_iterations=60)
    for attack in (cw_l2, ead):
        host = attack(logits_fn, x, labels, loop="host", **settings)
        device = attack(logits_fn, x, labels, loop="device", **settings)
        np.testing.assert_array_equal(host.success, device.success)
        np.testing.assert_allclose(host.adversarial, device.adversarial, atol=1e-5)
        np.testing.assert_allclose(host.const, device.const, rtol=1e-6)


def test_a_start_point_begins_the_search_where_it_already_succeeds(linear_setup):
    """A start that is already adversarial: with a constant too small to get there from
    x in one search step (100 iterations), the attack succeeds from it, and only moves
    closer."""
    logits_fn, _, _, x, labels = linear_setup
    far = cw_l2(
        logits_fn, x, labels, confidence=1.0, binary_search_steps=1, max_iterations=100,
        initial_const=100.0,
    )  # fmt: skip
    assert bool(far.success.all())
    settings = dict(confidence=1.0, binary_search_steps=1, max_iterations=100, initial_const=1e-3)
    for attack in (cw_l2, ead):
        plain = attack(logits_fn, x, labels, **settings)
        started = attack(logits_fn, x, labels, start=far.adversarial, **settings)
        assert not bool(plain.success.any()) and bool(started.success.all())
        # the start's own L2, up to CW's tanh scaling of the start (1e-6 of the range)
        assert np.all(np.asarray(started.l2) <= np.asarray(far.l2) + 1e-3)


def test_on_a_randomized_model_a_start_stands_in_where_the_best_fails_the_final_check(
    linear_setup,
):
    """The smallest example the search finds sits at margin ~0 under its own draws; a
    fresh draw (the final check) undoes many of them: the start, which passes, is
    returned there instead of the clean image."""
    logits_fn, _, _, x, labels = linear_setup

    def noisy(z, key):
        return logits_fn(z) + 0.2 * jax.random.normal(key, (z.shape[0], 3))

    far = cw_l2(
        logits_fn, x, labels, confidence=1.0, binary_search_steps=1, max_iterations=100,
        initial_const=100.0,
    )  # fmt: skip
    assert bool(far.success.all())
    result = cw_l2(
        noisy, x, labels, key=jax.random.key(1), start=far.adversarial, warm_start=True,
        binary_search_steps=3, max_iterations=50, initial_const=1.0,
    )  # fmt: skip
    assert bool(result.success.all())
    kept_start = np.all(np.asarray(result.adversarial == far.adversarial), axis=(1, 2, 3))
    assert kept_start.any() and not kept_start.all()


def test_cw_change_of_variables_keeps_float32_precision_at_the_box_ends():
    """x = (tanh(w) + 1) / 2 for box [0, 1]: its value and slope near the ends match
    float64 to float32 precision, where a plain float32 tanh rounds to -1 (XLA's from
    w = -8) and leaves a pixel pushed past it without a gradient for good."""
    from remix_jax.attacks import cw
    from remix_jax.attacks.search import Hyper

    hyper = Hyper(*(jnp.float32(v) for v in (0.0, 1e-2, 1e-3, 0.0, 1.0)))
    w = np.array([-12.0, -9.0, -8.0, -7.25, -1.0, 0.0, 1.0, 7.25, 8.0], np.float32)
    value, slope = jax.vmap(jax.value_and_grad(lambda v: cw._to_image(v, hyper)))(w)
    exact = (np.tanh(w.astype(np.float64)) + 1) / 2
    low = w < 0  # relative precision near 0; near 1 a float32 is 6e-8 from its neighbour
    np.testing.assert_allclose(np.asarray(value)[low], exact[low], rtol=1e-5)
    np.testing.assert_allclose(np.asarray(value)[~low], exact[~low], rtol=0, atol=6e-8)
    np.testing.assert_allclose(
        np.asarray(slope), 0.5 / np.cosh(w.astype(np.float64)) ** 2, rtol=1e-4
    )
    # the start maps the box's values back onto themselves
    x = jnp.asarray([0.0, 1e-3, 0.25, 0.5, 0.75, 1.0], jnp.float32).reshape(1, 6, 1, 1)
    back = cw._to_image(cw._reset(x, hyper)["w"], hyper)
    np.testing.assert_allclose(np.asarray(back), np.asarray(x), atol=1e-6)


def test_linear_initial_const_is_the_smallest_c_that_succeeds_on_a_linear_model(linear_setup):
    from remix_jax.attacks import common

    logits_fn, w, b, x, labels = linear_setup
    kappa = 1.0
    const = np.asarray(common.linear_initial_const(logits_fn, x, labels, False, kappa))
    logits = np.asarray(logits_fn(x))
    for c, logit, y in zip(const, logits, np.asarray(labels), strict=True):
        other = max((j for j in range(w.shape[1]) if j != y), key=lambda j: logit[j])
        h = logit[y] - logit[other] + kappa  # kappa - margin
        # by hand: 2 h / ||g||^2 with g = w_other - w_y, the margin loss's gradient
        np.testing.assert_allclose(c, 2 * h / np.sum((w[:, y] - w[:, other]) ** 2), rtol=1e-4)
    # starting there (c* fails by a hair, 10 c* succeeds), 2 search steps come within
    # 1% of the analytic minimum; from the reference's 1e-3 (to 1e-2) nothing succeeds
    settings = dict(
        confidence=kappa, binary_search_steps=2, max_iterations=1000, learning_rate=5e-3
    )
    fast = cw_l2(logits_fn, x, labels, initial_const="linear", **settings)
    reference = cw_l2(logits_fn, x, labels, **settings)
    expected, _ = analytic_min_l2(x, np.asarray(labels), w, b, kappa)
    assert bool(fast.success.all()) and not bool(reference.success.any())
    np.testing.assert_allclose(np.asarray(fast.l2), expected, rtol=0.01)
    with pytest.raises(TypeError, match="initial_const must be a real number, got str 'auto'"):
        cw_l2(logits_fn, x, labels, initial_const="auto")


def test_warm_starts_agree_between_loops_and_change_the_search(linear_setup):
    logits_fn, _, _, x, labels = linear_setup
    # success from the first step on: the later steps begin at the best example so far
    # (the driver's, shared by EAD, whose reset the test above covers)
    settings = dict(confidence=1.0, binary_search_steps=3, max_iterations=40, initial_const=10.0)
    host = cw_l2(logits_fn, x, labels, loop="host", warm_start=True, **settings)
    device = cw_l2(logits_fn, x, labels, loop="device", warm_start=True, **settings)
    np.testing.assert_array_equal(host.success, device.success)
    np.testing.assert_allclose(host.adversarial, device.adversarial, atol=1e-5)
    cold = cw_l2(logits_fn, x, labels, loop="host", **settings)
    assert bool(host.success.all()) and bool(cold.success.all())
    assert float(jnp.abs(host.adversarial - cold.adversarial).max()) > 1e-4
    with pytest.raises(ValueError, match="start must have the shape"):
        cw_l2(logits_fn, x, labels, start=x[:2], max_iterations=1, binary_search_steps=1)


def test_on_step_reports_each_finished_search_step(linear_setup):
    logits_fn, _, _, x, labels = linear_setup
    # the settings of test_host_and_device_loops_agree: its programs come compiled
    settings = dict(confidence=1.0, binary_search_steps=4, max_iterations=60)
    for attack in (cw_l2, ead):
        host, device = [], []
        attack(logits_fn, x, labels, loop="host", on_step=host.append, **settings)
        attack(logits_fn, x, labels, loop="device", on_step=device.append, **settings)
        assert host == [1, 2, 3, 4]
        assert device == [4]


def test_compacting_finished_examples_changes_nothing(monkeypatch):
    from remix_jax.attacks import search

    logits_fn, _, _ = linear_model()
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.uniform(0.1, 0.9, size=(20, *SHAPE)), jnp.float32)
    labels = jnp.argmax(logits_fn(x), axis=-1)
    # the abort (every 20 of the 200 iterations) stops examples at different times, so
    # the host loop compacts, possibly several times per search step
    settings = dict(confidence=1.0, binary_search_steps=2, max_iterations=200, initial_const=10.0)
    assert search._bucket(3, 16) == 8 and search._bucket(9, 16) == 16
    gathers = []
    original = search._gather
    monkeypatch.setattr(search, "_gather", lambda *a, **k: gathers.append(1) or original(*a, **k))
    for attack in (cw_l2, ead):
        plain = attack(logits_fn, x, labels, loop="host", compact=False, **settings)
        assert not gathers
        compacted = attack(logits_fn, x, labels, loop="host", compact=True, **settings)
        assert gathers, "the test must make the loop compact"
        gathers.clear()
        np.testing.assert_array_equal(plain.success, compacted.success)
        np.testing.assert_allclose(plain.adversarial, compacted.adversarial, atol=1e-5)
        np.testing.assert_allclose(plain.const, compacted.const, rtol=1e-6)


@pytest.fixture(scope="module")
def mnist_cnn(data_dir):
    """The committed MNIST classifier and 5 test images it gets right."""
    import os

    from remix_jax import data
    from remix_jax.evaluation import predict
    from remix_jax.models.classifiers import as_variables
    from remix_jax.pretrained import load_classifier

    root = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "checkpoints")
    if not os.path.isdir(os.path.join(root, "mnist", "classifier")):
        pytest.skip("no committed MNIST classifier")
    model, params = load_classifier("mnist", root)

    def logits_fn(x):
        return model.apply(as_variables(params), x)

    images, labels = data.load("mnist", "test", data_dir)
    x = data.to_float(images[:30])
    right = predict(logits_fn, x) == labels[:30]
    return logits_fn, jnp.asarray(x[right][:5]), jnp.asarray(labels[:30][right][:5])


@pytest.mark.slow
@pytest.mark.parametrize("attack", ["cw", "ead"])
def test_real_cnn_kappa_zero_always_succeeds_and_higher_kappa_costs_more(mnist_cnn, attack):
    logits_fn, x, labels = mnist_cnn
    run = cw_l2 if attack == "cw" else (lambda *a, **k: ead(*a, beta=0.1, **k))
    # pixels at exactly 0 or 1 sit at |w| = arctanh(0.999999) and need hundreds of Adam
    # steps of 0.01 to move (the reference scaling, kept on purpose): 100 steps of 0.05
    # reach every image, as 500 of 0.01 do, with a fifth of the steps
    settings = dict(
        binary_search_steps=2, max_iterations=100, initial_const=1.0, learning_rate=0.05
    )
    low = run(logits_fn, x, labels, confidence=0.0, **settings)
    high = run(logits_fn, x, labels, confidence=10.0, **settings)
    assert bool(low.success.all())
    m = np.asarray(margin(logits_fn(low.adversarial), labels, targeted=False))
    assert np.all(m >= 0) and np.all(np.argmax(logits_fn(low.adversarial), -1) != labels)
    both = np.asarray(low.success & high.success)
    assert both.sum() >= 3
    norm = "l2" if attack == "cw" else "l1"
    assert getattr(high, norm)[both].mean() > getattr(low, norm)[both].mean()


def test_a_key_mismatch_says_how_the_model_is_called(linear_setup):
    logits_fn, _, _, x, labels = linear_setup

    def randomized(images, key):
        return logits_fn(images + 0.0 * jax.random.uniform(key, images.shape))

    with pytest.raises(TypeError, match="deterministic logits_fn\\(x\\) takes key=None"):
        cw_l2(logits_fn, x, labels, max_iterations=1, binary_search_steps=1, key=jax.random.key(0))
    with pytest.raises(TypeError, match="needs key="):
        cw_l2(randomized, x, labels, max_iterations=1, binary_search_steps=1)
