"""APE-GAN: FGSM, the purifier's shapes and determinism, and its adversarial training
through training.fit's custom step (resumable like every task)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from remix_jax import apegan, training

SHAPE = (8, 8, 1)
WEIGHTS = jax.random.normal(jax.random.key(3), (64, 3))


def linear(x):
    return x.reshape(x.shape[0], -1) @ WEIGHTS


def toy_data(n=48, seed=0):
    """uint8 8x8 images whose class (of 3) is a bright row."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    images = (rng.uniform(0, 0.3, (n, *SHAPE)) * 255).astype(np.uint8)
    images[np.arange(n), 2 * labels, :, 0] = 255
    return images, labels


def test_fgsm_steps_every_pixel_by_epsilon_within_the_box_and_raises_the_loss():
    x = jax.random.uniform(jax.random.key(0), (4, *SHAPE))
    labels = jnp.arange(4) % 3
    adv = apegan.fgsm(linear, x, labels, 0.1)
    moved = np.abs(np.asarray(adv - x))
    inside = (np.asarray(x) > 0.1) & (np.asarray(x) < 0.9)  # not clipped
    np.testing.assert_allclose(moved[inside], 0.1, atol=1e-6)
    assert adv.min() >= 0 and adv.max() <= 1

    def loss(z):
        return optax.softmax_cross_entropy_with_integer_labels(linear(z), labels).mean()

    assert loss(adv) > loss(x)


@pytest.fixture(scope="module")
def tiny_config():
    return apegan.APEGANConfig(channels=1, width=4, epsilon=0.1)


def test_purifier_is_deterministic_per_image_and_checks_its_input(tiny_config):
    task = apegan.apegan_task(tiny_config, SHAPE, linear)
    params = apegan.APEGANParams(tiny_config, task.init(jax.random.key(0))["generator"])
    x = jax.random.uniform(jax.random.key(1), (5, *SHAPE))
    out = apegan.purify(params, x)
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    # running statistics, not the batch's: an image's output ignores its batch-mates
    np.testing.assert_allclose(apegan.purify(params, x[2:3]), out[2:3], atol=1e-6)
    np.testing.assert_array_equal(apegan.purify(params, x), out)
    with pytest.raises(ValueError, match="divide by 4"):
        apegan.purify(params, jnp.zeros((1, 6, 6, 1)))
    with pytest.raises(ValueError, match="x must"):
        apegan.purify(params, x + 2.0)


def test_training_lowers_the_purified_error_and_resumes_exactly(tmp_path, tiny_config):
    train, validation = toy_data(48), toy_data(16, seed=1)
    task = apegan.apegan_task(tiny_config, SHAPE, linear)
    optimizer = optax.adam(2e-3, b1=0.5)

    def fit(epochs, folder):
        config = training.TrainConfig(epochs=epochs, batch_size=8, save_every=100)
        return training.fit(jax.random.key(0), task, optimizer, train, validation, config,
                            str(folder), {}, progress=False)  # fmt: skip

    start = training.evaluate(task.evaluate, task.init(jax.random.split(jax.random.key(0), 3)[0]),
                              *validation)  # fmt: skip
    straight, meta = fit(2, tmp_path / "straight")
    history = meta["history"]
    assert history[-1]["rmse"] < start["rmse"]  # G learned to restore the clean images
    fit(1, tmp_path / "resumed")
    resumed, _ = fit(2, tmp_path / "resumed")  # continues from epoch 1's checkpoint
    for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-6)


def test_gan_baselines_train_through_their_clis_and_eval_clean_scores_them(
    tmp_path, data_dir, monkeypatch
):
    """train.apegan and train.defensegan -> checkpoints -> load_apegan / load_defensegan
    -> eval.clean --apegan --defensegan, as a user runs them (tiny networks on 300 MNIST
    images; the shipped classifier and REMIX): one eval.clean run scores both."""
    import json
    import os

    from eval import clean
    from remix_jax.pretrained import load_apegan, load_defensegan
    from train import apegan as train_apegan
    from train import defensegan as train_defensegan

    monkeypatch.setenv("REMIX_JAX_CPU_FLAGS", "0")  # the backend already runs here
    root = tmp_path / "ckpt"
    (root / "mnist").mkdir(parents=True)
    shipped = os.path.join(os.path.dirname(os.path.dirname(__file__)), "checkpoints", "mnist")
    for component in ("classifier", "reformer", "inpainter"):
        (root / "mnist" / component).symlink_to(os.path.join(shipped, component))
    common = ["--limit", "300", "--epochs", "1", "--width", "4", "--no-progress",
              "--data-dir", data_dir]  # fmt: skip
    train_apegan.main(
        [*common, "--batch-size", "60", "--checkpoint-dir", str(root / "mnist" / "apegan")]
    )
    meta = json.loads((root / "mnist" / "apegan" / "meta.json").read_text())
    assert meta["config"]["epsilon"] == 0.3 and meta["config"]["width"] == 4
    assert meta["test"]["images"] == 300 and 0 < meta["test"]["rmse"] < 1
    assert load_apegan("mnist", str(root)).config.width == 4
    train_defensegan.main(
        [*common, "--batch-size", "30", "--latent", "8", "--critic-steps", "2",
         "--checkpoint-dir", str(root / "mnist" / "defensegan")]
    )  # fmt: skip
    meta = json.loads((root / "mnist" / "defensegan" / "meta.json").read_text())
    assert meta["config"]["latent"] == 8 and not meta["config"]["batch_norm"]
    assert meta["test"]["images"] == 300 and np.isfinite(meta["test"]["wasserstein"])
    assert meta["history"][-1]["step"] == 240 // 30  # 300 minus 60 held out, batch 30
    assert load_defensegan("mnist", str(root)).config.width == 4
    clean.main(
        ["--limit", "20", "--num-keys", "2", "--iterations", "1", "--no-magnet", "--apegan",
         "--defensegan", "--defensegan-steps", "3", "--defensegan-restarts", "2",
         "--checkpoint-root", str(root), "--data-dir", data_dir,
         "--out", str(tmp_path / "out" / "clean")]
    )  # fmt: skip
    result = json.loads((tmp_path / "out" / "clean.json").read_text())
    assert {k: result["defensegan"][k] for k in ("steps", "restarts")} == {
        "steps": 3,
        "restarts": 2,
    }
    assert len(result["defensegan"]["weights"]) == len(result["apegan"]["weights"]) == 16
    rows = {r["defense"]: r for r in result["rows"]}
    assert 0 <= rows["APE-GAN"]["accuracy"] <= 100
    dg = rows["Defense-GAN"]  # randomized: scored under each evaluation key
    assert dg["runs"] == 2 and 0 <= dg["min"] <= dg["mean"] <= dg["max"] <= 100


@pytest.mark.parametrize("loader", ["load_apegan", "load_defensegan"])
def test_an_unfinished_training_run_is_refused_with_the_command_that_finishes_it(tmp_path, loader):
    """A run interrupted mid-training (resumable, no test score yet) is not a baseline:
    loading it says so, with its step, instead of scoring half-trained weights."""
    import json

    from remix_jax import pretrained

    trainer = loader.removeprefix("load_")
    command = f"python -m train.{trainer} --dataset cifar10 --epochs 5"
    meta = {"command": command, "config": {}, "steps": 1000,
            "train": {"epochs": 5, "train_images": 45000, "batch_size": 64}}  # fmt: skip
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"unfinished training run \(step 1000 of 3515") as e:
        getattr(pretrained, loader)("cifar10", folder=str(tmp_path))
    assert str(e.value).endswith(f"finish it: {command}")  # the command that began it
    del meta["command"]  # a meta.json without one: the trainer's own command line
    (tmp_path / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=f"finish it: python -m train.{trainer} --dataset cifar"):
        getattr(pretrained, loader)("cifar10", folder=str(tmp_path))
    (tmp_path / "meta.json").write_text(json.dumps({**meta, "test": {"images": 10}}))
    with pytest.raises(Exception) as e:  # finished: it goes on to read the weights
        getattr(pretrained, loader)("cifar10", folder=str(tmp_path))
    assert "unfinished" not in str(e.value)
